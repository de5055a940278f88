"""/api/docs works offline: its page loads Swagger UI from the server itself, not from a CDN.

In process (FastAPI's TestClient), the API mounted under /api as `streamlit_app.py` mounts it.
Reference: the URLs are read out of the HTML page with a regular expression, so any script,
style or icon the page asks for is checked, whatever `api/app.py` meant to put there.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from api.app import api_routes
from interp.settings import Settings

ASSET_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                 ".json": "application/json"}


@pytest.fixture(scope="module")
def client():
    app = Starlette(routes=api_routes(Settings(allow_custom_models=False)))
    with TestClient(app, base_url="http://test") as session:
        yield session


def test_the_docs_page_asks_only_for_local_urls_and_each_answers(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = [src or spec for src, spec in ASSET_URL.findall(page.text)]
    assert len(urls) >= 4, urls  # script, style, icon, schema
    for url in urls:
        assert url.startswith("/api/"), f"{url} is not served by this server"
        answer = client.get(url)
        assert answer.status_code == 200, url
        suffix = url[url.rindex("."):]
        assert answer.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
        assert len(answer.content) > 1000, url


def test_the_script_renders_openapi_3_1(client):
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders only from version 5 on (its OAS 3.1
    plugin, `isOAS31`; Swagger UI 4, as in the swagger-ui-bundle wheel, has none)."""
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    script = client.get("/api/docs-assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in script
    assert "isOAS31" in script


def test_the_docs_assets_are_not_in_the_schema_and_unknown_ones_are_json_404(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/docs-assets"))]
    missing = client.get("/api/docs-assets/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
