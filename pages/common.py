"""Kept so that `from pages.common import ...` still works: everything lives in `pages.kit`."""

from pages.kit import *  # noqa: F401, F403
from pages.kit import __all__  # noqa: F401
