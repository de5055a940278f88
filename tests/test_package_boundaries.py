"""`interp` works without Streamlit: only interp/caching.py may import it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

INTERP = Path(__file__).resolve().parent.parent / "interp"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_caching_module_imports_streamlit():
    importers = sorted(str(p.relative_to(INTERP)) for p in INTERP.rglob("*.py")
                       if "streamlit" in imported_modules(p))
    assert importers == ["caching.py"]


def test_load_model_imports_in_plain_python_without_streamlit():
    code = ("import sys; from interp import load_model, next_token_topk; "
            "print('streamlit' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=INTERP.parent, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
