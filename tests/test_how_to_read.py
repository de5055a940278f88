"""Each page's "How to read this" text and its guide's are one file, read in two places.

The page renders `interp.how_to_read.text_of(entry.guide)`; its guide in docs/guides/ must
include that very file with MyST's `{include}` (a copy pasted instead of the directive fails
here), and the AppTest reads the text the page shows back from the page itself. The site build
(tests/test_docs.py) checks that the built guides carry the words of the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from interp import how_to_read
from interp.errors import InvalidOptionError
from pages.kit import HOW_TO_READ, PAGES
from tests.test_pages_apptest import open_page, problems

REPO = Path(__file__).resolve().parent.parent
GUIDES = REPO / "docs" / "guides"
GUIDED = [entry for entry in PAGES if entry.guide is not None]
# Guides that explain something other than one page (the AI explanations run on every page).
GUIDES_WITHOUT_A_PAGE = {"ai-explanations"}
INCLUDE = re.compile(r"^```\{include\}\s+(\S+)\s*$", re.MULTILINE)


def included_files(guide: Path) -> list[Path]:
    """The files a MyST page includes, resolved as Sphinx does (relative to the page)."""
    return [(guide.parent / target).resolve() for target in INCLUDE.findall(guide.read_text())]


def words(text: str) -> list[str]:
    """A text's words without markup, so Markdown and the HTML built from it compare."""
    return re.findall(r"\w+", text)


@pytest.mark.parametrize("entry", GUIDED, ids=[entry.url_path for entry in GUIDED])
def test_the_guide_includes_the_file_its_page_shows(entry):
    guide = GUIDES / f"{entry.guide}.md"
    assert guide.is_file(), f"{entry.path} names guide {entry.guide!r}, not in docs/guides/"
    shown = how_to_read.path_of(entry.guide)
    assert included_files(guide).count(shown) == 1, (
        f"{guide.name} should include {shown.relative_to(REPO)} once, the text "
        f"{entry.path} shows")
    # The guide does not restate the text beside the directive either.
    first_item = how_to_read.text_of(entry.guide).splitlines()[0]
    assert first_item not in guide.read_text()


def test_every_page_guide_has_its_page_and_every_text_its_guide():
    page_guides = [entry.guide for entry in GUIDED]
    assert len(page_guides) == len(set(page_guides))
    guides_on_disk = {path.stem for path in GUIDES.glob("*.md")}
    assert set(page_guides) == guides_on_disk - GUIDES_WITHOUT_A_PAGE
    assert set(how_to_read.GUIDES) == set(page_guides)


def test_an_unknown_guide_is_refused_with_the_valid_names():
    with pytest.raises(InvalidOptionError, match="'logit-lens'"):
        how_to_read.text_of("logit_lens")


@pytest.mark.slow
@pytest.mark.parametrize("entry", GUIDED, ids=[entry.url_path for entry in GUIDED])
def test_the_page_shows_its_guides_text_under_how_to_read_this(entry):
    app = open_page(entry)
    assert not problems(app), problems(app)
    panels = [panel for panel in app.expander if panel.label == HOW_TO_READ]
    assert len(panels) == 1, f"{entry.path}: no single {HOW_TO_READ!r} expander"
    shown = [block.value for block in panels[0].markdown]
    # Streamlit drops the trailing newline; every other character must be the file's.
    assert shown == [how_to_read.path_of(entry.guide).read_text(encoding="utf-8").strip()]
