"""Plotly figures for results, one module per method; no Streamlit here.

Each function takes a result dataclass and returns a `plotly.graph_objects.Figure` whose hover
text carries the raw numbers.
"""
