"""A first download: its progress is reported in bytes, and it never blocks other models' loads."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import huggingface_hub
import pytest

from interp.downloads import MODEL_FILES, download_model
from interp.memory_budget import LanguageModelCache, MemoryBudget

GB = 10**9


def fake_hub(monkeypatch, files: dict[str, int], cached: set[str] = frozenset(),
             chunk: int = 1000):
    """huggingface_hub's dry run and downloader replaced by stand-ins that stream `files`
    (name -> size) through the tqdm class they are given, as `http_get` does."""
    fetched: list[str] = []

    def dry_run(repo_id, allow_patterns=None, dry_run=False, **_):
        assert dry_run and allow_patterns == MODEL_FILES
        return [SimpleNamespace(filename=name, file_size=size, will_download=name not in cached)
                for name, size in files.items()]

    def download(repo_id, filename, tqdm_class=None, **_):
        with tqdm_class(total=files[filename], initial=0, unit="B", desc=filename,
                        name="huggingface_hub.http_get") as bar:
            for start in range(0, files[filename], chunk):
                bar.update(min(chunk, files[filename] - start))
        fetched.append(filename)
        return f"/cache/{filename}"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", dry_run)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return fetched


def test_progress_counts_every_byte_of_the_files_the_cache_lacks(monkeypatch):
    """Reference: the sizes written here by hand (5,500 + 120 bytes to fetch; the cached
    tokenizer is skipped)."""
    fetched = fake_hub(monkeypatch, {"model.safetensors": 5500, "config.json": 120,
                                     "tokenizer.json": 900}, cached={"tokenizer.json"})
    seen: list[tuple[int, int]] = []
    assert download_model("org/model", lambda done, total: seen.append((done, total))) == 5620
    assert fetched == ["model.safetensors", "config.json"]
    assert {total for _, total in seen} == {5620}
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 5620
    assert len(done) > 5  # the big file reports as it streams, not once at the end


def test_a_download_runs_outside_the_load_queue_so_other_models_still_load():
    """Invariant: while one session's model downloads (held on an event here), another model
    loads and is returned; then the downloaded model loads from the cache."""
    downloading, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def plan(name):
        return SimpleNamespace(name=name, source=name, label=name, n_bytes=GB // 10,
                               needs_download=name == "gpt2")

    def fetch(source, progress):
        downloading.set()
        release.wait(10)
        progress(1, 1)

    class Model:  # weakref-able, as the budget needs
        def __init__(self, name):
            self.name = name

    def load(planned):
        loads.append(planned.name)
        return Model(planned.name)

    cache = LanguageModelCache(MemoryBudget(int(2.7 * GB)), max_models=2, plan=plan, load=load,
                               measure=lambda model: GB // 10, fetch=fetch)
    reported: list[tuple[int, int]] = []
    first = threading.Thread(target=cache.get, args=("gpt2", lambda *p: reported.append(p)))
    first.start()
    assert downloading.wait(10)
    demo = cache.get("demo")  # would hang here if the download held the load lock
    assert demo.name == "demo" and loads == ["demo"]
    release.set()
    first.join(10)
    assert loads == ["demo", "gpt2"] and reported == [(1, 1)]


@pytest.mark.parametrize("source, cached, expected", [("/a/folder", False, False),
                                                      ("org/model", True, False),
                                                      ("org/model", False, True)])
def test_only_an_uncached_hub_model_needs_a_download(monkeypatch, source, cached, expected):
    """Reference: the rule by hand: folders never download, cached Hub ids neither."""
    import torch

    from interp import models
    monkeypatch.setattr(models, "hub_cached", lambda repo_id: cached)
    plan = models.LoadPlan(name=source, source=source, label=source, spec=None, n_params=1,
                           dtype=torch.float32)
    assert plan.needs_download is expected
