"""Typed errors raised by `interp`.

Every message says what happened and what the user can do about it; pages show the message with
`st.error` and never a traceback. Catch `InterpError` to handle all of them at once.
"""

from __future__ import annotations


class InterpError(Exception):
    """Base class of every error `interp` raises on purpose."""


class ModelUnavailableError(InterpError):
    """The model can't be had here: not cached and no network, a bad folder, or too little memory."""


class ModelNotAllowedError(InterpError):
    """This deployment only serves its listed models (custom ids and folders are switched off)."""


class NestedHookError(InterpError):
    """A hooked or exclusive block was opened inside another one in the same thread."""


class LeftoverHooksError(InterpError):
    """Code inside `exclusive()` left torch module hooks on the shared model (they were removed)."""


class InvalidPromptError(InterpError):
    """The prompt can't be analysed as given (empty, too long, control characters, ...)."""


class InvalidOptionError(InterpError):
    """An option is not one of the valid choices; the message lists them."""


def invalid_choice(what: str, value: object, valid: list[str] | tuple[str, ...]) -> InvalidOptionError:
    """Build the error for an unknown choice, listing the valid ones."""
    listed = ", ".join(repr(v) for v in valid)
    return InvalidOptionError(f"Unknown {what} {value!r}. Valid choices: {listed}.")


class UnsupportedArchitectureError(InterpError):
    """The method assumes a block layout (GPT-2's) that this model's architecture doesn't have."""


class UnreachableSiteError(InterpError):
    """A gradient-based method found an activation that the metric's graph never reaches."""


class InputTooLongError(InvalidOptionError):
    """The input is longer than a method computes for (e.g. attention flow's max-flow per cell)."""


class ClassifierUnavailableError(InterpError):
    """No toxicity classifier can be loaded here: no local checkpoint set and no download possible."""


class AnalysisCancelledError(InterpError):
    """An analysis was dropped from a model's queue, or stopped between forward passes, because
    whoever asked for it has gone (a closed tab) or asked for something else."""


class QueueFullError(InterpError):
    """A model's queue is at its configured length, or this owner has its most analyses queued."""


class QueueWaitTooLongError(QueueFullError):
    """The estimated wait for a model is over what a request may wait (an API answers 503)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SAEFormatError(InterpError):
    """A sparse autoencoder folder or file can't be used: missing files or keys, wrong shapes, or
    a width that does not match the model's activations."""


class RunStoreError(InterpError):
    """The run store can't do what was asked: it can't be opened, it is read-only (written by a
    newer version of the app), or a run or an import file is missing or unreadable."""


class RunNotFoundError(RunStoreError):
    """No saved run has this id (it was deleted, or saved to another store)."""


class CorruptRunError(RunStoreError):
    """A saved run, or a run file being imported, can't be read back (damaged or hand-edited)."""


class RunStoreReadOnlyError(RunStoreError):
    """The store was written by a newer schema than this app knows: it is read, never written."""
