"""Every tutorial's and the README's Python code runs as written, offline, on the demo model.

Reference: the code itself, as a reader would paste it; a block that raises fails its file.
Blocks that need GPT-2 or a download carry `# docs: skip (reason)` as their first line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_examples import SKIP_MARKER, python_blocks, runner_script

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
DOCUMENTS = [REPO / "README.md", DOCS / "getting-started.md",
             *sorted((DOCS / "tutorials").glob("*.md")), *sorted((DOCS / "guides").glob("*.md"))]
RUNNABLE = [path for path in DOCUMENTS
            if any(not block.skipped for block in python_blocks(path.read_text()))]


def test_blocks_are_found_in_order_and_the_skip_marker_is_honoured():
    markdown = ("# T\n\n```python\nx = 1\n```\n\ntext\n\n```bash\nls\n```\n\n"
                f"```python\n{SKIP_MARKER} (needs GPT-2)\nraise SystemExit(1)\n```\n\n"
                "```python\nassert x == 1\n```\n")
    blocks = python_blocks(markdown)
    assert [block.code for block in blocks] == [
        "x = 1\n", f"{SKIP_MARKER} (needs GPT-2)\nraise SystemExit(1)\n", "assert x == 1\n"]
    assert [block.line for block in blocks] == [4, 14, 19]  # counted by hand
    assert [block.skipped for block in blocks] == [False, True, False]


def test_the_runner_shares_one_namespace_and_fails_on_an_error(tmp_path):
    good = tmp_path / "good.md"
    good.write_text("```python\nx = 41\n```\n\n```python\nassert x + 1 == 42\n```\n")
    bad = tmp_path / "bad.md"
    bad.write_text("```python\nx = 1\n```\n\n```python\nraise ValueError('broken')\n```\n")
    ok = subprocess.run([sys.executable, "-c", runner_script(good)], capture_output=True, text=True)
    failed = subprocess.run([sys.executable, "-c", runner_script(bad)], capture_output=True,
                            text=True)
    assert ok.returncode == 0, ok.stderr
    assert failed.returncode != 0 and "bad.md, block at line 6" in failed.stderr


def test_every_tutorial_has_code_that_runs():
    """A tutorial whose blocks are all skipped would test nothing."""
    tutorials = sorted((DOCS / "tutorials").glob("*.md"))
    assert tutorials and set(tutorials) <= set(RUNNABLE)


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda path: str(path.relative_to(REPO)))
def test_the_code_blocks_run_as_written(path, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    script = tmp_path / "blocks.py"
    script.write_text(runner_script(path))
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
