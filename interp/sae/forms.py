"""What training a sparse autoencoder asks for, described once for the page's form (and an API).

`training_fields` are the `InputField`s of `training_setup`, in form order: where to read the
activations (site and layer), the SAE's shape (architecture, expansion, k or the L1 weight)
and the optimisation (steps, learning rate, warm-up, batch, seed, corpus size, resampling).
`training_setup` checks them and gives the hook name, the `TrainingConfig` and the token budget.
"""

from __future__ import annotations

from interp.errors import InvalidOptionError, invalid_choice
from interp.inputs import InputField
from interp.sae.buffer import SITE_LABELS, SITES, hook_name
from interp.sae.training import TrainingConfig

ARCHITECTURE_LABELS = {"topk": "TopK", "relu": "ReLU + L1", "batchtopk": "BatchTopK"}
EXPANSIONS = (1, 2, 4, 8, 16, 32)
DEFAULT_K, DEFAULT_L1 = 32, 5.0


def training_fields(n_layers: int) -> tuple[InputField, ...]:
    """The main training inputs for a model of `n_layers` layers (the layer defaults to the
    middle one)."""
    return (
        InputField("site", "Activation", "resid_pre", "choice", choices=tuple(SITES),
                   choice_labels=SITE_LABELS),
        InputField("architecture", "Architecture", "topk", "radio",
                   choices=tuple(ARCHITECTURE_LABELS), choice_labels=ARCHITECTURE_LABELS,
                   column=1),
        InputField("layer", "Layer", n_layers // 2, "slider", minimum=0,
                   maximum=n_layers - 1, row=1),
        InputField("l1_coefficient", "L1 coefficient", DEFAULT_L1, "number", key="l1",
                   minimum=0.0, step=0.5, row=1, column=1, shown_when=("architecture", ("relu",))),
        InputField("k", "k (features per token)", DEFAULT_K, "integer", minimum=1, step=1,
                   row=1, column=1, shown_when=("architecture", ("topk", "batchtopk"))),
        InputField("expansion", "Expansion factor", 4, "choice", choices=EXPANSIONS, row=2),
        InputField("steps", "Steps", 300, "integer", minimum=10, step=50, row=2, column=1),
    )


MORE_TRAINING_FIELDS = (
    InputField("learning_rate", "Learning rate", 2e-3, "number", key="lr", minimum=1e-5,
               step=1e-4, number_format="%.0e"),
    InputField("batch_size", "Batch (tokens)", 512, "integer", key="batch", minimum=16, step=64,
               column=1),
    InputField("warmup_steps", "Warm-up steps", 30, "integer", key="warmup", minimum=0, step=10,
               row=1),
    InputField("seed", "Seed", 0, "integer", minimum=0, step=1, row=1, column=1),
    InputField("max_tokens", "Corpus tokens to collect", 20_000, "integer", minimum=1_000,
               step=5_000, row=2),
    InputField("resample_every", "Resample dead every (steps; 0 = off)", 100, "integer",
               key="resample", minimum=0, step=50, row=2, column=1),
)


def training_setup(n_layers: int, site: str = "resid_pre", layer: int | None = None,
                   architecture: str = "topk", expansion: int = 4, k: int = DEFAULT_K,
                   l1_coefficient: float = DEFAULT_L1, steps: int = 300,
                   learning_rate: float = 2e-3, batch_size: int = 512, warmup_steps: int = 30,
                   seed: int = 0, max_tokens: int = 20_000, resample_every: int = 100
                   ) -> tuple[str, TrainingConfig, int]:
    """(hook name, training configuration, corpus tokens to collect) from the form's answers;
    bad answers raise InvalidOptionError saying what is allowed. Dead features are those
    silent for 50 batches; the curves are evaluated about 30 times over the run."""
    if architecture not in ARCHITECTURE_LABELS:
        raise invalid_choice("SAE architecture", architecture, tuple(ARCHITECTURE_LABELS))
    if int(expansion) not in EXPANSIONS:
        raise invalid_choice("expansion factor", expansion, tuple(map(str, EXPANSIONS)))
    for name, value, least in (("k", k, 1), ("steps", steps, 1), ("batch_size", batch_size, 1),
                               ("max_tokens", max_tokens, 1), ("warmup_steps", warmup_steps, 0),
                               ("resample_every", resample_every, 0), ("seed", seed, 0)):
        if int(value) < least:
            raise InvalidOptionError(f"{name} must be at least {least}, not {value}.")
    if not learning_rate > 0 or l1_coefficient < 0:
        raise InvalidOptionError("The learning rate must be positive and the L1 coefficient "
                                 "not negative.")
    hook = hook_name(site, n_layers // 2 if layer is None else int(layer), n_layers)
    config = TrainingConfig(
        architecture=architecture, expansion=int(expansion), k=int(k),
        l1_coefficient=float(l1_coefficient), learning_rate=float(learning_rate),
        warmup_steps=int(warmup_steps), steps=int(steps), batch_size=int(batch_size),
        seed=int(seed), resample_every=int(resample_every),
        dead_after_tokens=int(batch_size) * 50, eval_every=max(1, int(steps) // 30))
    return hook, config, int(max_tokens)
