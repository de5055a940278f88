"""The JSON API: the dashboard's analyses over HTTP, served by the dashboard's own process.

`streamlit_app.py` mounts `api.app.api_routes()` under /api in its `st.App`. The package holds no
maths: `analyses` is the registry (a request model and an `interp` call per analysis, answered
with the page's JSON export), `demos` the founding documents' predict and chat services,
`requests` the request models, `work` the threads and queue that model work runs in, and
`guards` the rate limit, bearer token and body-size limit every request passes.
"""
