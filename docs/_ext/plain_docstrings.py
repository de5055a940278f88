"""Reads the library's docstrings as the plain prose they are written in, not as reStructuredText.

`interp`'s docstrings follow the project's style (STYLE.md): sentences with `names` in
backticks, `**options` and `x * y` written as they are, and code indented under a line that ends
with a colon. Read as reStructuredText, the asterisks open emphasis that never closes and the
indented code becomes a block quote; this hook escapes the asterisks outside backticks and marks
each indented block as a literal block, so the API pages show the docstrings as written.
"""

from __future__ import annotations

import re

BACKTICKED = re.compile(r"(`[^`]*`)")
TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=\W|$)")


def escape_prose(text: str) -> str:
    """Prose outside backticks with reStructuredText's markup characters taken literally."""
    text = text.replace("\\", "\\\\").replace("*", r"\*").replace("|", r"\|")
    return TRAILING_UNDERSCORE.sub(r"\\_", text)  # `WORKBENCH_ + name` is not a link target


def escape_markup(line: str) -> str:
    """A line with `*`, `|` and a word's trailing `_` escaped outside backtick spans, and a
    backtick span glued to a word (`Result`s) made to end where reStructuredText can see it."""
    parts = [part for part in BACKTICKED.split(line) if part]
    out = []
    for index, part in enumerate(parts):
        if part.startswith("`"):
            out.append(part)
            continue
        text = escape_prose(part)
        if index and parts[index - 1].startswith("`") and text[:1].isalnum():
            text = "\\ " + text
        if index + 1 < len(parts) and text[-1:].isalnum():
            text += "\\ "
        out.append(text)
    return "".join(out)


def as_plain_prose(lines: list[str]) -> list[str]:
    """The docstring's lines with indented blocks as literal blocks and asterisks escaped."""
    out: list[str] = []
    in_block = False
    for index, line in enumerate(lines):
        indented = line.startswith((" ", "\t")) and line.strip()
        previous = lines[index - 1] if index else ""
        if indented and not in_block and not previous.strip():
            before = next((text for text in reversed(out) if text.strip()), "")
            # A list item's continuation is indented too, but follows the item without a blank.
            if not before.rstrip().endswith("::"):
                out[-1:] = ["", "::", ""]
            in_block = True
        elif line.strip() and not indented:
            in_block = False
        out.append(line if in_block else escape_markup(line))
    return out


def process_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = as_plain_prose(lines)


def setup(app):
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
