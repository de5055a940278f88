"""Optional Weights & Biases logging of saved runs: on only when `wandb` is importable and a key
is configured (WANDB_API_KEY in the environment or the secrets; WANDB_MODE=offline needs none).

A saved run becomes one W&B run: its page, method, model and options as config, its scalar
summary as metrics, its tables as W&B tables and its figures as Plotly charts. The local run
store stays the record; W&B is a mirror, so any failure there is reported as one warning and
never stops a page.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from interp.runs import SavedRun, table_rows

KEY_NAME = "WANDB_API_KEY"
DEFAULT_PROJECT = "gpt2-workbench"


def wandb_key(secrets: Mapping | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The W&B API key from the environment or secrets ("" when none; never logged)."""
    environ = os.environ if environ is None else environ
    return str(environ.get(KEY_NAME) or (secrets or {}).get(KEY_NAME) or "").strip()


def wandb_enabled(secrets: Mapping | None = None,
                  environ: Mapping[str, str] | None = None) -> bool:
    """Whether runs are mirrored to W&B: wandb installed, and a key (or offline mode) set."""
    environ = os.environ if environ is None else environ
    if importlib.util.find_spec("wandb") is None:
        return False
    return bool(wandb_key(secrets, environ)) or environ.get("WANDB_MODE") == "offline"


def run_config(saved: SavedRun) -> dict:
    """A saved run's W&B config: page, method, model and revision, ids, options,
    versions."""
    record = saved.record
    return {"page": record.page, "method": record.method, "model": record.model.name,
            "model_revision": record.model.revision, "workbench_run_id": saved.id,
            "content_hash": saved.content_hash, "options": dict(record.options),
            "versions": dict(record.versions)}


def scalar_metrics(saved: SavedRun) -> dict:
    """A saved run's numeric summary values and timings, as W&B metrics."""
    metrics = {name: value for name, value in saved.record.summary.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    metrics.update({f"timing/{name}": value for name, value in saved.record.timings.items()})
    return metrics


def log_run(saved: SavedRun, secrets: Mapping | None = None, project: str | None = None,
            folder: str | None = None) -> str | None:
    """Mirror a saved run to W&B; returns None, or the one warning to show when it failed.
    The key is handed to wandb only, never logged or put in a message."""
    try:
        import plotly.io as pio
        import wandb

        key = wandb_key(secrets)
        settings = wandb.Settings(api_key=key) if key else None
        run = wandb.init(project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
                         name=saved.record.title or saved.id[:8], config=run_config(saved),
                         dir=folder, settings=settings, reinit="create_new")
        try:
            logged: dict = dict(scalar_metrics(saved))
            for name, data in saved.record.tables.items():
                rows = table_rows(data)
                if rows:
                    # wandb annotates columns as list[str | int]; a list[str] is one.
                    logged[f"table/{name}"] = wandb.Table(columns=list[str | int](rows[0]),
                                                          data=rows[1:])
            for index, spec in enumerate(saved.record.figures):
                logged[f"figure/{index}"] = wandb.Plotly(pio.from_json(spec))
            run.log(logged)
        finally:
            run.finish()
    except Exception as error:  # W&B is a mirror: its failure must never stop the page
        text = str(error).replace(wandb_key(secrets), "***") if wandb_key(secrets) else str(error)
        return f"The run is saved, but logging it to Weights & Biases failed: {text[:300]}"
    return None
