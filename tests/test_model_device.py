"""Token tensors reach the model on the device of its weights, not on the CPU where they are built.

There is no GPU here, so the model is stood in for by a bridge whose weights report the `meta`
device: it records the device of every token tensor it is fed and answers with zero
activations on the CPU. A tensor made without `device=` and never moved arrives on the CPU,
which is what breaks on a GPU (the reference is the weights' device, read from the stand-in's
parameters). The numbers do not matter here, only where the inputs were.
"""

from __future__ import annotations

import contextlib

import torch

from interp.attribution import AttributionTarget
from interp.attribution.perturbation import occlusion
from interp.attribution.shap_values import shap_attribution
from interp.demo_model import evaluate

ELSEWHERE = torch.device("meta")


class ElsewhereBridge:
    """A bridge stand-in whose weights sit on ELSEWHERE; `fed` lists the devices of its inputs."""

    def __init__(self, d_model: int, d_vocab: int, n_layers: int):
        self.d_model, self.d_vocab = d_model, d_vocab
        self.blocks = [torch.nn.Identity() for _ in range(n_layers)]
        self.ln_final = torch.nn.Identity()
        self.fed: list[torch.device] = []

    def parameters(self):
        yield torch.empty(0, device=ELSEWHERE)

    def __call__(self, input_ids: torch.Tensor, stop_at_layer: int | None = None, **_):
        self.fed.append(input_ids.device)
        width = self.d_vocab if stop_at_layer is None else self.d_model
        return torch.zeros(*input_ids.shape, width)

    def unembed(self, resid: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*resid.shape[:-1], self.d_vocab)


class ElsewhereModel:
    """The tiny model with its forward passes sent to an ElsewhereBridge (tokenizer and info are
    the real model's)."""

    def __init__(self, model):
        self._model = model
        self.bridge = ElsewhereBridge(model.info.d_model, model.info.d_vocab, model.info.n_layers)
        self.device = ELSEWHERE

    def __getattr__(self, name):
        return getattr(self._model, name)

    @contextlib.contextmanager
    def exclusive(self):
        yield self.bridge

    @contextlib.contextmanager
    def hooked(self, fwd_hooks=(), bwd_hooks=()):
        yield self.bridge


def target_of(model) -> AttributionTarget:
    return AttributionTarget("token", model.token_ids(" the")[0], None, "' the'")


def test_shap_feeds_the_model_rows_on_its_device(tiny_model):
    model = ElsewhereModel(tiny_model)
    ids = tiny_model.to_tokens("The cat sat on")[0].tolist()
    shap_attribution(model, ids, target_of(tiny_model), explainer="exact")
    assert model.bridge.fed and set(model.bridge.fed) == {ELSEWHERE}


def test_occlusion_feeds_the_model_rows_on_its_device(tiny_model):
    model = ElsewhereModel(tiny_model)
    ids = tiny_model.to_tokens("The cat sat on")[0].tolist()
    occlusion(model, ids, target_of(tiny_model), mode="substitute")
    assert model.bridge.fed and set(model.bridge.fed) == {ELSEWHERE}


def test_demo_model_evaluations_feed_the_model_on_its_device(tiny_model):
    """`as_runner` of a loaded model: the evaluations build tokens on the CPU; before the fix
    they reached the model there."""
    model = ElsewhereModel(tiny_model)
    runner = evaluate.as_runner(model)
    logits = evaluate.last_logits(runner, ["The cat sat", "A dog"])
    assert logits.shape == (2, tiny_model.info.d_vocab) and logits.device.type == "cpu"
    assert model.bridge.fed and set(model.bridge.fed) == {ELSEWHERE}
