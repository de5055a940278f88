"""A circuit's component table: each head's and MLP's direct effect on the logit difference,
checked against the same quantity computed plainly here from a cached forward pass."""

from __future__ import annotations

import torch

from interp import patching_tasks as tasks
from interp.circuits.data import circuit_data
from interp.circuits.direct_effects import component_direct_effects
from interp.circuits.graph import EdgeGraph
from interp.circuits.selection import Circuit
from interp.models import load_model


def last_position_cache(model, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The final LayerNorm scale, every layer's z and MLP output, at the last position."""
    cache: dict[str, torch.Tensor] = {}

    def store(name):
        def hook(activation, hook):
            cache[name] = activation[0, -1].detach().double()
        return hook

    names = ["ln_final.hook_scale"] + [f"blocks.{layer}.{part}"
                                       for layer in range(model.info.n_layers)
                                       for part in ("attn.hook_z", "hook_mlp_out")]
    with torch.no_grad(), model.hooked([(n, store(n)) for n in names]) as hooked:
        hooked(tokens.to(model.device), use_cache=False)
    return cache


def effect(output: torch.Tensor, scale: float, weight: torch.Tensor,
           direction: torch.Tensor) -> float:
    """What `output` adds to the metric through the final LayerNorm (centred, frozen scale)."""
    centred = output - output.mean()
    return float((centred / scale * weight) @ direction)


def plain_direct_effects(model, data) -> dict[str, float]:
    """Per component: its output at the last position, through the final LayerNorm's centring
    and frozen scale and its weight, dotted with W_U[:, correct] - W_U[:, wrong]; pair mean."""
    info, bridge = model.info, model.bridge
    sums: dict[str, float] = {}
    weight = bridge.ln_final.weight.double()
    for pair in range(data.n_pairs):
        cache = last_position_cache(model, data.clean_tokens[pair:pair + 1])
        direction = (bridge.W_U[:, data.metric.correct_ids[pair]]
                     - bridge.W_U[:, data.metric.wrong_ids[pair]]).double()
        scale = float(cache["ln_final.hook_scale"].reshape(()))
        for layer in range(info.n_layers):
            w_o = bridge.blocks[layer].attn.W_O.double()  # [head, d_head, d_model]
            z = cache[f"blocks.{layer}.attn.hook_z"]  # [head, d_head]
            for head in range(info.n_heads):
                name = f"L{layer}H{head}"
                sums[name] = sums.get(name, 0.0) + effect(z[head] @ w_o[head], scale, weight,
                                                          direction)
            name = f"MLP{layer}"
            sums[name] = sums.get(name, 0.0) + effect(cache[f"blocks.{layer}.hook_mlp_out"],
                                                      scale, weight, direction)
    return {name: value / data.n_pairs for name, value in sums.items()}


def test_direct_effects_equal_a_plain_computation_from_cached_outputs():
    model = load_model("demo", device="cpu")
    data = circuit_data(model, tasks.ioi_task(model, n_prompts=4))
    graph = EdgeGraph(model.info.n_layers, model.info.n_heads, data.n_pos)
    keep = graph.valid[:, :, None].expand(-1, -1, data.n_pos).clone()  # every component used
    circuit = Circuit(keep, (model.info.n_layers, model.info.n_heads, data.n_pos), "top_n", 0)
    effects = component_direct_effects(model, circuit, data)
    expected = plain_direct_effects(model, data)
    assert [name for name, _ in effects.rows] == list(graph.components())
    for name, value in effects.rows:
        assert abs(value - expected[name]) < 1e-4, (name, value, expected[name])
    assert any(abs(value) > 1e-3 for _, value in effects.rows)  # not all zeros
