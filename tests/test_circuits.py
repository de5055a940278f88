"""Circuits: edge scores, faithfulness and discovery checked against peers, hand computations
and planted answers.

References: TransformerLens 4.3's `attribution_patch(granularity="edge")` and `faithfulness`
(the peer), autograd through Hugging Face's own GPT-2 modules (manual first-order terms), the
patching package's path patching, and a hand-built model whose answer only known heads carry.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tl

from interp import circuits as C
from interp.circuits.data import CircuitData
from interp.circuits.engine import gpt2_weights
from interp.circuits.scores import patched_edge_metrics
from interp.models import load_model
from interp.patching import patch_path
from tests.test_patching_engine import ioi_inputs, save_sharp_gpt2


@pytest.fixture(scope="module")
def sharp(tmp_path_factory):
    return load_model(str(save_sharp_gpt2(tmp_path_factory.mktemp("circuits-sharp"))), device="cpu")


def pair_data(model, n_prompts: int = 1) -> CircuitData:
    inputs, metric, _, _ = ioi_inputs(model, n_prompts)
    ids = inputs.clean_tokens[0].tolist()
    return CircuitData(model.name, "ioi", inputs.clean_tokens, inputs.corrupted_tokens, metric,
                       tuple(model.display_tokens(ids)))


def tl_metric(data: CircuitData):
    correct, wrong = data.metric.correct_ids[0], data.metric.wrong_ids[0]
    return lambda logits: logits[0, -1, correct] - logits[0, -1, wrong]


@contextlib.contextmanager
def trainable_embeddings(model):
    """Parameters are frozen, so a plain forward pass has no graph to backpropagate through:
    the embedding matrix requires grad inside the block (frozen again after)."""
    embedding = model.bridge.original_model.transformer.wte.weight
    embedding.requires_grad_(True)
    try:
        yield
    finally:
        embedding.requires_grad_(False)


@contextlib.contextmanager
def peer_bridge(model):
    """The bridge for TransformerLens' own routines, with a graph to backpropagate through."""
    with trainable_embeddings(model), model.exclusive() as bridge:
        yield bridge


def our_index(graph: C.EdgeGraph, writer, reader) -> tuple[int, int, int]:
    """A TransformerLens (writer, reader) Node pair as (sender, receiver, position)."""
    if writer.kind == "embed":
        sender = 0
    elif writer.kind == "attn_head_out":
        sender = graph.head_sender(writer.layer, writer.head)
    else:
        sender = graph.mlp_sender(writer.layer)
    if reader.kind in ("q_input", "k_input", "v_input"):
        receiver = graph.head_receiver(reader.layer, reader.head, reader.kind[0])
    elif reader.kind == "mlp_in":
        receiver = graph.mlp_receiver(reader.layer)
    else:
        receiver = graph.logits_receiver
    return sender, receiver, writer.position


def test_eap_equals_transformer_lens_edge_attribution_on_every_edge(sharp):
    """Reference: TransformerLens 4.3 `attribution_patch(..., granularity="edge")` on the same
    pair; the same edge set, and every score within 1e-5 (scores reach ~1, so not vacuous)."""
    data = pair_data(sharp)
    ours = C.edge_scores(sharp, data, "eap")
    with peer_bridge(sharp) as bridge:
        peer = tl.attribution_patch(bridge, data.clean_tokens, data.corrupted_tokens,
                                    tl_metric(data), tl.EdgeAttributionConfig(granularity="edge"))
    graph = ours.graph
    seen = torch.zeros_like(ours.scores, dtype=torch.bool)
    worst = 0.0
    for (writer, reader), value in peer.edge_scores.items():
        index = our_index(graph, writer, reader)
        seen[index] = True
        worst = max(worst, abs(float(ours.scores[index]) - value))
    assert len(peer.edge_scores) == ours.n_edges
    assert torch.equal(seen, graph.valid[:, :, None].expand_as(seen))
    assert ours.scores.abs().max() > 0.1
    assert worst < 1e-5


LOGIT_SENDERS = ("hook_embed", "blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out")


def logits_gradient_by_hand(model, data: CircuitData, tokens, embeds=None):
    """(senders' outputs by hook name, d metric / d final residual) from the bridge's own
    forward pass, by autograd: the logits read only the final residual, so that gradient is
    the logits receiver's. `embeds` replaces the token embeddings (an interpolated input)."""
    metric = tl_metric(data)
    kept, live = {}, {}

    def keep(name):
        def hook(activation, hook):
            kept[name] = activation.detach().clone()
        return hook

    def final(activation, hook):
        live["final"] = activation

    hooks = [(name, keep(name)) for name in LOGIT_SENDERS]
    if embeds is not None:
        hooks.append(("hook_embed", lambda activation, hook: embeds.clone().requires_grad_(True)))
    hooks.append(("blocks.1.hook_resid_post", final))
    with torch.enable_grad(), trainable_embeddings(model), model.hooked(hooks) as bridge:
        value = metric(bridge(tokens))
        (grad,) = torch.autograd.grad(value, [live["final"]])
    return kept, grad


def expected_logit_edges(model, data: CircuitData, steps: int) -> dict[str, torch.Tensor]:
    """Edges into the logits by hand: (clean - corrupted sender output) . the logits gradient
    averaged over the inputs corrupted + k/steps (clean - corrupted), k = 0 .. steps - 1."""
    clean, _ = logits_gradient_by_hand(model, data, data.clean_tokens)
    corrupted, _ = logits_gradient_by_hand(model, data, data.corrupted_tokens)
    wte = model.bridge.original_model.transformer.wte.weight.detach()
    clean_e, corrupted_e = wte[data.clean_tokens], wte[data.corrupted_tokens]
    grads = [logits_gradient_by_hand(model, data, data.corrupted_tokens,
                                     corrupted_e + k / steps * (clean_e - corrupted_e))[1]
             for k in range(steps)]
    mean_grad = torch.stack(grads).mean(0)
    return {name: ((clean[name] - corrupted[name]) * mean_grad)[0].sum(-1) for name in LOGIT_SENDERS}


@pytest.mark.parametrize("method, steps, one_step_per_chunk", [
    ("eap", 1, False), ("eap_ig", 1, False), ("eap_ig", 5, False), ("eap_ig", 5, True)])
def test_edges_into_the_logits_equal_a_first_order_computation_by_hand(sharp, method, steps,
                                                                        one_step_per_chunk,
                                                                        monkeypatch):
    """Reference: autograd by hand on the bridge's own forward pass (`expected_logit_edges`),
    for EAP and for EAP-IG with m = 1 (which must be EAP) and m = 5, at every position; and
    with the memory budget so small that each pass runs one row (one pair, one IG step)."""
    from interp.circuits import engine

    if one_step_per_chunk:
        monkeypatch.setattr(engine, "CHUNK_BYTES", 1)
        assert engine.gradient_rows_per_chunk(engine.gpt2_weights(sharp), 8) == 1
    data = pair_data(sharp)
    ours = C.edge_scores(sharp, data, method, ig_steps=steps)
    graph = ours.graph
    senders = dict(zip(LOGIT_SENDERS, (0, graph.mlp_sender(0), graph.mlp_sender(1)), strict=True))
    for name, expected in expected_logit_edges(sharp, data, steps).items():
        torch.testing.assert_close(ours.scores[senders[name], graph.logits_receiver], expected,
                                   atol=1e-5, rtol=0)
    assert ours.scores[:, graph.logits_receiver].abs().max() > 1e-2


def test_eap_ig_differs_from_eap_when_the_model_is_not_linear(sharp):
    """Invariant: with m = 5 the averaged gradient differs from the corrupted run's (the sharp
    model is non-linear), so EAP-IG is not EAP under another name."""
    data = pair_data(sharp, 2)
    eap = C.edge_scores(sharp, data, "eap")
    five = C.edge_scores(sharp, data, "eap_ig", ig_steps=5)
    assert (five.scores - eap.scores).abs().max() > 1e-3


def peer_circuit(peer_edges, graph: C.EdgeGraph) -> C.Circuit:
    keep = torch.zeros((graph.n_senders, graph.n_receivers, graph.n_pos), dtype=torch.bool)
    for writer, reader, _ in peer_edges:
        keep[our_index(graph, writer, reader)] = True
    return C.Circuit(keep, (graph.n_layers, graph.n_heads, graph.n_pos), "top_n", len(peer_edges))


def test_faithfulness_equals_transformer_lens_under_corrupt_ablation(sharp):
    """Reference: TransformerLens 4.3 `faithfulness(...).recovered`, corrupt ablation, on its
    own top-30 EAP edges; there m(empty) is the corrupted run, so the normalisations agree."""
    data = pair_data(sharp)
    metric = tl_metric(data)
    with peer_bridge(sharp) as bridge:
        peer = tl.attribution_patch(bridge, data.clean_tokens, data.corrupted_tokens, metric,
                                    tl.EdgeAttributionConfig(granularity="edge"))
        edges = peer.top_edges(30)
        recovered = tl.faithfulness(bridge, data.clean_tokens, data.corrupted_tokens, metric,
                                    edges).recovered
    graph = C.edge_scores(sharp, data, "eap").graph
    ours = C.measure_circuit(sharp, peer_circuit(edges, graph), data, "resample")
    assert abs(ours.faithfulness - recovered) < 1e-5
    assert 0.05 < abs(recovered) and abs(recovered - 1) > 0.05  # neither empty nor whole


def test_mean_faithfulness_equals_transformer_lens_after_converting_the_normalisation(sharp):
    """Reference: TransformerLens' mean-ablation `recovered` divides by the clean/corrupted gap;
    with R(C) its value and R(empty) the empty circuit's, ours is (R(C) - R(empty)) /
    (1 - R(empty)) (MIB's m(empty) normalisation). Same held-out reference prompts for both."""
    data = pair_data(sharp)
    reference = sharp.to_tokens(["When Lisa and Mark went to the store, Mark gave a drink to",
                                 "When Kate and Paul went to the store, Kate gave a drink to"])
    metric = tl_metric(data)
    with peer_bridge(sharp) as bridge:
        peer = tl.attribution_patch(bridge, data.clean_tokens, data.corrupted_tokens, metric,
                                    tl.EdgeAttributionConfig(granularity="edge"))
        edges = peer.top_edges(30)
        config = tl.FaithfulnessConfig(ablation="mean")
        kept = tl.faithfulness(bridge, data.clean_tokens, data.corrupted_tokens, metric, edges,
                               config, mean_tokens=reference).recovered
        empty = tl.faithfulness(bridge, data.clean_tokens, data.corrupted_tokens, metric, [],
                                config, mean_tokens=reference).recovered
    graph = C.edge_scores(sharp, data, "eap").graph
    ours = C.measure_circuit(sharp, peer_circuit(edges, graph), data, "mean",
                             reference_tokens=reference)
    assert abs(ours.faithfulness - (kept - empty) / (1 - empty)) < 1e-5
    assert abs(empty) > 0.01  # the two normalisations really differ here


@pytest.fixture(scope="module")
def mlp_free(tmp_path_factory):
    """The sharp model with every MLP's output silenced (c_proj weight and bias 0)."""
    from transformers import GPT2LMHeadModel

    source = save_sharp_gpt2(tmp_path_factory.mktemp("circuits-sharp-src"))
    hf = GPT2LMHeadModel.from_pretrained(source)
    with torch.no_grad():
        for block in hf.transformer.h:
            block.mlp.c_proj.weight.zero_()
            block.mlp.c_proj.bias.zero_()
    folder = tmp_path_factory.mktemp("circuits-mlp-free")
    hf.save_pretrained(folder)
    from interp.random_models import gpt2_tokenizer
    gpt2_tokenizer().save_pretrained(folder)
    return load_model(str(folder), device="cpu")


@pytest.mark.parametrize("receiver_input", ["q", "k", "v"])
def test_exact_edge_effect_equals_path_patching_for_the_same_sender_and_receiver(mlp_free,
                                                                              receiver_input):
    """Reference: `interp.patching.patch_path` (denoising) from each layer-0 head to head (1, 2)'s
    q, k or v input. Path patching recomputes MLPs between the two, an edge does not; with the
    MLPs silenced the definitions coincide, so the edge's exact effect (at every position) must
    equal the path-patched metric minus the corrupted one."""
    data = pair_data(mlp_free, 2)
    inputs, metric, _, _ = ioi_inputs(mlp_free, 2)
    path = patch_path(mlp_free, inputs, metric, receivers=[(1, 2)], receiver_input=receiver_input)
    weights = gpt2_weights(mlp_free)
    graph = weights.graph(data.n_pos)
    sets = torch.zeros((5, graph.n_senders, graph.n_receivers, graph.n_pos), dtype=torch.bool)
    for head in range(4):
        sets[head + 1, graph.head_sender(0, head), graph.head_receiver(1, 2, receiver_input)] = True
    values = patched_edge_metrics(weights, data, sets).mean(1)
    ours = values[1:] - values[0]
    expected = path.values[0] - path.corrupted_value
    torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=0)
    assert expected.abs().max() > 3e-3  # ~300x the tolerance


def test_exact_scores_of_single_edges_come_from_edge_patching(sharp):
    """Reference: `patched_edge_metrics` with the edge set by hand; exact_scores must put each
    audited edge's effect at its own index and leave others 0."""
    data = pair_data(sharp)
    graph = C.edge_scores(sharp, data, "eap").graph
    edges = [(graph.head_sender(0, 1), graph.head_receiver(1, 3, "v"), 5),
             (graph.mlp_sender(1), graph.logits_receiver, data.n_pos - 1)]
    exact = C.edge_scores(sharp, data, "exact", edges=edges)
    weights = gpt2_weights(sharp)
    sets = torch.zeros((3, graph.n_senders, graph.n_receivers, graph.n_pos), dtype=torch.bool)
    for row, index in enumerate(edges, start=1):
        sets[(row, *index)] = True
    values = patched_edge_metrics(weights, data, sets).mean(1)
    for row, index in enumerate(edges, start=1):
        assert abs(float(exact.scores[index]) - float(values[row] - values[0])) < 1e-6
    assert int((exact.scores != 0).sum()) <= 2


def test_whole_model_is_fully_faithful_and_the_empty_circuit_not_at_all(sharp):
    """Invariant (MIB's definition): F(all edges) = 1, F(no edge) = 0; completeness of the whole
    model is F of the empty circuit."""
    data = pair_data(sharp, 2)
    graph = C.edge_scores(sharp, data, "eap").graph
    everything = graph.valid[:, :, None].expand(-1, -1, graph.n_pos).clone()
    for kind in ("resample", "mean", "zero"):
        whole = C.measure_circuit(sharp, C.Circuit(everything, (2, 4, graph.n_pos), "all", 0),
                                  data, kind)
        assert abs(whole.faithfulness - 1) < 1e-5
        assert abs(whole.completeness) < 1e-5


def test_dead_edges_are_pruned_and_live_paths_kept():
    """Hand-built graph: embed -> L0H1.v at position 1 feeds L0H1's outputs at 1 and later, so
    with L0H1 -> logits at the last position the path lives; an edge into L1H0.q with nothing
    reading L1H0 is dead, and so is an edge into logits at a position the metric never reads."""
    graph = C.EdgeGraph(2, 2, 4)
    keep = torch.zeros((graph.n_senders, graph.n_receivers, graph.n_pos), dtype=torch.bool)
    keep[0, graph.head_receiver(0, 1, "v"), 1] = True
    keep[graph.head_sender(0, 1), graph.logits_receiver, 3] = True
    keep[0, graph.head_receiver(1, 0, "q"), 2] = True
    keep[0, graph.logits_receiver, 2] = True
    pruned = C.prune_dead(keep, graph)
    assert pruned[0, graph.head_receiver(0, 1, "v"), 1]
    assert pruned[graph.head_sender(0, 1), graph.logits_receiver, 3]
    assert int(pruned.sum()) == 2


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 2-layer model whose MLPs and heads write nothing except heads (0, 1) and (1, 2), whose
    outputs are made large: only they can carry the answer."""
    from transformers import GPT2LMHeadModel

    source = save_sharp_gpt2(tmp_path_factory.mktemp("circuits-planted-src"))
    hf = GPT2LMHeadModel.from_pretrained(source)
    d_head = hf.config.n_embd // hf.config.n_head
    carriers = {0: 1, 1: 2}
    with torch.no_grad():
        for layer, block in enumerate(hf.transformer.h):
            block.mlp.c_proj.weight.zero_()
            block.mlp.c_proj.bias.zero_()
            block.attn.c_proj.bias.zero_()
            rows = block.attn.c_proj.weight
            for head in range(hf.config.n_head):
                part = rows[head * d_head:(head + 1) * d_head]
                part.mul_(3.0) if carriers[layer] == head else part.zero_()
    folder = tmp_path_factory.mktemp("circuits-planted")
    hf.save_pretrained(folder)
    from interp.random_models import gpt2_tokenizer
    gpt2_tokenizer().save_pretrained(folder)
    return load_model(str(folder), device="cpu")


@pytest.mark.parametrize("kind", ["resample", "mean", "zero"])
def test_iterative_pruning_recovers_exactly_the_planted_heads(planted, kind):
    """Reference: the hand-built model, where heads (0, 1) and (1, 2) are the only components
    that write anything; pruning must keep exactly those two."""
    data = pair_data(planted, 2)
    found = C.find_circuit(planted, data, threshold=0.95, kind=kind)
    assert found.components == ("L0H1", "L1H2")
    assert found.faithfulness >= 0.95


def test_ablating_a_silent_component_changes_nothing_and_a_carrier_changes_the_metric(planted):
    """Invariant on the planted model: ablating a head that writes zeros leaves the metric as
    it is (resample ablation replaces zeros by zeros); ablating a carrier moves it."""
    data = pair_data(planted, 2)
    weights = gpt2_weights(planted)
    clean = C.ablate(planted, data, [], "resample")
    assert abs(C.ablate(planted, data, ["L0H0", "MLP1"], "resample") - clean) < 1e-5
    assert abs(C.ablate(planted, data, [(1, 2)], "resample") - clean) > 0.05
    logits = planted.logits(data.clean_tokens)[:, -1]
    expected = float((logits[[0, 1], list(data.metric.correct_ids)]
                      - logits[[0, 1], list(data.metric.wrong_ids)]).mean())
    assert abs(clean - expected) < 1e-4
    assert weights.graph(data.n_pos).n_senders == 11


def test_a_cancelled_run_leaves_no_hook_and_the_model_unchanged(sharp):
    """Reference: the model's own hook count and logits before the run. A progress callback
    that raises (what Streamlit does when a rerun cancels the script) stops the curve midway."""
    data = pair_data(sharp, 2)
    tokens = data.clean_tokens
    before = sharp.logits(tokens)
    scores = C.edge_scores(sharp, data, "eap")

    class Cancelled(Exception):
        pass

    def cancel(fraction, text):
        raise Cancelled

    with pytest.raises(Cancelled):
        C.faithfulness_curve(sharp, scores, data, progress=cancel)
    assert sharp.active_hook_count() == 0
    torch.testing.assert_close(sharp.logits(tokens), before, atol=0, rtol=0)


def test_faithfulness_curve_ends_at_one_with_cpr_and_cmd_from_its_points(sharp):
    """Invariants: at 100 % of edges F = 1; CPR + CMD = 1 when F stays in [0, 1] (areas of F
    and 1 - F over the same log axis); sizes grow with the fractions."""
    data = pair_data(sharp, 2)
    scores = C.edge_scores(sharp, data, "eap")
    curve = C.faithfulness_curve(sharp, scores, data)
    assert abs(curve.faithfulness[-1] - 1) < 1e-5
    assert list(curve.n_edges) == sorted(curve.n_edges) and curve.n_edges[-1] == scores.n_edges
    if all(0 <= f <= 1 for f in curve.faithfulness):
        assert abs(curve.cpr + curve.cmd - 1) < 1e-6
    cpr, cmd = C.faithfulness.log_area([1, 10, 100], [0.0, 0.5, 1.0])
    assert abs(cpr - 0.5) < 1e-9 and abs(cmd - 0.5) < 1e-9


def test_passes_that_cycle_per_pair_rows_equal_passes_given_every_row(sharp):
    """Invariant: pass r reading row r mod n of a per-pair tensor is the same computation as
    giving it that row explicitly (the faithfulness curve runs every pair under many masks
    without copying the pairs' sender outputs per mask); uneven cycles are refused; and a pass
    that is not asked to track receiver inputs keeps none of them (12 layers of them were ~1 GB
    per chunk on GPT-2 small)."""
    from interp.circuits.engine import Rewrite, forward, rewritten_logits
    from interp.circuits.replacements import sender_outputs

    data = pair_data(sharp, 2)
    weights = gpt2_weights(sharp)
    graph = weights.graph(data.n_pos)
    replacement, _ = sender_outputs(weights, data.corrupted_tokens)
    embeds = weights.wte[data.clean_tokens]
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand((3, graph.n_senders, graph.n_receivers, data.n_pos),
                        generator=generator) < 0.3) & graph.valid[None, :, :, None]
    rows_mask = masks.repeat_interleave(2, 0)
    cycled = rewritten_logits(weights, embeds, rows_mask, replacement)
    explicit = torch.cat([forward(weights, embeds[r % 2:r % 2 + 1],
                                  Rewrite(rows_mask[r:r + 1], replacement[r % 2:r % 2 + 1])
                                  ).last_logits for r in range(6)])
    assert torch.allclose(cycled, explicit, atol=1e-5)
    assert not torch.allclose(cycled[0], cycled[2], atol=1e-3)  # the masks do differ
    with pytest.raises(ValueError, match="cycle"):
        rewritten_logits(weights, embeds, rows_mask[:5], replacement)
    out = forward(weights, embeds, Rewrite(rows_mask[:2], replacement))
    assert out.attention_inputs == [] and out.mlp_inputs == [] and out.final_input is None


def test_attention_receiver_gradients_equal_autograd_through_a_copy_per_receiver(tiny_model):
    """Reference: autograd through torch's own LayerNorm and the W_Q/W_K/W_V products, with the
    residual copied once per receiver (what the gradient pass kept for every layer before it
    rebuilt these after the backward pass), for random inputs and random gradients at q, k, v."""
    from interp.circuits.engine import attention_input_gradients, layer_norm

    weights = gpt2_weights(tiny_model)
    n_heads = weights.graph_shape[1]
    generator = torch.Generator().manual_seed(0)
    for layer, w in enumerate(weights.layers):
        resid = 3 * torch.randn((2, 5, weights.wte.shape[1]), generator=generator) + 1
        grads = [torch.randn((2, 5, n_heads, w["w_q"].shape[2]), generator=generator)
                 for _ in range(3)]
        copies = resid[:, :, None].repeat(1, 1, 3 * n_heads, 1).requires_grad_(True)
        normed = layer_norm(copies, w["ln1"], weights.eps)
        total = sum((torch.einsum("bphd,hde->bphe", normed[:, :, i * n_heads:(i + 1) * n_heads],
                                  w[name]) * grad).sum()
                    for i, (name, grad) in enumerate(zip(("w_q", "w_k", "w_v"), grads, strict=True)))
        (expected,) = torch.autograd.grad(total, [copies])
        ours = attention_input_gradients(weights, layer, resid, grads)
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)
        assert expected.abs().max() > 1e-2


def test_passes_chunked_one_row_at_a_time_equal_one_unchunked_pass(tiny_model, monkeypatch):
    """Invariant: every score and metric is a sum or a list over rows, so running the passes in
    chunks of one row (and the gradient pass in chunks of 3 rows, which splits one pair's 5 IG
    steps 3 + 2) changes nothing beyond float rounding (1e-6): EAP, EAP-IG, exact edge scores,
    the faithfulness curve under each ablation and node ablations, on 3 pairs."""
    from interp.circuits import engine
    from interp.circuits.ablation import ablated_metrics
    from interp.patching.results import logit_diff_metric

    two = pair_data(tiny_model, 2)
    # A third pair: the first pair the other way round (its corrupted prompt is clean for John).
    correct, wrong = two.metric.correct_ids, two.metric.wrong_ids
    assert wrong is not None
    data = CircuitData(tiny_model.name, "ioi", torch.cat([two.clean_tokens, two.corrupted_tokens[:1]]),
                       torch.cat([two.corrupted_tokens, two.clean_tokens[:1]]),
                       logit_diff_metric([*correct, wrong[0]], [*wrong, correct[0]]), two.tokens)
    weights = gpt2_weights(tiny_model)
    graph = weights.graph(data.n_pos)
    # The default budget runs all of these in one chunk on the tiny model: the reference.
    assert engine.gradient_rows_per_chunk(weights, data.n_pos) >= 5 * data.n_pairs
    assert engine.rows_per_chunk(data.n_pos, graph.n_senders, weights.wte.shape[1],
                                 graph.n_heads) >= 11 * data.n_pairs
    edges = [edge[:3] for edge in C.edge_scores(tiny_model, data, "eap").ranked(4)]
    reference_tokens = torch.cat([data.clean_tokens, data.corrupted_tokens])

    def everything():
        eap = C.edge_scores(tiny_model, data, "eap")
        eap_ig = C.edge_scores(tiny_model, data, "eap_ig", ig_steps=5)
        exact = C.edge_scores(tiny_model, data, "exact", edges=edges)
        curves = [C.faithfulness.circuit_metrics(
            weights, data, C.selection.top_fraction_keeps(eap_ig, C.faithfulness.CURVE_FRACTIONS),
            kind, reference_tokens) for kind in ("resample", "mean", "zero")]
        nodes = ablated_metrics(weights, data, [("L0H1",), ("L1H2", "MLP0"), ()], "mean")
        return ([eap.scores, eap_ig.scores, exact.scores, nodes]
                + [t for m in curves for t in (m.circuits, m.full, m.empty)],
                [eap.corrupted_value, eap_ig.corrupted_value, eap.clean_value])

    tensors, values = everything()
    assert tensors[1].abs().max() > 1e-4 and tensors[2].abs().max() > 1e-4  # not all zero
    row = engine.gradient_pass_bytes(weights, data.n_pos)
    for budget in (1, 3 * row):
        monkeypatch.setattr(engine, "CHUNK_BYTES", budget)
        chunked_tensors, chunked_values = everything()
        for ours, expected in zip(chunked_tensors, tensors, strict=True):
            torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
        assert chunked_values == pytest.approx(values, abs=1e-6)


def test_passes_that_skip_unread_senders_equal_passes_that_run_every_sender(sharp, monkeypatch):
    """Invariant: a sender whose every edge into a receiver that matters is ablated adds only
    its replacement, so not running it changes nothing beyond float rounding. Reference: the
    same passes with every sender run (`read_senders` forced to all, the path TransformerLens
    checks above), on masks that leave whole heads, an MLP, the embeddings, or every sender
    unread, under resample (per-pair replacements) and mean (one shared row) ablation."""
    from interp.circuits import engine
    from interp.circuits.replacements import replacement_outputs

    data = pair_data(sharp, 2)
    weights = gpt2_weights(sharp)
    graph = weights.graph(data.n_pos)
    valid = graph.valid[:, :, None].expand(-1, -1, data.n_pos)
    generator = torch.Generator().manual_seed(1)
    differs = int((data.clean_tokens != data.corrupted_tokens).any(0).nonzero()[0])
    sparse = torch.rand(valid.shape, generator=generator) < 0.3
    sparse[:, :, :differs] = False  # where the two prompts agree, an edge carries nothing
    sparse[graph.head_sender(1, 0)] = False  # a head no kept edge leaves
    chain = torch.zeros_like(valid)  # embeddings -> L0H1.v, L0H1 -> L1H2.v, L1H2 -> logits
    chain[0, graph.head_receiver(0, 1, "v")] = True
    chain[graph.head_sender(0, 1), graph.head_receiver(1, 2, "v")] = True
    chain[graph.head_sender(1, 2), graph.logits_receiver] = True
    half = torch.rand(valid.shape, generator=generator) < 0.5
    half[0] = False  # the embeddings unread: every edge out of them ablated
    half[graph.mlp_sender(0)] = False
    keeps = torch.stack([sparse, chain, half, torch.zeros_like(valid), valid.clone()])
    ablated = valid[None] & ~keeps
    read = [engine.read_senders(mask[None], graph) for mask in ablated]
    assert not read[0].all() and not read[0][graph.head_sender(1, 0)]
    assert not read[3].any() and read[4].all()
    assert read[1].tolist() == [i in (0, graph.head_sender(0, 1), graph.head_sender(1, 2))
                                for i in range(graph.n_senders)]
    assert not read[2][0] and not read[2][graph.mlp_sender(0)] and read[2].sum() > 4
    embeds = weights.wte[data.clean_tokens]
    for kind in ("resample", "mean"):
        replacement = replacement_outputs(weights, data, kind)
        skipping = engine.rewritten_logits(weights, embeds, ablated, replacement,
                                           mask_repeats=data.n_pairs)
        with monkeypatch.context() as patch:
            patch.setattr(engine, "read_senders",
                          lambda mask, graph: torch.ones(graph.n_senders, dtype=torch.bool))
            everything = engine.rewritten_logits(weights, embeds, ablated, replacement,
                                                 mask_repeats=data.n_pairs)
        torch.testing.assert_close(skipping, everything, atol=1e-5, rtol=1e-5)
        empty = everything[3 * data.n_pairs]
        for mask in range(3):  # each circuit does something, but under resample ablation no
            # clean input reaches a circuit without the embeddings: it is the corrupted run
            change = float((everything[mask * data.n_pairs] - empty).abs().max())
            assert change < 1e-5 if (kind, mask) == ("resample", 2) else change > 1e-4


def test_every_edge_ablated_by_resampling_is_the_corrupted_run(sharp):
    """Invariant: with every edge carrying the corrupted run's outputs, each receiver reads the
    corrupted residual stream, so the logits are the model's own on the corrupted prompts
    (Hugging Face's forward pass); that pass runs no sender at all."""
    from interp.circuits import engine
    from interp.circuits.replacements import replacement_outputs

    data = pair_data(sharp, 2)
    weights = gpt2_weights(sharp)
    graph = weights.graph(data.n_pos)
    everything = graph.valid[None, :, :, None].expand(1, -1, -1, data.n_pos)
    assert not engine.read_senders(everything, graph).any()
    logits = engine.rewritten_logits(weights, weights.wte[data.clean_tokens], everything,
                                     replacement_outputs(weights, data, "resample"),
                                     mask_repeats=data.n_pairs)
    expected = sharp.logits(data.corrupted_tokens)[:, -1]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)


def test_chunks_never_split_one_mask_across_two_chunks_unless_it_needs_several():
    """Hand-computed: 20 pairs a mask with 6 rows a chunk give each mask 4 chunks of 5 rows;
    3 pairs a mask with 7 rows a chunk give chunks of 2 whole masks; no grouping is plain."""
    from interp.circuits.engine import chunk_bounds

    bounds = chunk_bounds(40, 6, 20)
    assert bounds == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 25), (25, 30), (30, 35), (35, 40)]
    assert chunk_bounds(9, 7, 3) == [(0, 6), (6, 9)]
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
