"""The documentation site builds with warnings as errors, and its extensions do what they say.

Reference for the build: Sphinx itself (-W: any warning, a broken reference or a docstring it
cannot read, fails). References for the extensions: an OpenAPI schema FastAPI generates for a
small app written here, and reStructuredText read back by docutils.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import openapi_schema  # noqa: E402
import plain_docstrings  # noqa: E402


def html_text(page: str) -> str:
    """The text of an HTML page, tags dropped and entities decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", " ", page))


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    html = tmp_path / "html"
    # The API pages come from the docstrings, and the guides include interp's own texts.
    library = (html / "reference" / "generated" / "interp.patching.path.html").read_text()
    assert "Path patching (Wang et al. 2022)" in library
    patching_guide = (html / "guides" / "patching.html").read_text()
    assert "the patch restores the clean answer fully" in patching_guide
    # The captions the app writes, computed on the demo model while the site was built.
    assert "patched at all positions at once" in patching_guide
    assert "as if the model stopped there" in (html / "guides" / "logit-lens.html").read_text()
    assert not (html / "wip").exists()
    # Each page's "How to read this" file, included in its guide: all its words, in order.
    from interp import how_to_read
    from tests.test_how_to_read import words

    for guide in how_to_read.GUIDES:
        built = " ".join(words(html_text((html / "guides" / f"{guide}.html").read_text())))
        assert " ".join(words(how_to_read.text_of(guide))) in built, guide


def test_the_schema_lists_every_operation_of_a_fastapi_app():
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @app.get("/models", summary="The models this server can load")
    def models() -> list[str]:
        return []

    @app.post("/patching")
    def patching(body: dict) -> dict:
        """Run activation patching."""
        return body

    rows = openapi_schema.endpoint_rows(app.openapi())
    assert rows == [("GET", "/models", "The models this server can load"),
                    ("POST", "/patching", "Patching: Run activation patching.")]


def test_without_an_api_package_the_page_says_so():
    if openapi_schema.api_in_repository():
        pytest.skip("this build has the api package")
    assert "not in this build" in openapi_schema.NOT_IN_BUILD


def test_plain_docstrings_read_back_as_the_same_words():
    from docutils.core import publish_doctree

    docstring = ["Scores of `AttributionResult`s: |score| / max |score|, **options go on.",
                 "WORKBENCH_ + the name. An example:", "", "    patch(model, inputs)",
                 "    -> PatchingResult", "", "After the block."]
    doctree = publish_doctree("\n".join(plain_docstrings.as_plain_prose(docstring)),
                              settings_overrides={"report_level": 2, "halt_level": 2})
    text = doctree.astext()
    assert "|score| / max |score|, **options go on." in text
    assert "WORKBENCH_ + the name." in text
    literal = [node.astext() for node in doctree.findall()
               if node.tagname == "literal_block"]
    assert literal == ["patch(model, inputs)\n-> PatchingResult"]
