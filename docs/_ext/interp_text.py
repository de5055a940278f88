"""The `interp-text` directive: a text the app shows, included from `interp` itself.

The pages' captions and option help come from constants in `interp` (what an effect means in
each direction, what each corruption does, what each metric measures). A guide that explains
the same thing includes the constant instead of restating it, so the two cannot drift apart:

    ```{interp-text} interp.patching.results.EFFECT_MEANING
    ```

A string becomes a paragraph, a tuple of strings a list, a dict a list of `key`: text items.
"""

from __future__ import annotations

import importlib

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def resolve(dotted: str):
    """The object at `module.NAME` (the longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ValueError(f"no module in {dotted!r}")


def plain(text) -> str:
    return " ".join(str(text).split())


def as_markdown(value) -> list[str]:
    """A string as a paragraph; a tuple or list as bullets; a dict as `key`: text bullets, where
    a value with a `description` (a registry entry) shows that."""
    if isinstance(value, str):
        return [plain(value)]
    if isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value):
        return [f"- {plain(item)}" for item in value]
    if isinstance(value, dict):
        return [f"- `{key}`: {plain(getattr(text, 'description', text))}"
                for key, text in value.items()]
    raise TypeError(f"interp-text shows a str, a tuple of str or a dict, not "
                    f"{type(value).__name__}")


class InterpText(SphinxDirective):
    """Renders the string or dict at the given dotted name as Markdown."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        lines = as_markdown(resolve(self.arguments[0]))
        container = nodes.container(classes=["interp-text"])
        # Parsed as MyST, like the page around it (backticks are code).
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), self.content_offset,
                                container)
        return [container]


def setup(app):
    app.add_directive("interp-text", InterpText)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
