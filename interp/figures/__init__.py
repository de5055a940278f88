"""Plotly figures for results, one module per method; no Streamlit here.

Each function takes a result dataclass and returns a `plotly.graph_objects.Figure` whose hover
text carries the raw numbers. `figure_for(result)` looks up the registered figure of a result's
type and returns it with the caption that says how to read it, so a page never builds figures.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go

from interp.registry import TypeRegistry


def plot_text(text: str) -> str:
    """Escape text (tokens are user text) for Plotly, which renders some HTML tags in labels."""
    return html.escape(str(text), quote=False)


@dataclass(frozen=True)
class CaptionedFigure:
    """A result's figure, the Markdown caption that says how to read it, and a file-name stem."""

    figure: go.Figure
    caption: str
    name: str


@dataclass(frozen=True)
class CaptionedTable:
    """A result shown as a table (a pandas DataFrame), with its caption and a file-name stem."""

    table: object
    caption: str
    name: str


FigureBuilder = Callable[..., CaptionedFigure | CaptionedTable]
REGISTRY = TypeRegistry("figure")


def register_figure(result_type: type) -> Callable[[FigureBuilder], FigureBuilder]:
    """Register the figure of one result type; a second one for the same type is refused."""
    return REGISTRY.register(result_type)


def figure_for(result, **options) -> CaptionedFigure | CaptionedTable:
    """The registered figure and caption of `result` (`options` go to its builder)."""
    return REGISTRY.lookup(result)(result, **options)


# The figure modules register themselves on import; they need the names above.
from interp.figures import (  # noqa: E402, F401
    attention,
    attribution,
    circuits,
    induction,
    logit_lens,
    patching,
    prediction,
    sae,
    toxicity_bias,
)
