"""GPT-2 Interpretability Workbench: the file `streamlit run` is given.

It serves the dashboard (the navigation script, `app_navigation.py`: st.navigation and the
shared sidebar, run by every browser session) and, beside it, the JSON API under /api
(`api/`), from one process with one copy of each model. Streamlit finds the `app = st.App(...)`
line below and serves it with uvicorn. The navigation script is a second file because uvicorn
imports this one as a module: a page body here would also run at import, outside any session.
`WORKBENCH_API=off` serves the dashboard alone.
"""

import streamlit as st

from api.app import api_routes
from interp.heap import freeze_imported
from pages.kit.registry import imported_modules

app = st.App("app_navigation.py", routes=api_routes())
# Streamlit collects garbage after every script run; with what the pages (and loading a model)
# import exempted once, here, before any model loads, a rerun's collection walks ~0.05 M objects
# instead of ~0.5 M. Every session imports these at once anyway: no memory is added.
freeze_imported([*imported_modules(), "transformer_lens.model_bridge",
                 "transformers.models.auto.modeling_auto"])
