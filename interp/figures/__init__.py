"""Plotly figures for results, one module per method; no Streamlit here.

Each function takes a result dataclass and returns a `plotly.graph_objects.Figure` whose hover
text carries the raw numbers.
"""

from __future__ import annotations

import html


def plot_text(text: str) -> str:
    """Escape text (tokens are user text) for Plotly, which renders some HTML tags in labels."""
    return html.escape(str(text), quote=False)
