"""Shareable links: the model and a page's options in the URL (`st.query_params`), so a link
opens the same analysis in a fresh session.

A link holds `model`, the page's remembered widget values as `o.<key>` (JSON), and either
`prompt` and the page's other typed text (only when the user asks for a link with the prompt: it
then sits in browser histories and server logs) or none of the text; a saved run is shared as `run=<id>`, which the Runs page
opens. Nothing secret is ever written to a link. A value that is unknown, of the wrong type or
out of range here falls back to the default, with a notice; it never raises.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from pages.kit.state import Keys

OPTION_PREFIX = "o."
MAX_LINK_PROMPT = 2000
LINK_APPLIED = "links.applied"
PENDING = "links.pending"
NOTICES = "links.notices"
RUN_KEY = "runs.open"  # the Runs page's remembered choice of run
PRIVACY_NOTICE = ("The link will contain the prompt's text: it then sits in browser histories, "
                  "chat logs and the server's access logs. Share a saved run instead to keep the "
                  "text out of the URL.")


def apply_shared_link(model_options: list[str]) -> None:
    """Read the URL's shared state once per session, before any widget is drawn: the model and
    prompt now, page options when their widgets first ask (`link_value`)."""
    if st.session_state.get(LINK_APPLIED):
        return
    st.session_state[LINK_APPLIED] = True
    params = {name: st.query_params.get(name) for name in st.query_params}
    notices = st.session_state.setdefault(NOTICES, [])
    model = params.get("model")
    if model is not None:
        if model in model_options:
            st.session_state[Keys.MODEL] = model
        else:
            notices.append(f"The link's model {model[:80]!r} is not offered here; the default "
                           "model is used.")
    prompt = params.get("prompt")
    if prompt is not None:
        if prompt.strip() and len(prompt) <= MAX_LINK_PROMPT and all(
                character.isprintable() or character in "\n\t" for character in prompt):
            st.session_state[Keys.PROMPT] = prompt
        else:
            notices.append("The link's prompt is empty, too long or holds control characters; "
                           "the default prompt is used.")
    pending = {name[len(OPTION_PREFIX):]: value for name, value in params.items()
               if name.startswith(OPTION_PREFIX) and value is not None}
    if params.get("run"):
        pending[RUN_KEY] = json.dumps(params["run"])
    st.session_state[PENDING] = pending


def link_value(key: str, default, options=None, min_value=None, max_value=None):
    """The value a shared link gives the remembered widget `key`, checked against its default's
    type, its options and its range; (found, value). A bad value is dropped with a notice."""
    pending = st.session_state.get(PENDING)
    if not pending or key not in pending:
        return False, None
    raw = pending.pop(key)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        value = raw if isinstance(default, str) else None
    if fits(value, default, options, min_value, max_value):
        return True, value
    st.session_state.setdefault(NOTICES, []).append(
        f"The link's value {str(raw)[:60]!r} for {key.split('.')[-1].replace('_', ' ')} is not "
        "valid here; the default is used.")
    return False, None


def fits(value, default, options, min_value, max_value) -> bool:
    if options is not None:
        choices = list(options)
        if isinstance(default, list):
            return isinstance(value, list) and all(item in choices for item in value)
        return value in choices and type(value) is type(choices[choices.index(value)])
    if default is None:
        return isinstance(value, (str, int, float, bool)) or value is None
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(default, int) and not isinstance(value, int):
            return False
        return ((min_value is None or value >= min_value)
                and (max_value is None or value <= max_value))
    if isinstance(default, str):
        return isinstance(value, str) and len(value) <= MAX_LINK_PROMPT
    return False


def show_notices() -> None:
    """The notices about a link's values that were not used (once each)."""
    for notice in st.session_state.pop(NOTICES, []):
        st.info(notice)


def share_url(base_url: str, page_url_path: str, params: dict) -> str:
    parts = urlsplit(base_url)
    root = parts.path.rsplit("/", 1)[0] if parts.path.rstrip("/").rsplit("/", 1)[-1] else (
        parts.path.rstrip("/"))
    return urlunsplit((parts.scheme, parts.netloc, f"{root}/{page_url_path}",
                       urlencode(params), ""))


def link_params(page_path: str, with_prompt: bool) -> dict:
    """The query parameters of a link to this page as it is now."""
    from pages.kit.runs import page_options

    params = {"model": st.session_state.get(Keys.MODEL, "")}
    if with_prompt:
        params["prompt"] = st.session_state.get(Keys.PROMPT, "")
    for key, value in page_options(page_path, free_text=with_prompt).items():
        params[OPTION_PREFIX + key] = json.dumps(value)
    return params


def share_control(entry) -> None:
    """A "Share link" popover: the link to this page with its model and options, and, only when
    asked for (with the privacy notice), the prompt."""
    with st.popover("Share link", icon=":material/link:"):
        with_prompt = False
        if entry.uses_prompt:
            with_prompt = st.checkbox("Include the prompt", key="links.with_prompt",
                                      help=PRIVACY_NOTICE)
            if with_prompt:
                st.warning(PRIVACY_NOTICE)
            else:
                st.caption("The prompt is not in this link; to share it, save a run and share "
                           "the run's link from the Runs page.")
        url = share_url(st.context.url or "", entry.url_path, link_params(entry.path, with_prompt))
        st.code(url, language=None, wrap_lines=True)


def run_link(run_id: str) -> str:
    """A link that opens a saved run on the Runs page."""
    return share_url(st.context.url or "", "runs", {"run": run_id})
