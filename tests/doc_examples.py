"""The Python code blocks of the README and the documentation, as the tests run them.

A Markdown file's ```python blocks run in order in one namespace, as a reader pasting them into
one notebook would. A block whose first line is `# docs: skip (reason)` is shown but not run:
code that needs GPT-2, a download or a file the reader supplies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SKIP_MARKER = "# docs: skip"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class CodeBlock:
    """One ```python block: its code and the line of the Markdown file where the code starts."""

    code: str
    line: int

    @property
    def skipped(self) -> bool:
        return self.code.lstrip().startswith(SKIP_MARKER)


def python_blocks(markdown: str) -> list[CodeBlock]:
    """Every ```python block of `markdown`, in order."""
    return [CodeBlock(match.group(1), markdown.count("\n", 0, match.start(1)) + 1)
            for match in PYTHON_BLOCK.finditer(markdown)]


def runner_script(path: Path) -> str:
    """A script that runs the file's blocks that are not skipped in order, in one namespace;
    a traceback names the file and the block's first line."""
    blocks = [block for block in python_blocks(path.read_text(encoding="utf-8")) if not block.skipped]
    lines = ["namespace = {'__name__': '__main__'}"]
    for block in blocks:
        name = f"{path.name}, block at line {block.line}"
        lines.append(f"exec(compile({block.code!r}, {name!r}, 'exec'), namespace)")
    return "\n".join(lines) + "\n"
