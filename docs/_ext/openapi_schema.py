"""The `openapi-schema` directive: the JSON API's endpoints and OpenAPI schema, taken from FastAPI.

The schema is never written by hand: the directive imports the repository's `api` package and
asks its FastAPI application for `openapi()`. A build without the `api` package (it is optional,
issue #27) says so on the page instead of failing; an `api` package that exists but does not
import, or has no application, is an error like any other.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[2]
NOT_IN_BUILD = ("The JSON API (the `api` package, issue #27) is not in this build, so there is "
                "no schema to show. Once `api/` exists, this page lists its endpoints and "
                "includes the schema FastAPI generates.")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def api_in_repository() -> bool:
    """Whether the repository (not some other installed package) holds an `api` package."""
    spec = importlib.util.find_spec("api")
    return bool(spec and spec.origin and Path(spec.origin).resolve().is_relative_to(REPO))


def fastapi_app():
    """The FastAPI application of `api`: `api.app.create_api(settings)` with the default
    settings (what `streamlit_app.py` mounts under /api), or an older layout's `api.app` /
    `api.create_app()`."""
    module = importlib.import_module("api.app")
    if callable(getattr(module, "create_api", None)):
        from interp.settings import Settings

        return module.create_api(Settings())
    app = getattr(importlib.import_module("api"), "create_app", None)
    if callable(app):
        return app()
    raise RuntimeError("the api package has no create_api(settings) in api.app")


def endpoint_rows(schema: dict) -> list[tuple[str, str, str]]:
    """(method, path, summary) for every operation of an OpenAPI schema, in the schema's order."""
    rows = []
    for path, operations in schema.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in operations:
                operation = operations[method]
                # FastAPI makes the summary from the function's name and the description from
                # its docstring: show both when both say something.
                summary = " ".join((operation.get("summary") or "").split())
                description = " ".join((operation.get("description") or "").split())
                text = ": ".join(part for part in (summary, description) if part)
                rows.append((method.upper(), path, text))
    return rows


class OpenAPISchema(SphinxDirective):
    """Lists the API's endpoints and shows its OpenAPI schema as JSON (or says it is absent)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        if not api_in_repository():
            return [nodes.note("", nodes.paragraph(text=NOT_IN_BUILD))]
        schema = fastapi_app().openapi()
        # Parsed as MyST Markdown, like the page that holds the directive.
        lines = ["| Method | Path | What it does |", "|---|---|---|"]
        for method, path, summary in endpoint_rows(schema):
            # The schema's paths are the FastAPI app's own; streamlit_app.py mounts it at /api.
            lines.append(f"| `{method}` | `/api{path}` | {summary.replace('|', '/') or '-'} |")
        container = nodes.container()
        self.state.nested_parse(StringList(lines), self.content_offset, container)
        text = json.dumps(schema, indent=2, sort_keys=False)
        block = nodes.literal_block(text, text, language="json")
        return [*container.children, nodes.rubric(text="OpenAPI schema"), block]


def setup(app):
    app.add_directive("openapi-schema", OpenAPISchema)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
