"""Making a saved run again: re-run the `interp` calls a run records and compare the numbers.

A run's `calls` name `interp` functions ("module:qualname") with their arguments, a model as
{"$model": name}; `reproduce` loads the models by name, makes the calls, and compares every
tensor the run kept (or, when its raw tensors were left out, its scalar summary) to tolerance.
Only functions inside `interp` are ever imported, so a run file can't name arbitrary code.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from interp.errors import InvalidOptionError
from interp.runs import RunRecord, named_tensors, scalar_summary


@dataclass(frozen=True)
class Reproduction:
    """The outcome of re-running a run's calls: `reproduced` when every recorded number came back
    within tolerance, else `differences` says what changed (a missing call is a difference)."""

    reproduced: bool
    differences: tuple[str, ...]
    compared: int


def resolve_function(name: str) -> Callable:
    """An `interp` function from its "module:qualname" (nothing outside `interp` is imported)."""
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith("interp.") or not qualname or "<" in qualname:
        raise InvalidOptionError(f"{name!r} is not an interp function; a run can only be "
                                 "reproduced through interp's own functions.")
    target: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise InvalidOptionError(f"{name!r} names no function of interp.")
    return target


def decode_argument(value, load_model: Callable):
    """A recorded argument back as a value: {"$model": name} loads that model; lists and
    dicts recursively."""
    if isinstance(value, dict) and set(value) == {"$model"}:
        return load_model(value["$model"])
    if isinstance(value, list):
        return [decode_argument(item, load_model) for item in value]
    if isinstance(value, dict):
        return {key: decode_argument(item, load_model) for key, item in value.items()}
    return value


def rerun(record: RunRecord, load_model: Callable | None = None) -> list:
    """The results of a record's calls, made again (models loaded by name, once each)."""
    if load_model is None:
        from interp.models import load_model as load_default

        load_model = load_default
    loaded: dict[str, object] = {}

    def load_once(name: str):
        if name not in loaded:
            loaded[name] = load_model(name)
        return loaded[name]

    results = []
    for call in record.calls:
        fn = resolve_function(call.function)
        args = [decode_argument(value, load_once) for value in call.args]
        kwargs = {key: decode_argument(value, load_once) for key, value in call.kwargs.items()}
        results.append(fn(*args, **kwargs))
    return results


def reproduce(record: RunRecord, load_model: Callable | None = None, rtol: float = 1e-4,
              atol: float = 1e-5) -> Reproduction:
    """Make the record's calls again and compare every tensor the run kept (or, when its raw
    tensors were left out, its summary) to tolerance."""
    if not record.calls:
        return Reproduction(False, ("The run records no interp call, so it can't be re-run.",), 0)
    try:
        results = rerun(record, load_model)
    except Exception as error:  # a model that no longer loads, a changed signature, ...
        return Reproduction(False, (f"Re-running the calls failed: {error}",), 0)
    made = results[-1]
    for name in filter(None, record.calls[-1].part.split(".")):
        made = getattr(made, name)  # the part of the result that the run holds
    fresh = named_tensors(made)
    differences, compared = [], 0
    for name, kept in record.tensors.items():
        new = fresh.get(name)
        if new is None:
            differences.append(f"{name}: no longer produced")
            continue
        compared += 1
        if tuple(new.shape) != tuple(kept.shape):
            differences.append(f"{name}: shape {tuple(kept.shape)} -> {tuple(new.shape)}")
        elif not torch.allclose(new.double(), kept.double(), rtol=rtol, atol=atol,
                                equal_nan=True):
            gap = (new.double() - kept.double()).abs().nan_to_num(0.0).max().item()
            differences.append(f"{name}: largest difference {gap:.3g} "
                               f"(tolerance {atol:g} + {rtol:g}·|value|)")
    fresh_summary = scalar_summary(made)
    for name, kept in record.summary.items():
        new = fresh_summary.get(name)
        compared += 1
        if isinstance(kept, float) and isinstance(new, (int, float)):
            if not math.isclose(kept, new, rel_tol=rtol, abs_tol=atol):
                differences.append(f"{name}: {kept!r} -> {new!r}")
        elif new != kept:
            differences.append(f"{name}: {kept!r} -> {new!r}")
    return Reproduction(not differences, tuple(differences), compared)

