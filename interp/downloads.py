"""Fetching a Hub model into the local Hugging Face cache with progress a page can show.

A first load of GPT-2 small moves about 0.5 GB; loading straight through `from_pretrained` gives
no sign of life for minutes. Here the files a causal language model needs (config, safetensors
weights, tokenizer) are listed first (a dry run: names and sizes, nothing fetched), then fetched
one by one with `huggingface_hub`'s own downloader, whose byte counter is routed to a
`progress(bytes_done, bytes_total)` callback. Loading then reads the cache as for any cached model.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from tqdm.std import tqdm

Progress = Callable[[int, int], None]
# What `from_pretrained` reads for a causal LM with a fast tokenizer; no other weight formats.
MODEL_FILES = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
               "merges.txt"]


def byte_counter(report: Callable[[int], None]) -> type[tqdm]:
    """A tqdm class that writes nothing and hands each file's running byte count to `report`."""

    class ByteCounter(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, file=io.StringIO(), **kwargs)

        def update(self, n=1):
            shown = super().update(n)
            report(int(self.n))
            return shown

    return ByteCounter


def files_to_download(repo_id: str) -> list:
    """The model files not yet in the cache (huggingface_hub's dry run: name and size only)."""
    from huggingface_hub import snapshot_download

    listed = snapshot_download(repo_id, allow_patterns=MODEL_FILES, dry_run=True)
    return [info for info in listed if info.will_download]


def download_model(repo_id: str, progress: Progress | None = None) -> int:
    """Fetch the files `repo_id` needs that the cache lacks; returns the bytes fetched. The total
    is known before the first byte, so `progress` can show a true fraction from the start."""
    from huggingface_hub import hf_hub_download

    needed = files_to_download(repo_id)
    total = sum(int(info.file_size or 0) for info in needed)
    done = 0
    for info in needed:
        def report(file_bytes: int, before: int = done) -> None:
            if progress is not None:
                progress(min(before + file_bytes, total), total)

        hf_hub_download(repo_id, info.filename, tqdm_class=byte_counter(report))
        done += int(info.file_size or 0)
        if progress is not None:
            progress(done, total)
    return done
