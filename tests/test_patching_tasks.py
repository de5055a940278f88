"""Patching tasks: verb and subject detection, IOI prompts, fact subjects, custom-pair checks.

Token ids are checked against GPT-2's vocabulary (the tiny model uses GPT-2's real tokenizer),
by decoding ids back to text rather than re-encoding the way the code under test does.
"""

from __future__ import annotations

import re

import pytest
import torch

from interp import patching_tasks as tasks
from interp.errors import InvalidOptionError, InvalidPromptError
from interp.patching import NoiseCorruption

GPT2_BOS = 50256


def decode(model, ids) -> str:
    return model.tokenizer.decode(list(ids))


def token_count(model, text: str) -> int:
    return len(model.tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------
# Agreement


@pytest.mark.parametrize("sentence, prefix, verb, other, noun, flipped", [
    ("The keys to the cabinet are on the table", "The keys to the cabinet", "are", "is", "keys", "key"),
    ("The key to the cabinets is on the table", "The key to the cabinets", "is", "are", "key", "keys"),
    ("The dog near the cars has a bone", "The dog near the cars", "has", "have", "dog", "dogs"),
    ("The boys behind the girl have left", "The boys behind the girl", "have", "has", "boys", "boy"),
    ("The man with the boxes was here", "The man with the boxes", "was", "were", "man", "men"),
    ("The children of the woman were here", "The children of the woman", "were", "was", "children", "child"),
    ("The box by the windows does not close", "The box by the windows", "does", "do", "box", "boxes"),
    ("The cats do not care", "The cats", "do", "does", "cats", "cat"),
    ("I think the old keys are lost", "I think the old keys", "are", "is", "keys", "key"),
    ("Dogs near the door are loud", "Dogs near the door", "are", "is", "Dogs", "Dog"),
])
def test_parse_agreement_finds_verb_after_subject_and_flips_head_noun(
        sentence, prefix, verb, other, noun, flipped):
    parse = tasks.parse_agreement(sentence)
    assert (parse.prefix, parse.verb, parse.other_verb) == (prefix, verb, other)
    assert (parse.noun, parse.flipped_noun) == (noun, flipped)
    assert sentence[slice(*parse.noun_span)] == noun
    assert parse.plural == (verb in ("are", "have", "were", "do"))


@pytest.mark.parametrize("singular, plural", [
    ("key", "keys"), ("box", "boxes"), ("church", "churches"), ("city", "cities"),
    ("day", "days"), ("knife", "knives"), ("man", "men"), ("child", "children"),
    ("tomato", "tomatoes"), ("bus", "buses"), ("horse", "horses"), ("Dog", "Dogs"),
])
def test_singular_plural_round_trip(singular, plural):
    assert tasks.pluralize(singular) == plural
    assert tasks.singularize(plural) == singular


def test_agreement_task_ids_and_corrupted_prefix(tiny_model):
    task = tasks.agreement_task(tiny_model, "The keys to the cabinet are on the table")
    # GPT-2 ids: <|endoftext|> The ␣keys ␣to ␣the ␣cabinet, and ␣key = 1994.
    assert task.clean_token_ids == ((GPT2_BOS, 464, 8251, 284, 262, 13447),)
    assert task.corrupted_token_ids == ((GPT2_BOS, 464, 1994, 284, 262, 13447),)
    assert decode(tiny_model, task.correct_ids) == " are"
    assert decode(tiny_model, task.wrong_ids) == " is"
    assert task.corrupted_prompts == ("The key to the cabinet",)
    assert ("subject", 2) in task.key_positions
    assert task.key_positions[-1][1] == 5


@pytest.mark.parametrize("sentence", ["The cat sat on the mat", "Nothing here at all"])
def test_no_known_verb_lists_the_pairs(tiny_model, sentence):
    with pytest.raises(InvalidPromptError) as error:
        tasks.agreement_task(tiny_model, sentence)
    for pair in ("is/are", "has/have", "was/were", "does/do"):
        assert pair in str(error.value)


def test_empty_sentence_is_an_error(tiny_model):
    with pytest.raises(InvalidPromptError, match="empty"):
        tasks.agreement_task(tiny_model, "   ")


def test_noun_whose_forms_tokenize_differently_is_explained(tiny_model):
    # " fox" is one GPT-2 token, " foxes" two.
    with pytest.raises(InvalidPromptError) as error:
        tasks.agreement_task(tiny_model, "The fox is in the garden")
    message = str(error.value)
    assert "same number of tokens" in message and "'fox'" in message and "'foxes'" in message


def test_same_form_noun_asks_for_a_corrupted_prefix(tiny_model):
    with pytest.raises(InvalidPromptError, match="corrupted prefix"):
        tasks.agreement_task(tiny_model, "The sheep are in the field")


def test_typed_corrupted_prefix_is_used_and_checked(tiny_model):
    task = tasks.agreement_task(tiny_model, "The sheep are in the field", "The lamb")
    assert task.corrupted_prompts == ("The lamb",)
    assert decode(tiny_model, task.corrupted_token_ids[0][1:]) == "The lamb"
    with pytest.raises(InvalidPromptError, match="same number of tokens"):
        tasks.agreement_task(tiny_model, "The keys are here", "The big old key")


def test_verb_curves_at_layer_zero_match_direct_probabilities(tiny_model):
    task = tasks.agreement_task(tiny_model, "The keys to the cabinet are on the table")
    calls = []
    curves = tasks.agreement_verb_curves(tiny_model, task, progress=lambda d, t: calls.append((d, t)))
    n_layers, n_pos = tiny_model.info.n_layers, task.n_tokens
    assert curves.correct_prob.shape == curves.wrong_prob.shape == (n_layers, n_pos)
    assert calls[-1] == (n_layers * n_pos, n_layers * n_pos)  # one sweep, scored twice

    def probs(ids):
        logits = tiny_model.logits(torch.tensor([ids]))[0, -1].double()
        p = torch.softmax(logits, -1)
        return float(p[task.correct_ids[0]]), float(p[task.wrong_ids[0]])

    clean, corrupted = probs(task.clean_token_ids[0]), probs(task.corrupted_token_ids[0])
    assert curves.clean_probs == pytest.approx(clean, rel=1e-4)
    assert curves.corrupted_probs == pytest.approx(corrupted, rel=1e-4)
    # At layer 0 the residual is just the embeddings: patching the only changed token (the
    # subject) restores the clean run exactly, patching any other position changes nothing.
    subject = curves.subject_position
    assert subject == 2
    assert float(curves.correct_prob[0, subject]) == pytest.approx(clean[0], rel=1e-4)
    assert float(curves.wrong_prob[0, subject]) == pytest.approx(clean[1], rel=1e-4)
    assert float(curves.correct_prob[0, 1]) == pytest.approx(corrupted[0], rel=1e-4)


# ---------------------------------------------------------------------------------------------
# IOI


def test_ioi_prompts_alternate_orders_and_use_one_token_names(tiny_model):
    prompts = tasks.ioi_prompts(tiny_model, 8, seed=3)
    assert [p.order for p in prompts] == ["ABBA", "BABA"] * 4
    for prompt in prompts:
        assert prompt.io != prompt.s
        assert token_count(tiny_model, " " + prompt.io) == 1
        assert token_count(tiny_model, " " + prompt.s) == 1
        words = prompt.text.replace(",", " ").replace(".", " ").split()
        assert words.count(prompt.io) == 1 and words.count(prompt.s) == 2
        first_io, first_s = words.index(prompt.io), words.index(prompt.s)
        assert (first_io < first_s) == (prompt.order == "ABBA")
    assert len({p.template for p in prompts}) >= 3
    assert tasks.ioi_prompts(tiny_model, 8, seed=3) == prompts
    assert tasks.ioi_prompts(tiny_model, 8, seed=4) != prompts


@pytest.mark.parametrize("order", ["ABBA", "BABA"])
def test_ioi_prompts_single_order(tiny_model, order):
    assert {p.order for p in tasks.ioi_prompts(tiny_model, 5, order=order)} == {order}


def test_ioi_bad_options(tiny_model):
    with pytest.raises(InvalidOptionError, match="ABBA"):
        tasks.ioi_prompts(tiny_model, 4, order="AABB")
    with pytest.raises(InvalidOptionError, match="swap"):
        tasks.ioi_task(tiny_model, 2, corruption="shuffle")
    with pytest.raises(InvalidPromptError, match=r"\{S\}"):
        tasks.ioi_prompts(tiny_model, 2, templates=("When {A} and {B} met, they left",))


def test_one_token_names_filter_drops_multi_token_names(tiny_model):
    names = tasks.one_token_names(tiny_model, ("Mary", "Xanthippe", "John"))
    assert names == ["Mary", "John"]


def test_ioi_task_swap_corruption_and_answers(tiny_model):
    task = tasks.ioi_task(tiny_model, n_prompts=4, corruption="swap", seed=1)
    assert task.n_prompts == 4 and len({len(ids) for ids in task.clean_token_ids}) == 1
    for i, clean in enumerate(task.clean_prompts):
        io, s = task.correct_answers[i].strip(), task.wrong_answers[i].strip()
        assert decode(tiny_model, [task.correct_ids[i]]) == " " + io
        assert decode(tiny_model, [task.wrong_ids[i]]) == " " + s
        head, _, tail = clean.rpartition(" " + s + " ")
        assert task.corrupted_prompts[i] == f"{head} {io} {tail}"
        assert len(task.corrupted_token_ids[i]) == len(task.clean_token_ids[i])


def test_ioi_task_third_name_changes_only_the_repeated_subject(tiny_model):
    task = tasks.ioi_task(tiny_model, n_prompts=3, corruption="third_name", seed=2)
    s2 = dict(task.key_positions)["repeated subject (S2)"]
    for i in range(3):
        clean, corrupted = task.clean_token_ids[i], task.corrupted_token_ids[i]
        changed = [p for p in range(len(clean)) if clean[p] != corrupted[p]]
        assert changed == [s2]
        third = decode(tiny_model, [corrupted[s2]]).strip()
        assert third not in (task.correct_answers[i].strip(), task.wrong_answers[i].strip())
    inputs, metric = tasks.task_inputs(tiny_model, task)
    assert inputs.clean_tokens.shape == inputs.corrupted_tokens.shape == (3, task.n_tokens)
    assert metric.name == "logit_diff" and metric.wrong_ids == task.wrong_ids


# ---------------------------------------------------------------------------------------------
# Fact recall


def test_fact_subject_positions_and_subject_corruption(tiny_model):
    task = tasks.fact_task(tiny_model, "The Eiffel Tower is located in the city of", "Paris")
    clean = task.clean_token_ids[0]
    subject = [p for label, p in task.key_positions if label == "subject"]
    assert decode(tiny_model, [clean[p] for p in subject]) == "The Eiffel Tower"
    assert decode(tiny_model, [clean[subject[-1] + 1]]) == " is"
    assert decode(tiny_model, task.correct_ids) == " Paris"
    corrupted = task.corrupted_token_ids[0]
    assert len(corrupted) == len(clean)
    assert all(clean[p] == corrupted[p] for p in range(len(clean)) if p not in subject)
    other = task.corrupted_prompts[0].removesuffix(" is located in the city of")
    expected_answer = {f.subject: f.answer for f in tasks.DEFAULT_FACTS}[other]
    assert task.wrong_answers == (" " + expected_answer,)


def test_fact_noise_corruption_targets_the_subject(tiny_model):
    task = tasks.fact_task(tiny_model, "I read that the Louvre is in the city of", "Paris",
                           corruption="noise", subject="the Louvre", noise_scale=2.5)
    assert task.corrupted_token_ids is None and task.wrong_ids is None
    ids = task.clean_token_ids[0]
    assert decode(tiny_model, [ids[p] for p in task.noise_positions]) == " the Louvre"
    inputs, metric = tasks.task_inputs(tiny_model, task, "correct_prob", noise_seed=7)
    assert inputs.noise == NoiseCorruption(task.noise_positions, 2.5, 7)
    assert metric.name == "correct_prob"
    with pytest.raises(InvalidOptionError, match="wrong answer"):
        tasks.task_inputs(tiny_model, task, "logit_diff")


def test_fact_errors(tiny_model):
    with pytest.raises(InvalidPromptError, match="does not occur"):
        tasks.fact_task(tiny_model, "The Louvre is in the city of", "Paris", subject="Big Ben")
    with pytest.raises(InvalidPromptError, match="single token"):
        tasks.fact_task(tiny_model, "The Louvre is in the city of", "Parisville")
    with pytest.raises(InvalidOptionError, match="subject"):
        tasks.fact_task(tiny_model, corruption="erase")


def test_default_facts_are_plenty_and_mostly_one_token_answers(tiny_model):
    assert len(tasks.DEFAULT_FACTS) >= 10
    usable = tasks.usable_facts(tiny_model)
    assert len(usable) >= 10
    for fact in usable:
        assert fact.subject in fact.prompt
        assert token_count(tiny_model, " " + fact.answer) == 1


# ---------------------------------------------------------------------------------------------
# Custom


IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def test_custom_task_adds_the_leading_space_and_keeps_ids(tiny_model):
    task = tasks.custom_task(tiny_model, IOI_CLEAN, IOI_CORRUPT, "Mary", "John")
    assert task.correct_answers == (" Mary",) and task.wrong_answers == (" John",)
    assert decode(tiny_model, task.correct_ids) == " Mary"
    assert [label for label, _ in task.key_positions] == ["changed", "last"]


def test_custom_multi_token_answer_shows_the_split(tiny_model):
    with pytest.raises(InvalidPromptError) as error:
        tasks.custom_task(tiny_model, IOI_CLEAN, IOI_CORRUPT, "Eiffelmania")
    assert "single token" in str(error.value) and "␣E | iff" in str(error.value)


def test_custom_length_mismatch_is_explained(tiny_model):
    with pytest.raises(InvalidPromptError) as error:
        tasks.custom_task(tiny_model, "The cat sat on the", "The big cat sat on the", "mat")
    assert "6 tokens" in str(error.value) and "7" in str(error.value)
    assert "left-pad" in str(error.value)


def test_custom_left_pad_aligns_the_ends(tiny_model):
    task = tasks.custom_task(tiny_model, "The cat sat on the", "The big cat sat on the", "mat",
                             align="left_pad")
    clean, corrupted = task.clean_token_ids[0], task.corrupted_token_ids[0]
    assert len(clean) == len(corrupted) == 7
    assert clean[:2] == (GPT2_BOS, GPT2_BOS)
    assert decode(tiny_model, clean[2:]) == "The cat sat on the"
    assert clean[-4:] == corrupted[-4:]
    assert "positions 3 to 6" in task.warnings[-1]


@pytest.mark.parametrize("clean, corrupted, correct, wrong, expected", [
    ("", "x", "a", None, "empty"),
    (IOI_CLEAN, IOI_CLEAN, "Mary", None, "same tokens"),
    (IOI_CLEAN, IOI_CORRUPT, "Mary", "Mary", "same token"),
    (IOI_CLEAN, IOI_CORRUPT, "  ", None, "empty"),
])
def test_custom_validation_errors(tiny_model, clean, corrupted, correct, wrong, expected):
    with pytest.raises(InvalidPromptError, match=expected):
        tasks.custom_task(tiny_model, clean, corrupted, correct, wrong)


def test_task_inputs_checks_model_and_metric(tiny_model):
    task = tasks.custom_task(tiny_model, IOI_CLEAN, IOI_CORRUPT, "Mary")
    with pytest.raises(InvalidOptionError, match="wrong answer"):
        tasks.task_inputs(tiny_model, task)
    with pytest.raises(InvalidOptionError, match="correct_prob"):
        tasks.task_inputs(tiny_model, task, "accuracy")
    other = tasks.PatchingTask(**{**task.__dict__, "model_name": "gpt2"})
    with pytest.raises(InvalidOptionError, match="Build it again"):
        tasks.task_inputs(tiny_model, other)
    inputs, metric = tasks.task_inputs(tiny_model, task, "kl_to_clean")
    assert inputs.clean_tokens.tolist() == [list(task.clean_token_ids[0])]
    assert metric.name == "kl_to_clean" and metric.correct_ids == task.correct_ids


def test_left_pad_note_never_gives_an_impossible_range(tiny_model):
    """Hand count: "a" is padded to the 7 positions of <bos> The cat sat on the mat, and " mat"
    differs from "a", so no position holds the same token in both."""
    task = tasks.custom_task(tiny_model, "a", "The cat sat on the mat", "b", align="left_pad")
    note = task.warnings[-1]
    for first, last in re.findall(r"positions (\d+) to (\d+)", note):
        assert int(first) <= int(last), note
    assert "No position holds the same token" in note and "not even the last" in note
    one = tasks.custom_task(tiny_model, "a mat", "The cat sat on the mat", "b", align="left_pad")
    assert "Only the last position (6)" in one.warnings[-1]


def test_length_mismatch_counts_the_tokens_it_lists(tiny_model):
    """Invariant: the count in the message equals the number of tokens listed beside it
    (GPT-2: <|endoftext|> a is 2 tokens, <|endoftext|> The cat is 3)."""
    with pytest.raises(InvalidPromptError) as error:
        tasks.custom_task(tiny_model, "a", "The cat", "b")
    message = str(error.value)
    counts = re.findall(r"is (\d+) tokens \(([^)]*)\)|one is (\d+) \(([^)]*)\)", message)
    assert len(counts) == 2, message
    for clean_n, clean_list, corrupted_n, corrupted_list in counts:
        n, listed = (clean_n, clean_list) if clean_n else (corrupted_n, corrupted_list)
        assert int(n) == len(listed.split(" | ")), message
    assert "(<|endoftext|> | a)" in message and "counting the start token" in message


@pytest.mark.parametrize("sentence, names", [
    ("The cats is on the mat", ["'is'", "'cats'", "does not agree", "'The cats are'",
                                "'The cat is'"]),
    ("They is here", ["'They'", "does not agree", "'They are'"]),
    ("It is here", ["pronoun", "corrupted prefix yourself", "'They'"]),
])
def test_agreement_errors_name_the_sentence_not_an_invented_prompt(tiny_model, sentence, names):
    """The messages name what the user typed and what to type; no token split of a prompt the
    code invented ("The | ␣cat | ses", "They | s") appears."""
    with pytest.raises(InvalidPromptError) as error:
        tasks.agreement_task(tiny_model, sentence)
    message = str(error.value)
    for name in names:
        assert name in message, message
    assert "ses" not in message and "They | s" not in message and "corrupted one" not in message
