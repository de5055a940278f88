"""The activation patching engine: invariants, corruption by noise, datasets, options, cancelling.

Numbers come from invariants (patching the whole residual stream restores the clean run),
from separate single-prompt runs, or from a plain hooked forward pass written here; the
equivalence with TransformerLens' own patching is in test_patching_peer.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interp import patching as P
from interp.errors import InvalidOptionError, InvalidPromptError, UnsupportedArchitectureError
from interp.figures.patching import layer_head_heatmap, layer_pos_heatmap
from interp.patching import staircase

CLEAN_PROMPTS = ["When Mary and John went to the store, John gave a drink to",
                 "When Tom and Anna went to the park, Anna gave a ball to"]
CORRUPTED_PROMPTS = ["When Mary and John went to the store, Mary gave a drink to",
                     "When Tom and Anna went to the park, Tom gave a ball to"]
ANSWERS = [(" Mary", " John"), (" Tom", " Anna")]


def save_sharp_gpt2(folder):
    """A 2-layer random GPT-2 with weights ~15x larger than the default initialisation.

    The default (std 0.02) makes every patch move the metric by ~1e-3, too close to float noise
    for a tolerance to mean anything; with std 0.3 patches move the logit difference by ~0.8
    and the model is non-linear enough for attribution patching to be visibly approximate.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from interp.random_models import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=len(tokenizer),
                        initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load_sharp_model(tmp_path_factory):
    from interp.models import load_model

    return load_model(str(save_sharp_gpt2(tmp_path_factory.mktemp("sharp-gpt2"))), device="cpu")


def token_id(model, word: str) -> int:
    ids = model.to_tokens(word, prepend_bos=False)[0]
    assert len(ids) == 1, f"{word!r} is not a single token"
    return int(ids[0])


def ioi_inputs(model, n_prompts: int = 2):
    """IOI-style prompt pairs (same length), their inputs and the logit-difference metric."""
    clean = model.to_tokens(CLEAN_PROMPTS[:n_prompts])
    corrupted = model.to_tokens(CORRUPTED_PROMPTS[:n_prompts])
    correct = [token_id(model, a) for a, _ in ANSWERS[:n_prompts]]
    wrong = [token_id(model, b) for _, b in ANSWERS[:n_prompts]]
    return P.PatchingInputs(clean, corrupted), P.logit_diff_metric(correct, wrong), correct, wrong


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory):
    return load_sharp_model(tmp_path_factory)


def first_differing_position(inputs) -> int:
    differs = (inputs.clean_tokens != inputs.corrupted_tokens).any(dim=0)
    return int(torch.nonzero(differs)[0])


# --- invariants ------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_denoising_a_whole_residual_stream_gives_the_clean_value(sharp_model, site):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site=site, granularity="layer")
    assert result.values.shape == (2,)
    assert abs(result.clean_value - result.corrupted_value) > 0.05  # the test can fail
    assert torch.allclose(result.values, torch.full((2,), result.clean_value), atol=1e-5)
    assert torch.allclose(result.normalized, torch.ones(2), atol=1e-4)


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post"])
def test_noising_a_whole_residual_stream_gives_the_corrupted_value(sharp_model, site):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site=site, granularity="layer",
                     direction="noising")
    assert torch.allclose(result.values, torch.full((2,), result.corrupted_value), atol=1e-5)
    assert torch.allclose(result.normalized, torch.zeros(2), atol=1e-4)


@pytest.mark.parametrize("direction", P.DIRECTIONS)
def test_positions_where_the_prompts_agree_change_nothing_in_the_first_layer(sharp_model, direction):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site="resid_pre", direction=direction)
    differs = first_differing_position(inputs)
    receiving = result.corrupted_value if direction == "denoising" else result.clean_value
    expected_normalized = 0.0 if direction == "denoising" else 1.0
    unchanged = result.values[0, :differs]
    assert torch.allclose(unchanged, torch.full_like(unchanged, receiving), atol=1e-5)
    assert torch.allclose(result.normalized[0, :differs],
                          torch.full_like(unchanged, expected_normalized), atol=1e-4)
    # every position of the first layer that differs moves the metric
    assert (result.values[0, differs:] - receiving).abs().max() > 1e-3


def test_normalized_is_the_documented_formula(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site="z", granularity="head")
    expected = (result.values - result.corrupted_value) / (result.clean_value - result.corrupted_value)
    assert torch.allclose(result.normalized, expected)


def test_resid_mid_patches_the_residual_stream_not_only_the_mlp_input(sharp_model):
    """Patching resid_mid at the last layer must reach the logits by the residual branch too."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site="resid_mid", granularity="layer")
    last = sharp_model.info.n_layers - 1
    clean_cache, corrupted_cache = {}, {}
    for tokens, cache in ((inputs.clean_tokens, clean_cache), (inputs.corrupted_tokens, corrupted_cache)):
        def save(activation, hook, cache=cache):
            cache["mid"] = activation.detach().clone()
        with torch.no_grad(), sharp_model.hooked([(f"blocks.{last}.hook_resid_mid", save)]) as bridge:
            bridge(tokens)

    # By hand: resid_post = mid + mlp(ln2(mid)), then the final layer norm and unembedding.
    block, bridge = sharp_model.bridge.blocks[last], sharp_model.bridge
    with torch.no_grad():
        mid = clean_cache["mid"]
        logits = bridge.unembed(bridge.ln_final(mid + block.mlp(block.ln2(mid))))[:, -1]
    correct, wrong = torch.tensor(metric.correct_ids), torch.tensor(metric.wrong_ids)
    rows = torch.arange(2)
    expected = float((logits[rows, correct] - logits[rows, wrong]).mean())
    assert result.values[last].item() == pytest.approx(expected, abs=1e-5)


# --- datasets, options, progress, cancelling ---------------------------------------------------


@pytest.mark.parametrize("site,granularity", [("resid_pre", "layer_pos"), ("z", "head")])
def test_a_dataset_averages_the_metric_over_its_prompt_pairs(sharp_model, site, granularity):
    inputs, metric, correct, wrong = ioi_inputs(sharp_model)
    both = P.patch(sharp_model, inputs, metric, site=site, granularity=granularity)
    singles = []
    for i in range(2):
        one = P.PatchingInputs(inputs.clean_tokens[i:i + 1], inputs.corrupted_tokens[i:i + 1])
        singles.append(P.patch(sharp_model, one, P.logit_diff_metric([correct[i]], [wrong[i]]),
                               site=site, granularity=granularity))
    assert both.n_prompts == 2
    assert torch.allclose(both.values, (singles[0].values + singles[1].values) / 2, atol=1e-5)
    assert both.clean_value == pytest.approx((singles[0].clean_value + singles[1].clean_value) / 2, abs=1e-5)
    assert not torch.allclose(singles[0].values, singles[1].values, atol=1e-3)


REFERENCES: dict = {}


def hooked_reference(model, inputs, metric, site, granularity):
    """Memoized per model, site and granularity (the prompts and metric are always ioi_inputs')."""
    key = (id(model), site, granularity)
    if key not in REFERENCES:
        REFERENCES[key] = hooked_sweep(model, inputs, metric, site, granularity)
    return REFERENCES[key]


def hooked_sweep(model, inputs, metric, site, granularity):
    """The textbook sweep: one plain forward pass of the corrupted prompts per patch, with a
    hook writing the clean activation's slice in place (as TransformerLens' setters do)."""
    n_layers, n_heads, n_pos = model.info.n_layers, model.info.n_heads, inputs.n_positions
    head_site = site in ("z", "q", "k", "v", "pattern")
    names = [f"blocks.{layer}.attn.hook_{site}" if head_site else f"blocks.{layer}.hook_{site}"
             for layer in range(n_layers)]
    clean = {}

    def save(activation, hook):
        clean[hook.name] = activation.detach().clone()
    with torch.no_grad(), model.hooked([(name, save) for name in names]) as bridge:
        bridge(inputs.clean_tokens)
    clean = {name: clean[model.bridge.hook_dict[name].name] for name in names}
    correct, wrong = torch.tensor(metric.correct_ids), torch.tensor(metric.wrong_ids)
    rows_of_prompts = torch.arange(inputs.n_prompts)
    shape = {"layer_pos": (n_layers, n_pos), "head_pos": (n_layers, n_heads, n_pos)}[granularity]
    values = torch.empty(shape)
    for layer in range(n_layers):  # each row of a batch is its own forward pass (no mixing)
        cells = list(np.ndindex(*shape[1:]))
        if granularity == "layer_pos":
            indices = [(cell[0],) for cell in cells]
        elif site == "pattern":  # [batch, head, destination, source]
            indices = [(cell[0], cell[1]) for cell in cells]
        else:  # [batch, pos, head, d_head]
            indices = [(cell[1], cell[0]) for cell in cells]
        name = names[layer]

        def put_clean(activation, hook, name=name, indices=indices):
            for copy, index in enumerate(indices):
                rows = slice(copy * inputs.n_prompts, (copy + 1) * inputs.n_prompts)
                activation[(rows, *index)] = clean[name][(slice(None), *index)]
            return activation
        batch = inputs.corrupted_tokens.repeat(len(cells), 1)
        with torch.no_grad(), model.hooked([(name, put_clean)]) as bridge:
            logits = bridge(batch)[:, -1].view(len(cells), inputs.n_prompts, -1)
        scores = (logits[:, rows_of_prompts, correct] - logits[:, rows_of_prompts, wrong]).mean(1)
        values[layer] = scores.view(shape[1:])
    return values


@pytest.mark.parametrize("site,granularity,batch_size", [
    ("attn_out", "layer_pos", 1), ("attn_out", "layer_pos", None), ("v", "head_pos", 7),
    ("v", "head_pos", None),
])
def test_batch_size_does_not_change_the_numbers(sharp_model, site, granularity, batch_size):
    """Reference: one plain hooked forward pass per patch (hooked_reference)."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    result = P.patch(sharp_model, inputs, metric, site=site, granularity=granularity,
                     batch_size=batch_size)
    if batch_size is not None:
        assert result.options["batch_size"] == batch_size
    expected = hooked_reference(sharp_model, inputs, metric, site, granularity)
    assert (expected - result.corrupted_value).abs().max() > 1e-2  # patches move the metric
    assert torch.allclose(result.values, expected, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 4, 1000])  # one pass from the first corrupted position;
@pytest.mark.parametrize("site,granularity", [  # groups of positions; one group per position
    ("mlp_out", "layer_pos"), ("k", "head_pos"), ("pattern", "head_pos")])
def test_reusing_the_unchanged_prefix_does_not_change_the_numbers(sharp_model, monkeypatch,
                                                                  site, granularity, groups):
    """Reference: one plain hooked forward pass per patch (hooked_reference)."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    monkeypatch.setattr(staircase, "PREFIX_GROUPS", groups)
    result = P.patch(sharp_model, inputs, metric, site=site, granularity=granularity)
    assert result.options["engine"] == "staircase"
    expected = hooked_reference(sharp_model, inputs, metric, site, granularity)
    assert torch.allclose(result.values, expected, atol=1e-5)


def test_progress_reports_every_pass_up_to_the_total(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    calls = []
    P.patch(sharp_model, inputs, metric, site="resid_pre", batch_size=6,
            progress=lambda done, total: calls.append((done, total)))
    n_patches = sharp_model.info.n_layers * inputs.n_positions
    assert calls[-1] == (n_patches, n_patches)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) == math.ceil(n_patches / 3)  # 6 sequences = 3 patches x 2 prompts


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("call", ["patch_heads", "patch_path", "attribution_then_patch"])
def test_cancelling_from_progress_leaves_no_hook_and_the_model_usable(sharp_model, call):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    before = sharp_model.logits(inputs.clean_tokens)

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        if call == "patch_heads":
            P.patch_heads(sharp_model, inputs, metric, batch_size=2, progress=cancel)
        elif call == "patch_path":
            P.patch_path(sharp_model, inputs, metric, "resid_final", progress=cancel)
        else:
            P.attribution_patch(sharp_model, inputs, metric, site="z", granularity="head")
            assert sharp_model.active_hook_count() == 0
            P.patch(sharp_model, inputs, metric, site="pattern", granularity="head_pos",
                    progress=cancel)
    assert sharp_model.active_hook_count() == 0
    assert torch.equal(sharp_model.logits(inputs.clean_tokens), before)


def test_every_public_call_leaves_no_hook(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    P.patch_resid(sharp_model, inputs, metric, site="mlp_out", by_position=False)
    P.patch_heads(sharp_model, inputs, metric, site="q", by_position=True)
    P.patch_path(sharp_model, inputs, metric, [(1, 0)], receiver_input="k")
    P.attribution_patch(sharp_model, inputs, metric, site="resid_mid")
    P.clean_and_corrupted_logits(sharp_model, inputs)
    assert sharp_model.active_hook_count() == 0


def test_named_variants_choose_the_granularity(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    n_layers, n_heads, n_pos = 2, 4, inputs.n_positions
    assert P.patch_resid(sharp_model, inputs, metric).values.shape == (n_layers, n_pos)
    assert P.patch_resid(sharp_model, inputs, metric, by_position=False).values.shape == (n_layers,)
    assert P.patch_heads(sharp_model, inputs, metric).values.shape == (n_layers, n_heads)
    by_pos = P.patch_heads(sharp_model, inputs, metric, site="pattern", by_position=True)
    assert by_pos.values.shape == (n_layers, n_heads, n_pos)
    assert (by_pos.site, by_pos.granularity, by_pos.method) == ("pattern", "head_pos", "exact")


def test_other_metrics_match_a_plain_hooked_run(sharp_model):
    """correct_prob and KL of one patch, recomputed here with a full hooked forward pass."""
    inputs, _, correct, _ = ioi_inputs(sharp_model)
    layer, position = 1, first_differing_position(inputs)
    clean_saved = {}

    def save(activation, hook):
        clean_saved["resid"] = activation.detach().clone()

    def put_clean(activation, hook):
        patched = activation.clone()
        patched[:, position] = clean_saved["resid"][:, position]
        return patched

    name = f"blocks.{layer}.hook_resid_pre"
    with torch.no_grad():
        with sharp_model.hooked([(name, save)]) as bridge:
            clean_logits = bridge(inputs.clean_tokens)[:, -1]
        with sharp_model.hooked([(name, put_clean)]) as bridge:
            patched_logits = bridge(inputs.corrupted_tokens)[:, -1]
    clean_log_probs = torch.log_softmax(clean_logits, -1)
    patched_log_probs = torch.log_softmax(patched_logits, -1)
    rows = torch.arange(2)
    expected_prob = float(patched_log_probs[rows, correct].exp().mean())
    expected_kl = float((clean_log_probs.exp() * (clean_log_probs - patched_log_probs)).sum(-1).mean())

    prob = P.patch(sharp_model, inputs, P.correct_prob_metric(correct))
    kl = P.patch(sharp_model, inputs, P.kl_metric(correct))
    assert prob.values[layer, position].item() == pytest.approx(expected_prob, rel=1e-4)
    assert kl.values[layer, position].item() == pytest.approx(expected_kl, rel=1e-4, abs=1e-7)
    assert kl.clean_value == pytest.approx(0.0, abs=1e-6)
    assert kl.corrupted_value > 1e-3


# --- noise corruption (causal tracing) ---------------------------------------------------------


def test_noise_is_seeded_and_reproducible(sharp_model):
    clean = sharp_model.to_tokens(CLEAN_PROMPTS[:1])
    seeded = P.PatchingInputs(clean, noise=P.NoiseCorruption(positions=(2, 3), seed=7))
    first = P.clean_and_corrupted_logits(sharp_model, seeded)[1]
    again = P.clean_and_corrupted_logits(sharp_model, seeded)[1]
    other_seed = P.PatchingInputs(clean, noise=P.NoiseCorruption(positions=(2, 3), seed=8))
    other = P.clean_and_corrupted_logits(sharp_model, other_seed)[1]
    clean_logits = P.clean_and_corrupted_logits(sharp_model, seeded)[0]
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-4)
    assert not torch.allclose(first, clean_logits, atol=1e-4)


def test_noise_goes_only_on_the_chosen_positions_with_the_documented_size(sharp_model):
    clean = sharp_model.to_tokens(CLEAN_PROMPTS[:1])
    noise = P.NoiseCorruption(positions=(3, 5), scale=3.0, seed=1)
    inputs = P.PatchingInputs(clean, noise=noise)
    metric = P.correct_prob_metric([token_id(sharp_model, " Mary")])
    result = P.patch(sharp_model, inputs, metric, site="resid_pre")
    # Patching a first-layer position that got no noise is a no-op; a noised one is not.
    first_layer = result.values[0]
    for position in range(inputs.n_positions):
        if position in noise.positions:
            assert abs(first_layer[position] - result.corrupted_value) > 1e-7
        else:
            assert first_layer[position].item() == pytest.approx(result.corrupted_value, abs=1e-9)
    assert result.options["noise"] == {"positions": [3, 5], "scale": 3.0, "seed": 1}

    # The noise added to the embeddings: std = scale x std of the token embedding matrix.
    name, add_noise = P.noise_hook(sharp_model, P.PatchingInputs(clean, noise=noise))
    embeddings = torch.zeros(1, inputs.n_positions, sharp_model.info.d_model)
    added = add_noise(embeddings, None)
    expected_std = 3.0 * float(sharp_model.bridge.W_E.std())
    assert name == "hook_embed"
    assert added[0, [0, 1, 2, 4, 6]].abs().max() == 0
    assert float(added[0, [3, 5]].std()) == pytest.approx(expected_std, rel=0.3)


# --- validation --------------------------------------------------------------------------------


def test_prompts_of_different_lengths_are_refused_with_the_reason(sharp_model):
    clean = sharp_model.to_tokens("The Eiffel Tower is in")
    corrupted = sharp_model.to_tokens("The Colosseum in Rome is in")
    with pytest.raises(InvalidPromptError, match="different token lengths"):
        P.PatchingInputs(clean, corrupted)


@pytest.mark.parametrize("kwargs,match", [
    (dict(site="mlp"), "Valid choices: 'resid_pre'"),
    (dict(site="z", granularity="layer_pos"), "Valid choices: 'head', 'head_pos'"),
    (dict(site="resid_pre", granularity="head"), "Valid choices: 'layer_pos', 'layer'"),
    (dict(granularity="pos"), "Valid choices: 'layer_pos', 'layer', 'head', 'head_pos'"),
    (dict(direction="both"), "Valid choices: 'denoising', 'noising'"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_options_raise_errors_listing_the_valid_ones(sharp_model, kwargs, match):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    with pytest.raises(InvalidOptionError, match=match):
        P.patch(sharp_model, inputs, metric, **kwargs)
    if "batch_size" not in kwargs:  # attribution patching has no batch size
        with pytest.raises(InvalidOptionError, match=match):
            P.attribution_patch(sharp_model, inputs, metric, **kwargs)


def test_bad_metrics_and_corruptions_are_refused(sharp_model):
    inputs, metric, correct, _ = ioi_inputs(sharp_model)
    with pytest.raises(InvalidOptionError, match="Valid choices: 'logit_diff'"):
        P.PatchingMetric("accuracy", (1,))
    with pytest.raises(InvalidOptionError, match="wrong answer"):
        P.PatchingMetric("logit_diff", (1, 2), (3,))
    with pytest.raises(InvalidOptionError, match="one answer per prompt"):
        P.patch(sharp_model, inputs, P.correct_prob_metric(correct[:1]))
    with pytest.raises(InvalidOptionError, match="exactly one corruption"):
        P.PatchingInputs(inputs.clean_tokens)
    with pytest.raises(InvalidOptionError, match="exactly one corruption"):
        P.PatchingInputs(inputs.clean_tokens, inputs.corrupted_tokens, P.NoiseCorruption((1,)))
    with pytest.raises(InvalidOptionError, match="outside the prompt"):
        P.PatchingInputs(inputs.clean_tokens, noise=P.NoiseCorruption((99,)))
    with pytest.raises(InvalidOptionError, match="Valid choices: 'q', 'k', 'v'"):
        P.patch_path(sharp_model, inputs, metric, [(1, 0)], receiver_input="z")
    with pytest.raises(InvalidOptionError, match="don't exist"):
        P.patch_path(sharp_model, inputs, metric, [(5, 0)])


# --- results: top components and figures -------------------------------------------------------


def test_top_components_are_sorted_by_effect_and_labelled(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    heads = P.patch(sharp_model, inputs, metric, site="z", granularity="head")
    top = heads.top_components(k=3)
    assert len(top) == 3
    magnitudes = [abs(normalized) for _, normalized, _ in top]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == pytest.approx(float(heads.normalized.abs().max()))
    label, normalized, raw = top[0]
    layer, head = (int(part[1:]) for part in label.split())
    assert heads.normalized[layer, head].item() == pytest.approx(normalized)
    assert heads.values[layer, head].item() == pytest.approx(raw)

    positions = P.patch(sharp_model, inputs, metric)
    label = positions.top_components(k=1)[0][0]
    assert label.startswith("L") and " pos " in label and label.endswith("'")
    assert positions.tokens[0] == "<|endoftext|>"


def test_heatmaps_have_the_result_shape_tokens_and_a_centred_diverging_scale(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    positions = P.patch(sharp_model, inputs, metric)
    figure = layer_pos_heatmap(positions)
    trace = figure.data[0]
    assert len(trace.z) == 2 and len(trace.z[0]) == inputs.n_positions
    assert list(trace.x)[1] == f"1: {positions.tokens[1]}"
    assert trace.zmid == 0 and trace.zmin == -trace.zmax
    assert "effect" in trace.hovertemplate and "logit_diff" in trace.hovertemplate
    assert trace.customdata[1][3] == pytest.approx(positions.values[1, 3].item())

    heads = P.patch(sharp_model, inputs, metric, site="z", granularity="head")
    trace = layer_head_heatmap(heads).data[0]
    assert (len(trace.z), len(trace.z[0])) == (2, 4)
    assert trace.z[1][2] == pytest.approx(heads.normalized[1, 2].item())
    by_pos = P.patch_heads(sharp_model, inputs, metric, by_position=True)
    trace = layer_head_heatmap(by_pos, position=4).data[0]
    assert trace.customdata[0][1] == pytest.approx(by_pos.values[0, 1, 4].item())
    with pytest.raises(InvalidOptionError, match="choose a position"):
        layer_head_heatmap(by_pos)
    with pytest.raises(InvalidOptionError):
        layer_pos_heatmap(heads)


# --- path patching -----------------------------------------------------------------------------


def path_patch_by_hand(model, inputs, metric, sender, receivers, receiver_input):
    """Wang et al.'s two steps with full forward passes, one sender, as in their paper."""
    n_layers = model.info.n_layers
    z_names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    caches = {}
    for key, tokens in (("clean", inputs.clean_tokens), ("corrupted", inputs.corrupted_tokens)):
        cache = {}

        def save(activation, hook, cache=cache):
            cache[hook.name] = activation.detach().clone()
        with torch.no_grad(), model.hooked([(name, save) for name in z_names]) as bridge:
            bridge(tokens)
        caches[key] = cache
    clean_z, corrupted_z = caches["clean"], caches["corrupted"]
    sender_layer, sender_head = sender

    def freeze(activation, hook):
        layer = int(hook.name.split(".")[1])
        frozen = corrupted_z[hook.name].clone()
        if layer == sender_layer:
            frozen[:, :, sender_head] = clean_z[hook.name][:, :, sender_head]
        return frozen

    def logit_diff(logits):
        rows = torch.arange(logits.shape[0])
        correct, wrong = torch.tensor(metric.correct_ids), torch.tensor(metric.wrong_ids)
        return float((logits[rows, -1, correct] - logits[rows, -1, wrong]).mean())

    freeze_hooks = [(name, freeze) for name in z_names]
    if receivers == "resid_final":
        with torch.no_grad(), model.hooked(freeze_hooks) as bridge:
            return logit_diff(bridge(inputs.corrupted_tokens))
    captured = {}

    def capture(activation, hook):
        captured[int(hook.name.split(".")[1])] = activation.detach().clone()
    receiver_layers = sorted({layer for layer, _ in receivers})
    with torch.no_grad(), model.hooked(freeze_hooks + [
            (f"blocks.{layer}.attn.hook_{receiver_input}", capture) for layer in receiver_layers]) as bridge:
        bridge(inputs.corrupted_tokens)

    def put_receivers(activation, hook):
        # A head mask rather than the library's per-head copy: the same step, written apart.
        layer = int(hook.name.split(".")[1])
        is_receiver = torch.tensor([(layer, head) in receivers
                                    for head in range(activation.shape[2])])
        return torch.where(is_receiver[None, None, :, None], captured[layer], activation)
    with torch.no_grad(), model.hooked([(f"blocks.{layer}.attn.hook_{receiver_input}", put_receivers)
                                        for layer in receiver_layers]) as bridge:
        return logit_diff(bridge(inputs.corrupted_tokens))


@pytest.mark.parametrize("receivers,receiver_input", [
    ("resid_final", None), ([(1, 0), (1, 3)], "q"), ([(1, 2)], "v"),
])
def test_path_patching_matches_the_two_step_procedure_done_by_hand(sharp_model, receivers,
                                                                   receiver_input):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    options = {} if receiver_input is None else {"receiver_input": receiver_input}
    result = P.patch_path(sharp_model, inputs, metric, receivers, **options)
    assert result.values.shape == (2, 4)
    senders = [(0, h) for h in range(4)] + ([(1, h) for h in range(4)] if receivers == "resid_final" else [])
    for sender in senders:
        expected = path_patch_by_hand(sharp_model, inputs, metric, sender, receivers, receiver_input)
        assert result.values[sender].item() == pytest.approx(expected, abs=1e-5)
    if receivers != "resid_final":  # senders in the receivers' layer can't reach them
        assert torch.isnan(result.values[1]).all() and torch.isnan(result.normalized[1]).all()
        assert result.options["receivers"] == [list(r) for r in sorted(receivers)]
    effects = result.values[0] - result.corrupted_value
    assert effects.abs().max() > 1e-3  # paths do carry an effect: the checks above can fail


def test_path_to_the_logits_from_the_last_layer_is_plain_head_patching(sharp_model):
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    path = P.patch_path(sharp_model, inputs, metric, "resid_final")
    plain = P.patch_heads(sharp_model, inputs, metric)
    assert torch.allclose(path.values[1], plain.values[1], atol=1e-5)
    assert not torch.allclose(path.values[0], plain.values[0], atol=1e-4)


def test_models_whose_blocks_are_not_gpt2s_get_hooked_patching_or_a_clear_refusal(sharp_model,
                                                                                 monkeypatch):
    """Reference for the hooked engine's numbers: the staircase's on the same (real GPT-2) model."""
    inputs, metric, _, _ = ioi_inputs(sharp_model)
    fast = P.patch(sharp_model, inputs, metric, site="z", granularity="head")
    monkeypatch.setattr(sharp_model.bridge.cfg, "positional_embedding_type", "rotary")
    hooked = P.patch(sharp_model, inputs, metric, site="z", granularity="head")
    assert (fast.options["engine"], hooked.options["engine"]) == ("staircase", "hooked")
    assert "not GPT-2's" in hooked.options["engine_note"]
    assert torch.allclose(hooked.values, fast.values, atol=1e-5)
    with pytest.raises(UnsupportedArchitectureError, match="Path patching supports GPT-2-style"):
        P.patch_path(sharp_model, inputs, metric, "resid_final")
    with pytest.raises(UnsupportedArchitectureError, match="use exact patching"):
        P.attribution_patch(sharp_model, inputs, metric)
