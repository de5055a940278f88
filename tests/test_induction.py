"""The induction task, its check against attention, and path patching of a sender set.

References: the tasks' token layout is checked against the definition written out here (ids
read back from the task); attention scores against Hugging Face's own `output_attentions`
averaged by hand; set path patching against a hand-written Hugging Face implementation (hooks on
`c_proj`'s input to freeze head outputs, on `c_attn`'s output to patch keys) on the same
weights. The demo-model checks (#28's acceptance) are in tests/test_demo_model_induction.py.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

from interp import induction
from interp.errors import InvalidOptionError
from interp.patching import correct_prob_metric
from interp.patching.path import patch_path_from
from interp.patching_tasks import task_inputs
from tests.test_patching_engine import save_sharp_gpt2


@pytest.fixture(scope="module")
def sharp_dir(tmp_path_factory):
    return save_sharp_gpt2(tmp_path_factory.mktemp("sharp-induction"))


@pytest.fixture(scope="module")
def sharp_model(sharp_dir):
    from interp.models import load_model

    return load_model(str(sharp_dir), device="cpu")


@pytest.fixture(scope="module")
def hf_model(sharp_dir):
    model = GPT2LMHeadModel.from_pretrained(str(sharp_dir), attn_implementation="eager")
    return model.eval()


@pytest.mark.parametrize("corruption", list(induction.INDUCTION_CORRUPTIONS))
def test_task_layout_follows_its_definition(tiny_model, corruption):
    length, n = 9, 5
    task = induction.induction_task(tiny_model, length=length, n_sequences=n, seed=3,
                                    corruption=corruption)
    bos = tiny_model.tokenizer.bos_token_id
    assert task.n_prompts == n and task.n_tokens == 2 * length
    for i in range(n):
        clean, corrupted = task.clean_token_ids[i], task.corrupted_token_ids[i]
        first = list(clean[1:length + 1])
        assert clean[0] == bos and len(set(first)) == length  # distinct tokens: unambiguous
        assert list(clean[length + 1:]) == first[:-1]
        assert task.correct_ids[i] == first[-1]
        assert len(corrupted) == len(clean) and corrupted[0] == bos
        if corruption == "shuffle":
            assert list(corrupted[1:length + 1]) == first
            second = list(corrupted[length + 1:])
            assert set(second) <= set(first) and second != first[:-1]
            # The wrong answer is what induction predicts from the corrupted last token.
            last = corrupted[-1]
            assert last != clean[-1]
            assert task.wrong_ids[i] == first[first.index(last) + 1]
        elif corruption == "new_second_half":
            assert list(corrupted[1:length + 1]) == first
            assert not set(corrupted[length + 1:]) & set(first)
            assert task.wrong_ids is None
        else:
            assert list(corrupted[length + 1:]) == first[:-1]
            assert not set(corrupted[1:length + 1]) & set(first)


def test_same_seed_same_task_other_seed_other_task(tiny_model):
    a = induction.induction_task(tiny_model, seed=1)
    assert a == induction.induction_task(tiny_model, seed=1)
    assert a.clean_token_ids != induction.induction_task(tiny_model, seed=2).clean_token_ids


def test_word_lists_give_single_token_words(tiny_model):
    words = "apple river stone cloud window garden silver market doctor teacher morning yellow"
    task = induction.induction_task(tiny_model, length=5, n_sequences=3, source="words",
                                    words=words, corruption="shuffle")
    allowed = {tiny_model.to_tokens(" " + w, prepend_bos=False)[0].tolist()[0]
               for w in words.split()}
    assert all(set(ids[1:]) <= allowed for ids in task.clean_token_ids)


@pytest.mark.parametrize("options, message", [
    ({"length": 3}, "from 4 to 32 tokens"),
    ({"length": 33}, "must fit the context of 64 tokens"),
    ({"n_sequences": 0}, "between 1 and 64 sequences"),
    ({"corruption": "reverse"}, "shuffle"),
    ({"source": "words", "words": "cat dog sun moon", "length": 6}, "needs 6 different words"),
    ({"source": "words", "words": "cat dog sun moon tree car", "length": 4},
     "at least 8 words"),
    ({"source": "words", "words": "Eiffelmania Xylophonique"}, "single token"),
])
def test_bad_inputs_raise_clear_errors(tiny_model, options, message):
    with pytest.raises(InvalidOptionError, match=message):
        induction.induction_task(tiny_model, **options)


def test_attention_scores_equal_hugging_face_attentions(sharp_model, hf_model):
    """Reference: HF's output_attentions, the induction target p - L + 1 and the previous
    position p - 1 read by hand."""
    length = 7
    task = induction.induction_task(sharp_model, length=length, n_sequences=4, seed=5)
    ours_induction, ours_previous, per_query = induction.attention_scores(sharp_model, task)
    tokens = torch.tensor(task.clean_token_ids)
    with torch.no_grad():
        attentions = hf_model(tokens, output_attentions=True).attentions
    for layer, pattern in enumerate(attentions):  # [batch, head, q, k]
        mean = pattern.mean(0)
        for head in range(mean.shape[0]):
            targets = [float(mean[head, q, q - length + 1]) for q in range(length + 1, 2 * length)]
            previous = [float(mean[head, q, q - 1]) for q in range(2, 2 * length)]
            assert per_query[layer, head].tolist() == pytest.approx(targets, abs=1e-5)
            assert float(ours_induction[layer, head]) == pytest.approx(
                sum(targets) / len(targets), abs=1e-5)
            assert float(ours_previous[layer, head]) == pytest.approx(
                sum(previous) / len(previous), abs=1e-5)


def hf_set_path_patch(hf_model, clean, corrupted, senders, receivers, correct, wrong):
    """Noising path patching by hand: heads' outputs (c_proj inputs) frozen at the clean run's
    except the senders' (corrupted run's), MLPs recomputed; the receivers' keys from that run
    are patched into a fresh clean run; the mean logit difference correct - wrong at the last
    position."""
    config = hf_model.config
    n_heads, d_model = config.n_head, config.n_embd
    d_head = d_model // n_heads
    blocks = hf_model.transformer.h

    def head_inputs(tokens):
        saved, handles = {}, []
        for layer, block in enumerate(blocks):
            handles.append(block.attn.c_proj.register_forward_pre_hook(
                lambda module, args, layer=layer: saved.__setitem__(layer, args[0].clone())))
        with torch.no_grad():
            hf_model(tokens)
        for handle in handles:
            handle.remove()
        return saved

    clean_z, corrupted_z = head_inputs(clean), head_inputs(corrupted)
    keys, handles = {}, []
    for layer, block in enumerate(blocks):
        frozen = clean_z[layer].clone()
        for s_layer, s_head in senders:
            if s_layer == layer:
                cols = slice(s_head * d_head, (s_head + 1) * d_head)
                frozen[..., cols] = corrupted_z[layer][..., cols]
        handles.append(block.attn.c_proj.register_forward_pre_hook(
            lambda module, args, frozen=frozen: (frozen,)))
        handles.append(block.attn.c_attn.register_forward_hook(
            lambda module, args, output, layer=layer: keys.__setitem__(layer, output.clone())))
    with torch.no_grad():
        hf_model(clean)
    for handle in handles:
        handle.remove()

    def patch_keys(module, args, output, layer):
        output = output.clone()
        for r_layer, r_head in receivers:
            if r_layer == layer and any(s_layer < layer for s_layer, _ in senders):
                cols = slice(d_model + r_head * d_head, d_model + (r_head + 1) * d_head)
                output[..., cols] = keys[layer][..., cols]
        return output

    handles = [block.attn.c_attn.register_forward_hook(
        lambda module, args, output, layer=layer: patch_keys(module, args, output, layer))
        for layer, block in enumerate(blocks)]
    with torch.no_grad():
        logits = hf_model(clean).logits[:, -1]
    for handle in handles:
        handle.remove()
    rows = torch.arange(len(correct))
    return float((logits[rows, torch.tensor(correct)] - logits[rows, torch.tensor(wrong)]).mean())


@pytest.mark.parametrize("senders, receivers", [
    ([(0, 1)], [(1, 2)]),
    ([(0, 0), (0, 3)], [(1, 1), (1, 2)]),
    ([(0, 2), (1, 0)], [(1, 3)]),  # the layer-1 sender cannot reach a layer-1 receiver
])
def test_set_path_patching_equals_a_hand_written_hf_version(sharp_model, hf_model, senders,
                                                             receivers):
    task = induction.induction_task(sharp_model, length=6, n_sequences=3, seed=2,
                                    corruption="shuffle")
    inputs, metric = task_inputs(sharp_model, task, "logit_diff")
    ours = patch_path_from(sharp_model, inputs, metric, senders, receivers, "k", "noising")
    answers = list(task.correct_ids), list(task.wrong_ids)
    theirs = hf_set_path_patch(hf_model, inputs.clean_tokens, inputs.corrupted_tokens, senders,
                               receivers, *answers)
    clean = hf_set_path_patch(hf_model, inputs.clean_tokens, inputs.clean_tokens, [], [],
                              *answers)
    assert abs(theirs - clean) > 1e-2  # the path moves the metric, so agreement means something
    assert ours.value == pytest.approx(theirs, abs=1e-4)
    assert ours.clean_value == pytest.approx(clean, abs=1e-4)
    assert ours.share_lost == pytest.approx(
        (ours.clean_value - theirs) / (ours.clean_value - ours.corrupted_value), rel=1e-3)


def test_set_path_patching_refuses_bad_heads(sharp_model):
    task = induction.induction_task(sharp_model, length=5, n_sequences=2)
    inputs, metric = task_inputs(sharp_model, task, "correct_prob")
    with pytest.raises(InvalidOptionError, match="don't exist"):
        patch_path_from(sharp_model, inputs, metric, [(5, 0)], [(1, 0)])
    with pytest.raises(InvalidOptionError, match="at least one sender"):
        patch_path_from(sharp_model, inputs, metric, [], [(1, 0)])
    with pytest.raises(InvalidOptionError):
        patch_path_from(sharp_model, inputs, correct_prob_metric([1]), [(0, 0)], [(1, 0)])


def test_check_reads_the_sweep_it_is_given_and_applies_its_thresholds(sharp_model):
    """Invariant: verdicts follow the documented thresholds from the numbers shown beside
    them, and every head above the induction threshold is listed."""
    from interp.patching.sweeps import run_sweeps

    task = induction.induction_task(sharp_model, length=8, n_sequences=4)
    run = run_sweeps(sharp_model, task, ["Attention heads (z)"], attribution=False)
    check = run.induction
    assert check is not None
    assert torch.equal(check.effects, run.sweeps[0].exact.normalized.float())
    for head in check.heads:
        carries = abs(head.effect) >= check.effect_threshold
        attends = head.induction_score >= check.score_threshold
        assert head.verdict == {(True, True): "induction head",
                                (True, False): "patching effect without induction attention",
                                (False, True): "induction attention without patching effect",
                                (False, False): "neither"}[(carries, attends)]
    listed = {(h.layer, h.head) for h in check.heads}
    above = {(layer, head) for layer in range(check.effects.shape[0])
             for head in range(check.effects.shape[1])
             if check.induction_scores[layer, head] >= check.score_threshold}
    assert above <= listed
    first = min((layer for layer, _ in check.induction_heads), default=check.effects.shape[0])
    assert all(layer < first and check.previous_token_scores[layer, head] >= 0.4
               for layer, head in check.previous_token_heads)


def test_no_check_without_the_heads_sweep_or_for_other_tasks(tiny_model):
    from interp.patching.sweeps import run_sweeps

    task = induction.induction_task(tiny_model, length=5, n_sequences=2)
    assert run_sweeps(tiny_model, task, ["MLP output (mlp_out)"], attribution=False).induction is None
