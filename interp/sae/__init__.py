"""Sparse autoencoders: find interpretable features in a model's activations, on a CPU.

An SAE rewrites one activation (the residual stream or an MLP's output at a layer) as a sparse
sum of learned directions, "features", most of them off on any token. This package collects
activations into a buffer on disk (`buffer`), trains ReLU-L1, TopK and BatchTopK SAEs
(`training`), scores them (`metrics`: L0, explained variance, loss recovered when spliced in),
describes each feature (`features`), reads and writes SAELens folders (`saelens`) and checks
whether two seeds find the same features (`stability`).
"""

from interp.sae.buffer import SITES, ActivationBuffer, collect_activations, hook_name
from interp.sae.features import (
    FeatureReport,
    FeatureScan,
    PromptFeatures,
    feature_report,
    prompt_features,
    scan_features,
)
from interp.sae.metrics import (
    SAEMetrics,
    SpliceLosses,
    evaluate_sae,
    explained_variance,
    l0,
    normalized_mse,
    splice_losses,
)
from interp.sae.modules import SAEConfig, SparseAutoencoder
from interp.sae.saelens import check_fits, load_saelens, read_cfg, save_saelens
from interp.sae.stability import SeedStability, compare_seeds, seed_stability
from interp.sae.training import TrainedSAE, Trainer, TrainingConfig, TrainingPoint, train_sae

__all__ = [
    "SITES", "ActivationBuffer", "FeatureReport", "FeatureScan", "PromptFeatures", "SAEConfig",
    "SAEMetrics", "SeedStability", "SparseAutoencoder", "SpliceLosses", "TrainedSAE", "Trainer",
    "TrainingConfig", "TrainingPoint", "check_fits", "collect_activations", "compare_seeds",
    "evaluate_sae", "explained_variance", "feature_report", "hook_name", "l0", "load_saelens",
    "normalized_mse", "prompt_features", "read_cfg", "save_saelens", "scan_features",
    "seed_stability", "splice_losses", "train_sae",
]

from interp.sae import reporting  # noqa: E402, F401  (registers explainers and CSV writers)
