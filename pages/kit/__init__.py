"""The page kit: what every page uses instead of its own copy.

A page gathers input with `remembered` widgets, computes with `run_and_remember` (kept per
session under a signature of its inputs), draws with `show` (the figure registry of
`interp.figures`), offers `export_buttons` and an `explain_panel`, and calls `for_each_side`
so that compare mode costs it one line. The modules: `state` (session state), `registry` (the
page list), `models` (choosing and loading models), `results` (drawing results), `compare`.
"""

from pages.kit.compare import Side, for_each_side
from pages.kit.forms import input_form
from pages.kit.models import (
    CUSTOM_CHOICE,
    DEFAULT_PROMPT,
    DEFAULT_PROMPT_B,
    chosen_model_name,
    custom_allowed,
    default_model_key,
    load_chosen_model,
    model_label,
    model_note,
    model_options,
    offer_available_models,
    reported_errors,
    require_app_shell,
    show_error,
    try_load_model,
)
from pages.kit.registry import (
    COMPARE_INPUTS,
    COMPARE_MODELS,
    COMPARE_MODES,
    COMPARE_PROMPTS,
    HOW_TO_READ,
    PAGES,
    PageEntry,
    compare_mode,
    current_page,
    how_to_read,
    page_for_url,
)
from pages.kit.results import (
    explain_panel,
    explanation_of,
    export_buttons,
    metric_row,
    progress_reporter,
    result_on_click,
    show,
)
from pages.kit.state import (
    Keys,
    cached_across_sessions,
    drop_result,
    edited_table,
    forget,
    is_stale,
    last_result,
    remembered,
    run_and_remember,
    set_remembered,
    stale_notice,
)

__all__ = [
    "COMPARE_INPUTS", "COMPARE_MODELS", "COMPARE_MODES", "COMPARE_PROMPTS", "CUSTOM_CHOICE", "DEFAULT_PROMPT",
    "DEFAULT_PROMPT_B", "HOW_TO_READ", "PAGES", "Keys", "PageEntry", "Side", "cached_across_sessions",
    "chosen_model_name", "compare_mode", "current_page", "custom_allowed", "default_model_key",
    "drop_result", "edited_table", "explain_panel", "input_form", "explanation_of", "export_buttons", "for_each_side",
    "forget", "how_to_read", "is_stale", "last_result", "load_chosen_model", "metric_row", "model_label", "model_note", "model_options",
    "offer_available_models", "page_for_url", "progress_reporter", "remembered",
    "reported_errors", "require_app_shell", "result_on_click", "run_and_remember", "set_remembered", "show",
    "show_error", "stale_notice", "try_load_model",
]
