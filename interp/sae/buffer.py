"""Collecting a model's activations at one hook over a corpus, into a buffer on disk.

Each text becomes one window (BOS, then its tokens; a text longer than the window is cut into
several windows, each starting with BOS), as the demo model was trained; windows of similar
length are batched with end-of-text padding after their end, which a causal model never attends
to. Each batch runs through the model (on a GPT-2, its blocks up to the hook as plain tensor
operations, checked once against the hook), and the activations at the hook on the real tokens
(BOS excluded: its norm is an outlier an SAE would spend features on) are written at their
window's place in a float32 file on disk, so only one batch is ever in memory. The windows'
token ids and each row's (window, position) are kept beside it, so any row maps back to its
context.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from interp.errors import InvalidOptionError, invalid_choice
from interp.patching import gpt2_block
from interp.patching.gpt2_block import PLAIN_SITES, plain_gpt2_blocks
from interp.patching.self_check import RELATIVE_TOLERANCE

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
HOOK_PATTERN = re.compile(r"blocks\.(?P<layer>\d+)\.hook_(?P<site>\w+)")
# Padded tokens per forward pass while collecting: products have enough rows to run near the
# machine's GEMM rate, and on GPT-2 small the MLP's hidden units are ~25 MB (measured at layer 6
# on 2 threads: 1,090-1,150 tokens/s and ~130 MB peak extra memory; 4,096 tokens was no faster
# and took ~240 MB).
BATCH_TOKENS = 2048
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


def length_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Window indices in batches of similar lengths (longest first), each within `batch_tokens`
    padded tokens (one window at least): short texts then share a pass instead of each being
    padded to the longest of an arbitrary batch."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])  # sorted longest first: the batch's padded length
        size = max(1, int(batch_tokens) // longest)
        batches.append(order[start:start + size])
        start += size
    return batches


def collect_activations(model, texts: Sequence[str], hook: str, folder: str | Path,
                        window: int = 64, max_tokens: int = 50_000,
                        batch_tokens: int = BATCH_TOKENS, max_bytes: int = DEFAULT_MAX_BYTES,
                        progress: Progress | None = None,
                        cancelled: Callable[[], bool] | None = None) -> ActivationBuffer:
    """Run `model` over `texts` and store the activations at `hook` in a new buffer in `folder`.

    `window` is cut to the model's context; at most `max_tokens` tokens are stored, and a
    buffer bigger than `max_bytes` on disk is refused before anything runs. Windows run in
    batches of similar length (`length_batches`) and each window's rows are written at its
    place, so the buffer keeps the corpus's order. `cancelled()` is asked between batches; the
    windows done by then are kept, in order.
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
    starts = np.concatenate([[0], np.cumsum(lengths - 1)])
    row_bytes = d_in * 4
    batches = length_batches(lengths, batch_tokens)
    read = activation_reader(model, hook, windows[batches[0][:2], :int(lengths[batches[0][0]])])
    done = np.zeros(len(lengths), dtype=bool)
    done_rows = 0
    # Plain writes at each window's offset, not a writable memory map: a map's written pages
    # would count in the process's resident memory until the kernel wrote them back.
    descriptor = os.open(folder / ACTIVATIONS_FILE, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for index, chosen in enumerate(batches):
            if cancelled is not None and cancelled():
                break
            batch_lengths = lengths[chosen]
            ids = torch.from_numpy(windows[chosen, :int(batch_lengths.max())]).long()
            acts = read(ids).numpy().astype(np.float32, copy=False)
            for row, window_index in enumerate(chosen):
                n = int(lengths[window_index]) - 1  # BOS (position 0) is not stored
                os.pwrite(descriptor, acts[row, 1:n + 1].tobytes(),
                          int(starts[window_index]) * row_bytes)
            done[chosen] = True
            done_rows += int((batch_lengths - 1).sum())
            if progress is not None:
                progress((index + 1) / len(batches), f"Collecting activations: batch "
                         f"{index + 1} of {len(batches)} ({done_rows:,} tokens)")
        if not done.all():
            done_rows = keep_done_windows(descriptor, starts, lengths, done, row_bytes)
        os.ftruncate(descriptor, done_rows * row_bytes)
    finally:
        os.close(descriptor)
    np.save(folder / TOKENS_FILE, windows[done])
    np.save(folder / LENGTHS_FILE, lengths[done])
    return _write_meta(ActivationBuffer(folder, hook, model.name, d_in, done_rows, window,
                                        int(done.sum())))


def keep_done_windows(descriptor: int, starts: np.ndarray, lengths: np.ndarray,
                      done: np.ndarray, row_bytes: int) -> int:
    """Move the rows of the windows done to the front of the open file, in corpus order (each
    moves down only, so one pass in order never overwrites rows not yet moved); their count."""
    kept = 0
    for window_index in np.flatnonzero(done):
        start, n = int(starts[window_index]), int(lengths[window_index]) - 1
        if start != kept:
            os.pwrite(descriptor, os.pread(descriptor, n * row_bytes, start * row_bytes),
                      kept * row_bytes)
        kept += n
    return kept


def plain_site(model, hook: str) -> tuple[tuple, str, int] | None:
    """(GPT-2 blocks, site, layer) when `hook` can be computed by `gpt2_block.site_activation`
    on this model (a Hugging Face GPT-2 and one of its residual or output sites); else None."""
    match = HOOK_PATTERN.fullmatch(hook)
    blocks = plain_gpt2_blocks(model) if match else None
    if match is None or blocks is None or match["site"] not in PLAIN_SITES:
        return None
    return blocks, match["site"], int(match["layer"])


def activation_reader(model, hook: str, probe: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from token ids [batch, pos] to the activations at `hook` [batch, pos, d] on
    the CPU. On a GPT-2 it runs the blocks up to the hook as plain tensor operations (no hook,
    no lock, none of the bridge's per-module work, nothing after the hook), once the `probe`
    windows gave the same activations that way as through the model's own hook (within
    `RELATIVE_TOLERANCE` of their largest value); otherwise through the hook."""
    def hooked(token_ids: torch.Tensor) -> torch.Tensor:
        return activations_at(model, hook, token_ids)

    route = plain_site(model, hook)
    if route is None:
        return hooked
    blocks, site, layer = route

    @torch.no_grad()
    def plain(token_ids: torch.Tensor) -> torch.Tensor:
        hidden = gpt2_block.embeddings(model, token_ids.to(model.device))
        return gpt2_block.site_activation(blocks, hidden, site, layer).to("cpu", torch.float32)

    probe_ids = torch.from_numpy(np.ascontiguousarray(probe)).long()
    reference = hooked(probe_ids)
    difference = float((plain(probe_ids) - reference).abs().max())
    return plain if difference <= RELATIVE_TOLERANCE * float(reference.abs().max()) else hooked


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
