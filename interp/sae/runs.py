"""The SAE page's steps as plain calls: collect, train, evaluate and scan in one go, or the same
for an SAE loaded from an SAELens folder; and the bundled corpus sample."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.models import ASSETS_DIR
from interp.sae.buffer import ActivationBuffer, collect_activations, hook_width
from interp.sae.features import FeatureScan, scan_features
from interp.sae.metrics import SAEMetrics, evaluate_sae
from interp.sae.modules import SparseAutoencoder
from interp.sae.saelens import check_fits
from interp.sae.training import TrainedSAE, Trainer, TrainingConfig, TrainingPoint, torch_threads

CORPUS_PATH = ASSETS_DIR / "sae" / "demo_corpus.txt"
BUFFER_ROOT = Path(tempfile.gettempdir()) / "workbench-sae-buffers"
Progress = Callable[[float, str], None]


def bundled_corpus() -> list[str]:
    """The corpus sample shipped in assets/sae (one text per line; see its README)."""
    return [line for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus_from_upload(text: str) -> list[str]:
    """An uploaded text file as texts: one per non-empty line."""
    return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class SAERun:
    """An SAE with everything the page shows about it: where it came from (`source`: "trained"
    or the folder it was loaded from), the buffer it was evaluated on, metrics and scan."""

    sae: SparseAutoencoder
    source: str
    buffer: ActivationBuffer
    metrics: SAEMetrics
    scan: FeatureScan
    trained: TrainedSAE | None = None


def new_buffer_folder() -> Path:
    """A new, empty folder for an activation buffer."""
    BUFFER_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="buffer-", dir=BUFFER_ROOT))


def assess(model, sae: SparseAutoencoder, buffer: ActivationBuffer, source: str,
           trained: TrainedSAE | None = None, progress: Progress | None = None) -> SAERun:
    """Scan, score and describe an SAE on `buffer`, as the page's run result."""
    if progress is not None:
        progress(0.95, "Scanning features and splicing the SAE into the model")
    sae = sae.to(model.device)
    scan = scan_features(sae, buffer, device=model.device)
    metrics = evaluate_sae(model, sae, buffer, scan.frequency)
    return SAERun(sae=sae, source=source, buffer=buffer, metrics=metrics, scan=scan,
                  trained=trained)


def train_on_corpus(model, texts: Sequence[str], hook: str, config: TrainingConfig,
                    max_tokens: int = 30_000, window: int = 64, progress: Progress | None = None,
                    on_point: Callable[[TrainingPoint], None] | None = None,
                    on_trainer: Callable[[Trainer], None] | None = None,
                    cancelled: Callable[[], bool] | None = None) -> SAERun:
    """Collect activations at `hook` over `texts`, train an SAE on them, evaluate and scan it.

    `on_trainer(trainer)` gets the trainer before it starts, so a caller can keep its best state
    (`trainer.best()`) if the run is interrupted."""
    def collecting(fraction: float, text: str) -> None:
        if progress is not None:
            progress(0.3 * fraction, text)

    with torch_threads(config.threads):
        buffer = collect_activations(model, texts, hook, new_buffer_folder(), window=window,
                                     max_tokens=max_tokens, progress=collecting,
                                     cancelled=cancelled)
    trainer = Trainer(buffer, config, model.device)
    if on_trainer is not None:
        on_trainer(trainer)

    def point(p: TrainingPoint) -> None:
        if progress is not None:
            progress(0.3 + 0.65 * p.step / config.steps,
                     f"Training: step {p.step} of {config.steps}, L0 {p.l0:.1f}, explained "
                     f"variance {p.explained_variance:.3f}")
        if on_point is not None:
            on_point(p)

    trained = trainer.run(point, cancelled)
    with torch_threads(config.threads):
        return assess(model, trained.sae, buffer, "trained", trained, progress)


def assess_loaded(model, sae: SparseAutoencoder, source: str, texts: Sequence[str],
                  max_tokens: int = 20_000, window: int = 64,
                  progress: Progress | None = None) -> SAERun:
    """Check a loaded SAE against the model, collect activations at its hook and assess it."""
    check_fits(sae, model, hook_width(model, sae.config.hook_name))
    buffer = collect_activations(model, texts, sae.config.hook_name, new_buffer_folder(),
                                 window=window, max_tokens=max_tokens,
                                 progress=lambda f, t: progress(0.9 * f, t) if progress else None)
    return assess(model, sae, buffer, source, progress=progress)


def log10_density(scan: FeatureScan) -> torch.Tensor:
    """log10 of each feature's firing frequency (SAELens' sparsity.safetensors), -10 if dead."""
    return torch.where(scan.frequency > 0, scan.frequency.clamp_min(1e-10).log10(),
                       torch.full_like(scan.frequency, -10.0))
