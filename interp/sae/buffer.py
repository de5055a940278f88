"""Collecting a model's activations at one hook over a corpus, into a buffer on disk.

Each text becomes one window (BOS, then its tokens; a text longer than the window is cut into
several windows, each starting with BOS), as the demo model was trained; windows are batched
with end-of-text padding after their end, which a causal model never attends to. Each batch
runs through the model under its lock, and the activations at the hook on the real tokens (BOS
excluded: its norm is an outlier an SAE would spend features on) are appended to a float32 file,
so only one batch is ever in memory. The windows' token ids and each row's (window, position)
are kept beside it, so any row maps back to its context.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp.errors import InvalidOptionError, invalid_choice

SITES = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "attn_out": "blocks.{layer}.hook_attn_out",
}
SITE_LABELS = {"resid_pre": "Residual, before block", "resid_mid": "Residual, mid-block",
               "resid_post": "Residual, after block", "mlp_out": "MLP output",
               "attn_out": "Attention output"}
ACTIVATIONS_FILE, TOKENS_FILE, META_FILE = "activations.f32", "tokens.npy", "buffer.json"
LENGTHS_FILE = "lengths.npy"
# A buffer larger than this is refused before any work: ~1M tokens of GPT-2 small's width.
DEFAULT_MAX_BYTES = 4 * 1024 ** 3

Progress = Callable[[float, str], None]


class _StopForward(Exception):
    """Raised by the collecting hook: nothing after the hook is needed."""


def hook_name(site: str, layer: int, n_layers: int) -> str:
    """The TransformerLens hook name of a site ("resid_pre", "mlp_out", ...) at a layer."""
    if site not in SITES:
        raise invalid_choice("activation site", site, list(SITES))
    if not 0 <= int(layer) < n_layers:
        raise InvalidOptionError(f"Layer {layer} does not exist: this model has layers 0 to "
                                 f"{n_layers - 1}.")
    return SITES[site].format(layer=int(layer))


@dataclass(frozen=True)
class ActivationBuffer:
    """Activations [n_rows, d_in] in `folder` (float32 on disk, read through a memory map) and,
    for collected buffers, the token windows [n_windows, window] they came from (padded after
    each window's length); rows run window by window over positions 1 .. length - 1 (position 0
    is BOS, not stored)."""

    folder: Path
    hook_name: str
    model_name: str
    d_in: int
    n_rows: int
    window: int
    n_windows: int

    def activations(self) -> np.ndarray:
        """The memory-mapped activations (read-only; pages are read from disk as touched)."""
        return np.memmap(self.folder / ACTIVATIONS_FILE, dtype=np.float32, mode="r",
                         shape=(self.n_rows, self.d_in))

    def rows(self, indices, device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows as a float32 tensor on `device` (indices are sorted first: sequential reads)."""
        picked = np.sort(np.asarray(indices, dtype=np.int64))
        return torch.from_numpy(np.ascontiguousarray(self.activations()[picked])).to(device)

    def chunks(self, chunk_rows: int = 8192) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, rows) in order, `chunk_rows` at a time."""
        data = self.activations()
        for start in range(0, self.n_rows, chunk_rows):
            yield start, torch.from_numpy(np.array(data[start:start + chunk_rows]))

    @property
    def has_tokens(self) -> bool:
        return self.n_windows > 0

    def tokens(self) -> np.ndarray:
        """Token windows [n_windows, window] (int32), BOS first in each."""
        if not self.has_tokens:
            raise InvalidOptionError("This buffer was made from an array, not from text: it has "
                                     "no tokens. Collect activations from a corpus to browse.")
        return np.load(self.folder / TOKENS_FILE)

    def lengths(self) -> np.ndarray:
        """Each window's length in tokens, BOS included [n_windows]."""
        return np.load(self.folder / LENGTHS_FILE)

    def window_starts(self) -> np.ndarray:
        """The first row of each window, and n_rows at the end [n_windows + 1]."""
        return np.concatenate([[0], np.cumsum(self.lengths() - 1)])

    def row_tokens(self) -> np.ndarray:
        """The token id at each row [n_rows]."""
        tokens, lengths = self.tokens(), self.lengths()
        return np.concatenate([tokens[w, 1:lengths[w]] for w in range(len(lengths))])

    def locate(self, row: int, starts: np.ndarray | None = None) -> tuple[int, int]:
        """(window, position in the window) of a row."""
        starts = self.window_starts() if starts is None else starts
        window = int(np.searchsorted(starts, row, side="right") - 1)
        return window, int(row - starts[window] + 1)

    def delete(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def from_array(activations, folder: str | Path, hook: str = "synthetic",
                   model_name: str = "") -> ActivationBuffer:
        """A buffer holding given activations [n, d_in] (synthetic data, tests)."""
        array = np.ascontiguousarray(np.asarray(activations, dtype=np.float32))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        array.tofile(folder / ACTIVATIONS_FILE)
        return _write_meta(ActivationBuffer(folder, hook, model_name, array.shape[1],
                                            array.shape[0], window=0, n_windows=0))

    @staticmethod
    def open(folder: str | Path) -> ActivationBuffer:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        return ActivationBuffer(folder=Path(folder), **meta)


def _write_meta(buffer: ActivationBuffer) -> ActivationBuffer:
    meta = {"hook_name": buffer.hook_name, "model_name": buffer.model_name, "d_in": buffer.d_in,
            "n_rows": buffer.n_rows, "window": buffer.window, "n_windows": buffer.n_windows}
    (buffer.folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return buffer


def token_windows(model, texts: Sequence[str], window: int,
                  max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The corpus as windows [n, window] of token ids (BOS, then a text's tokens, padded with
    end-of-text) and their lengths [n]; at most `max_tokens` tokens after the BOS tokens."""
    bos = model.tokenizer.bos_token_id
    eos = model.tokenizer.eos_token_id
    pad = bos if eos is None else eos
    body, rows, total = window - 1, [], 0
    for text in texts:
        if not text.strip():
            continue
        ids = model.token_ids(text)
        for start in range(0, len(ids), body):
            piece = ids[start:start + body][: max_tokens - total]
            if piece:
                rows.append([bos, *piece])
                total += len(piece)
        if total >= max_tokens:
            break
    if not rows:
        raise InvalidOptionError("The corpus holds no text to collect activations from: give "
                                 "some text (one example per line).")
    lengths = np.asarray([len(r) for r in rows], dtype=np.int32)
    windows = np.full((len(rows), window), pad, dtype=np.int32)
    for index, ids in enumerate(rows):
        windows[index, :len(ids)] = ids
    return windows, lengths


def collect_activations(model, texts: Sequence[str], hook: str, folder: str | Path,
                        window: int = 64, max_tokens: int = 50_000, batch_size: int = 32,
                        max_bytes: int = DEFAULT_MAX_BYTES, progress: Progress | None = None,
                        cancelled: Callable[[], bool] | None = None) -> ActivationBuffer:
    """Run `model` over `texts` and store the activations at `hook` in a new buffer in `folder`.

    `window` is cut to the model's context; at most `max_tokens` tokens are stored, and a
    buffer bigger than `max_bytes` on disk is refused before anything runs. `cancelled()`
    is asked between batches (the rows so far are kept).
    """
    window = max(2, min(int(window), model.info.n_ctx))
    windows, lengths = token_windows(model, texts, window, int(max_tokens))
    d_in = hook_width(model, hook)
    n_rows = int((lengths - 1).sum())
    if n_rows * d_in * 4 > max_bytes:
        raise InvalidOptionError(
            f"{n_rows:,} tokens x {d_in} values need {n_rows * d_in * 4 / 1e9:.1f} GB on disk, "
            f"more than the {max_bytes / 1e9:.1f} GB allowed: lower the number of tokens.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_batches = math.ceil(windows.shape[0] / batch_size)
    done_windows = done_rows = 0
    with open(folder / ACTIVATIONS_FILE, "wb") as out:
        for index in range(n_batches):
            if cancelled is not None and cancelled():
                break
            chosen = slice(index * batch_size, (index + 1) * batch_size)
            batch_lengths = lengths[chosen]
            batch = torch.from_numpy(windows[chosen, :int(batch_lengths.max())]).long()
            acts = activations_at(model, hook, batch)
            keep = torch.arange(batch.shape[1])[None, :] < torch.from_numpy(batch_lengths)[:, None]
            keep[:, 0] = False
            out.write(acts[keep].numpy().astype(np.float32, copy=False).tobytes())
            done_windows += batch.shape[0]
            done_rows += int(keep.sum())
            if progress is not None:
                progress((index + 1) / n_batches, f"Collecting activations: batch {index + 1} "
                         f"of {n_batches} ({done_rows:,} tokens)")
    np.save(folder / TOKENS_FILE, windows[:done_windows])
    np.save(folder / LENGTHS_FILE, lengths[:done_windows])
    return _write_meta(ActivationBuffer(folder, hook, model.name, d_in, done_rows, window,
                                        done_windows))


@torch.no_grad()
def activations_at(model, hook: str, token_ids: torch.Tensor) -> torch.Tensor:
    """The activation at `hook` [batch, pos, d] on the CPU; the forward pass stops there."""
    if hook not in getattr(model.bridge, "hook_dict", {hook: None}):
        raise InvalidOptionError(
            f"{model.info.label} has no hook {hook!r} (it has {model.info.n_layers} layers, "
            f"0 to {model.info.n_layers - 1}). Valid sites: "
            + ", ".join(SITES[s].format(layer="L") for s in SITES) + ".")
    kept = []

    def keep(activation, hook):
        kept.append(activation.detach().to("cpu", torch.float32))
        raise _StopForward

    with model.hooked([(hook, keep)]) as bridge:
        try:
            bridge(token_ids.to(model.device), use_cache=False)
        except _StopForward:
            pass
    if not kept:
        raise InvalidOptionError(f"The hook {hook!r} never ran on {model.name}: it is not one "
                                 f"of the model's hooks. Valid sites: {', '.join(SITES)}.")
    return kept[0]


def hook_width(model, hook: str) -> int:
    """The activation width at `hook`, read from one short forward pass (not assumed)."""
    bos = model.tokenizer.bos_token_id
    return int(activations_at(model, hook, torch.tensor([[bos, bos]])).shape[-1])
