"""Sphinx configuration of the Workbench's documentation (MyST Markdown, furo, autodoc).

Build it from the repository root, with warnings as errors as CI does:

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path[:0] = [str(REPO), str(DOCS / "_ext")]
# Importing `interp` must never wait on the Hub: the API pages are built offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

project = "GPT-2 Interpretability Workbench"
author = "The Workbench's developers"
copyright = "2026, the Workbench's developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "openapi_schema",
    "plain_docstrings",
    "interp_text",
    "interp_captions",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/wip holds patches that have not landed (listed as-is in the README there), not pages.
exclude_patterns = ["_build", "wip", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = False
# A package re-exports its modules' names in __all__; each name is documented once, where it is
# defined (ignore-module-all), so a reference to it has one target.
autodoc_default_options = {"members": True, "undoc-members": True, "ignore-module-all": True}
# Inherited docstrings (torch.autograd.Function.forward's) link to torch's own labels.
autodoc_inherit_docstrings = False
# `name` in a docstring is code, as in the Markdown pages.
default_role = "literal"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The library's docstrings are plain prose, not reStructuredText markup: see docstrings.py.
autodoc_docstring_signature = False

html_theme = "furo"
html_title = "GPT-2 Interpretability Workbench"
# Tutorials and guides link to source files in the repository; never fetch anything.
linkcheck_ignore = [r".*"]
