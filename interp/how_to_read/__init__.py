"""How to read each page's figures: one Markdown file per guide, shown in two places.

A page's "How to read this" expander renders `text_of(guide)`, and the guide of the same name
in `docs/guides/` includes the same file with MyST's `{include}` directive, so the app and the
documentation read one text. The files are plain Markdown (no MyST directives, no
placeholders): numbers that depend on a run belong in the figure's own caption, which
`interp.figures` writes from the result and the guides quote through `{interp-caption}`.
"""

from __future__ import annotations

from pathlib import Path

from interp.errors import invalid_choice

FOLDER = Path(__file__).resolve().parent
# One file per guide, named as the guide in docs/guides/ (e.g. "logit-lens").
GUIDES: tuple[str, ...] = tuple(sorted(path.stem for path in FOLDER.glob("*.md")))


def path_of(guide: str) -> Path:
    """The Markdown file holding `guide`'s "how to read" text; unknown names are refused with
    the list of valid ones."""
    if guide not in GUIDES:
        raise invalid_choice("guide", guide, GUIDES)
    return FOLDER / f"{guide}.md"


def text_of(guide: str) -> str:
    """The "how to read the figures" text of `guide`, as Markdown."""
    return path_of(guide).read_text(encoding="utf-8")
