"""The page list: each page's file, title, question, and what the shared sidebar offers it."""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import streamlit as st

from pages.kit.state import Keys

ROOT = Path(__file__).resolve().parents[2]  # the app folder; PageEntry paths start here
# The script every browser session runs (st.navigation and the sidebar); streamlit_app.py serves it.
NAVIGATION_SCRIPT = "app_navigation.py"
COMPARE_PROMPTS = "Second prompt"
COMPARE_MODELS = "Second model"
COMPARE_MODES = (COMPARE_PROMPTS, COMPARE_MODELS)
# Same model and prompt on both sides; the page draws its own inputs on each (two tasks, say).
# Opt-in only: a page that declares it must key its inputs by `Side.key`.
COMPARE_INPUTS = "Second set of inputs"


@dataclass(frozen=True)
class PageEntry:
    """A page of the app: its file, its title, the one question it answers, and its capabilities.

    `uses_prompt`: the page reads the sidebar prompt (else the prompt box is hidden there).
    `compare_modes`: the compare modes `for_each_side` supports on it (none hides the switch).
    `main_action`: the label of the button that runs its analysis (None: it runs on opening);
    the page tests press it.
    `guide`: its guide in docs/guides/ (None: it has none); the page's "How to read this" text
    is `interp.how_to_read.text_of(guide)`, the file that guide includes.
    """

    path: str
    title: str
    icon: str
    question: str
    url_path: str
    uses_prompt: bool = True
    compare_modes: tuple[str, ...] = COMPARE_MODES
    main_action: str | None = None
    guide: str | None = None


PAGES: tuple[PageEntry, ...] = (
    PageEntry("pages/home.py", "Home", ":material/home:",
              "What does the model predict next, and how does it read the prompt?", "home"),
    PageEntry("pages/patching.py", "Activation patching", ":material/swap_horiz:",
              "Which layers, positions and heads carry the information that decides the answer?",
              "patching", uses_prompt=False, compare_modes=(COMPARE_MODELS,),
              main_action="Run patching", guide="patching"),
    PageEntry("pages/attention.py", "Attention", ":material/visibility:",
              "Where does each head look, and what kind of head is it?", "attention",
              main_action="Show attention", guide="attention"),
    PageEntry("pages/attribution.py", "Attribution", ":material/highlight:",
              "Which input tokens made the model predict this, and which method to trust here?",
              "attribution", main_action="Run attribution", guide="attribution"),
    PageEntry("pages/toxicity_bias.py", "Toxicity & bias", ":material/balance:",
              "Does the model write toxic text, treat groups differently, and know when it is "
              "unsure?", "toxicity-bias", uses_prompt=False, compare_modes=(COMPARE_MODELS,),
              main_action="Run all probes", guide="toxicity-bias"),
    PageEntry("pages/logit_lens.py", "Logit lens", ":material/layers:",
              "What would the model predict if it stopped at layer L, and which heads and MLPs "
              "write the answer?", "logit_lens", main_action="Run logit lens", guide="logit-lens"),
    PageEntry("pages/sae.py", "Sparse autoencoders", ":material/scatter_plot:",
              "Which sparse features does the model's activation hold, and what do they do?",
              "sae", compare_modes=(), main_action="Train SAE", guide="sae"),
    PageEntry("pages/circuits.py", "Circuits", ":material/hub:",
              "Which heads, MLPs and connections carry the task, and how faithfully?",
              "circuits", uses_prompt=False, compare_modes=(COMPARE_MODELS, COMPARE_INPUTS),
              main_action="Find circuit", guide="circuits"),
    PageEntry("pages/runs.py", "Runs", ":material/history:",
              "Which experiments have been kept, how do two of them differ, and can they be "
              "shared?", "runs", uses_prompt=False, compare_modes=()),
)


def imported_modules() -> list[str]:
    """The modules the navigation script and every registered page import (read from their
    source: a page file is a script, not a module), for importing them once at start-up."""
    found: dict[str, None] = {}
    for path in (NAVIGATION_SCRIPT, *(entry.path for entry in PAGES)):
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(dict.fromkeys(alias.name for alias in node.names))
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found[node.module] = None
    return list(found)


def page_for_url(url: str | None) -> PageEntry | None:
    """The registered page a browser URL points at (its last path segment), if any."""
    if not url:
        return None
    segment = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    return next((entry for entry in PAGES if entry.url_path == segment), None)


def current_page(view: Callable | None = None) -> PageEntry:
    """The page being run: the one whose file defines `view` when given (AppTest runs a page's
    file without the entry point), else the one the navigation script noted before running it."""
    code = getattr(view, "__code__", None)
    if code is not None:
        defined_in = Path(code.co_filename).resolve()
        found = next((entry for entry in PAGES if (ROOT / entry.path).resolve() == defined_in),
                     None)
        if found is not None:
            return found
    path = st.session_state.get(Keys.PAGE)
    return next((entry for entry in PAGES if entry.path == path), PAGES[0])


@functools.lru_cache(maxsize=4)
def page_files(pages: tuple[PageEntry, ...]) -> dict[str, PageEntry]:
    """Each of `pages` by its file's resolved path (as code objects name it): asked on every
    remembered widget, so resolved once per page list."""
    return {str((ROOT / entry.path).resolve()): entry for entry in pages}


def page_in_stack(direct: bool = False) -> PageEntry | None:
    """The registered page whose file is running the calling code (walks the call stack): the
    kit's helpers use it to tell which page drew them, with or without the app's shell.
    `direct`: only when the page itself called the function that asks."""
    files = page_files(PAGES)
    frame = sys._getframe(2 if direct else 1)
    while frame is not None:
        found = files.get(frame.f_code.co_filename)
        if found is not None or direct:
            return found
        frame = frame.f_back
    return None


def running_page() -> PageEntry:
    """The page being drawn: found on the call stack, else the one the app shell noted."""
    return page_in_stack() or current_page()


def compare_mode(entry: PageEntry) -> str | None:
    """The compare mode in force on this page: None when compare is off or unsupported here."""
    if not entry.compare_modes or not st.session_state.get(Keys.COMPARE):
        return None
    chosen = st.session_state.get(Keys.COMPARE_MODE)
    return chosen if chosen in entry.compare_modes else entry.compare_modes[0]


HOW_TO_READ = "How to read this"


def how_to_read() -> None:
    """The running page's "How to read this" expander: its guide's text from
    `interp.how_to_read`, the same file the guide in docs/guides/ includes."""
    from interp.how_to_read import text_of

    entry = running_page()
    if entry.guide is not None:
        with st.expander(HOW_TO_READ):
            st.markdown(text_of(entry.guide))
