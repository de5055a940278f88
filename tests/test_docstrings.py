"""Every public function and class of `interp` has a docstring, which the API pages show.

Public: a name without a leading underscore in a module's namespace, defined in that module (a
name imported from elsewhere is checked where it is defined). The test lists every one lacking
a docstring, so a new function without one fails with its name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import interp


def interp_modules() -> list:
    names = [interp.__name__] + [info.name for info in
                                 pkgutil.walk_packages(interp.__path__, prefix="interp.")]
    return [importlib.import_module(name) for name in sorted(names)]


def undocumented(module) -> list[str]:
    """The module's own public functions and classes without a docstring of their own."""
    missing = []
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if not (value.__doc__ or "").strip() or (inspect.isclass(value) and
                                                  value.__doc__ == type.__doc__):
            missing.append(f"{module.__name__}.{name}")
    return missing


def test_undocumented_finds_a_function_and_a_class_without_docstrings(tmp_path, monkeypatch):
    (tmp_path / "sample_module.py").write_text(
        'import os\n\ndef documented():\n    """Says what."""\n\ndef bare():\n    pass\n\n'
        'class Bare:\n    pass\n\nclass Told:\n    """Says what."""\n\ndef _private():\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("sample_module")
    assert undocumented(module) == ["sample_module.bare", "sample_module.Bare"]


def test_every_public_function_and_class_has_a_docstring():
    missing = [name for module in interp_modules() for name in undocumented(module)]
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
