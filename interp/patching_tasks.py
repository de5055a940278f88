"""Ready-made activation-patching experiments: a clean prompt, a corrupted one, and what to measure.

Patching asks which activations carry the information that makes the model answer one way: run a
clean prompt (the model says " are") and a minimally different corrupted one (the subject's
number flipped, so it says " is"), then copy activations between the runs. Each task here builds
that pair for one behaviour (subject-verb agreement, indirect-object identification, fact recall,
or any pair you type), checks that positions line up token for token and that the answers are
single tokens, and `task_inputs` turns it into the engine's `PatchingInputs` and `PatchingMetric`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from interp.demo_model import corpus
from interp.errors import InvalidOptionError, InvalidPromptError, invalid_choice
from interp.patching import (
    DEFAULT_NOISE_SCALE,
    METRICS,
    NoiseCorruption,
    PatchingInputs,
    PatchingMetric,
    PatchingResult,
    correct_prob_metric,
    kl_metric,
    logit_diff_metric,
    patch_metrics,
)
from interp.tokens import SCREEN_ONLY
from interp.validation import check_prompt

TASK_KINDS = ("agreement", "ioi", "fact", "induction", "custom")

# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchingTask:
    """One patching experiment, built for one model's tokenizer.

    Every clean prompt has a corrupted twin with exactly as many tokens (`corrupted_token_ids`),
    or, for noise corruption, `noise_positions` lists the token positions whose embeddings get
    Gaussian noise. `correct_ids[i]` / `wrong_ids[i]` are the answers of prompt i; the metric
    compares them at the last position. `key_positions` names positions worth looking at
    (e.g. the subject), as (label, position) pairs counted with the BOS token at 0.
    `position_roles`, where given, names each position's role across all prompts ("IO", "S2",
    "" where it has none), for axes of results averaged over prompts whose tokens differ.
    """

    kind: str
    name: str
    description: str
    model_name: str
    clean_prompts: tuple[str, ...]
    clean_token_ids: tuple[tuple[int, ...], ...]
    correct_answers: tuple[str, ...]
    correct_ids: tuple[int, ...]
    corrupted_prompts: tuple[str, ...] | None = None
    corrupted_token_ids: tuple[tuple[int, ...], ...] | None = None
    wrong_answers: tuple[str, ...] | None = None
    wrong_ids: tuple[int, ...] | None = None
    noise_positions: tuple[int, ...] | None = None
    noise_scale: float = DEFAULT_NOISE_SCALE
    key_positions: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = ()
    position_roles: tuple[str, ...] = ()

    @property
    def n_prompts(self) -> int:
        return len(self.clean_prompts)

    @property
    def n_tokens(self) -> int:
        return len(self.clean_token_ids[0])

    @property
    def uses_noise(self) -> bool:
        return self.noise_positions is not None

    @property
    def has_wrong_answer(self) -> bool:
        return self.wrong_ids is not None


def task_inputs(model, task: PatchingTask, metric: str = "logit_diff",
                noise_seed: int = 0) -> tuple[PatchingInputs, PatchingMetric]:
    """The engine's inputs and metric for `task` on `model` (the model the task was built for).

    `metric` is "logit_diff" (correct minus wrong logit; needs a wrong answer), "correct_prob"
    (probability of the correct answer) or "kl_to_clean" (KL divergence from the clean output).
    """
    if task.model_name != model.name:
        raise InvalidOptionError(
            f"This task was built for {task.model_name}, whose token ids may differ from "
            f"{model.name}'s. Build it again for the model in use.")
    if metric not in METRICS:
        raise invalid_choice("metric", metric, METRICS)
    if metric == "logit_diff" and not task.has_wrong_answer:
        raise InvalidOptionError(
            "The logit difference needs a wrong answer to compare with, and this task has none. "
            "Give a wrong answer, or measure 'correct_prob' or 'kl_to_clean' instead.")
    clean = torch.tensor(task.clean_token_ids, dtype=torch.long)
    if task.uses_noise:
        inputs = PatchingInputs(clean_tokens=clean, noise=NoiseCorruption(
            positions=task.noise_positions or (), scale=task.noise_scale, seed=noise_seed))
    else:
        inputs = PatchingInputs(clean_tokens=clean, corrupted_tokens=torch.tensor(
            task.corrupted_token_ids, dtype=torch.long))
    if metric == "logit_diff":
        chosen = logit_diff_metric(task.correct_ids, task.wrong_ids or ())  # has one: checked above
    elif metric == "correct_prob":
        chosen = correct_prob_metric(task.correct_ids)
    else:
        chosen = kl_metric(task.correct_ids)
    return inputs, chosen


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


def shown_tokens(model, text: str) -> str:
    """How `text` splits into tokens, for error messages: `␣ke | ys`."""
    return " | ".join(model.display_tokens(model.token_ids(text))) or "(nothing)"


def single_token_id(model, text: str, what: str) -> int:
    """The id of `text` if it is exactly one token for `model`'s tokenizer, else a clear error."""
    if not text or not text.strip():
        raise InvalidPromptError(f"{what} is empty. Type the word the model should say next.")
    ids = model.token_ids(text)
    if len(ids) != 1:
        raise InvalidPromptError(
            f"{what} {text!r} must be a single token, but {model.info.label}'s tokenizer splits "
            f"it into {len(ids)}: {shown_tokens(model, text)}. The metric reads one next-token "
            "logit, so choose a word that is one token (most short common words with a leading "
            "space are).")
    return ids[0]


def as_next_word(answer: str) -> str:
    """The answer as the token that follows a word: with one leading space unless it has one."""
    return answer if answer[:1].isspace() else " " + answer


def span_positions(model, text: str, start: int, end: int) -> tuple[int, ...]:
    """Token positions (BOS at 0, as in `model.to_tokens`) covering characters [start, end)."""
    encoding = model.encode(text)
    offset = len(model.to_tokens(text)[0]) - len(encoding.ids)
    return tuple(index + offset for index, (first, last) in enumerate(encoding.offsets)
                 if first < end and last > start)


def differing_positions(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """The positions where two equally long id sequences differ."""
    return tuple(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)


def shown_ids(model, ids: Sequence[int]) -> str:
    """Every token of `ids`, the start token included, for error messages that count them."""
    return " | ".join(model.display_tokens(ids)) or "(nothing)"


def same_length_or_explain(model, clean_ids: Sequence[int], corrupted_ids: Sequence[int],
                           advice: str) -> None:
    """Refuse a clean/corrupted pair of different token counts, showing both tokenizations and `advice`."""
    if len(clean_ids) != len(corrupted_ids):
        bos = model.tokenizer.bos_token_id
        counted = (f", counting the start token {model.display_tokens([bos])[0]} the "
                   "model reads first" if bos is not None and list(clean_ids[:1]) == [bos] else "")
        raise InvalidPromptError(
            f"The clean prompt is {len(clean_ids)} tokens ({shown_ids(model, clean_ids)}) but the "
            f"corrupted one is {len(corrupted_ids)} ({shown_ids(model, corrupted_ids)}){counted}. "
            "Patching copies activations position by position, so both need the same number of "
            f"tokens. {advice}")
    if list(clean_ids) == list(corrupted_ids):
        raise InvalidPromptError(
            "The clean and corrupted prompts are the same tokens, so there is nothing to patch. "
            "Change the corrupted prompt where the two should differ.")


# ---------------------------------------------------------------------------------------------
# Subject-verb agreement
# ---------------------------------------------------------------------------------------------

VERB_PAIRS: tuple[tuple[str, str], ...] = corpus.VERB_PAIRS  # (singular, plural)
VERB_PAIR_OF = {verb: pair for pair in VERB_PAIRS for verb in pair}
PLURAL_VERBS = frozenset(plural for _, plural in VERB_PAIRS)
DEFAULT_AGREEMENT_SENTENCE = "The keys to the cabinet are on the table"

DETERMINERS = frozenset(
    "the a an this that these those my your his her its our their some many several every each "
    "no all both few one two three four five".split())
# Words that end a subject noun phrase: prepositions, relative pronouns and conjunctions.
PHRASE_ENDERS = frozenset(
    "to of in on at by for from with near behind beside next under over above below between "
    "inside outside around across along among into onto upon toward towards through without "
    "about against like that which who whom whose where when and or but".split())

IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
    "foot": "feet", "tooth": "teeth", "goose": "geese", "ox": "oxen", "leaf": "leaves",
    "knife": "knives", "wife": "wives", "life": "lives", "wolf": "wolves", "shelf": "shelves",
    "half": "halves", "thief": "thieves", "loaf": "loaves", "calf": "calves",
    "hero": "heroes", "tomato": "tomatoes", "potato": "potatoes", "echo": "echoes",
    # "-ses" plurals whose singular ends in "s" (most, like "horses", end in "se").
    "bus": "buses", "gas": "gases", "lens": "lenses", "bonus": "bonuses", "virus": "viruses",
    "campus": "campuses", "class": "classes", "glass": "glasses", "dress": "dresses",
}
IRREGULAR_SINGULARS = {plural: singular for singular, plural in IRREGULAR_PLURALS.items()}
SAME_IN_BOTH = frozenset("sheep fish deer series species aircraft moose".split())


def pluralize(noun: str) -> str:
    """English plural by simple rules and a short irregular list (keeps a capital first letter)."""
    lower = noun.lower()
    if lower in SAME_IN_BOTH:
        plural = lower
    elif lower in IRREGULAR_PLURALS:
        plural = IRREGULAR_PLURALS[lower]
    elif lower.endswith(("s", "x", "z", "ch", "sh")):
        plural = lower + "es"
    elif lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        plural = lower[:-1] + "ies"
    else:
        plural = lower + "s"
    return match_case(noun, plural)


def singularize(noun: str) -> str:
    """English singular by simple rules and a short irregular list (keeps a capital first letter)."""
    lower = noun.lower()
    if lower in SAME_IN_BOTH:
        singular = lower
    elif lower in IRREGULAR_SINGULARS:
        singular = IRREGULAR_SINGULARS[lower]
    elif lower.endswith("ies") and len(lower) > 3:
        singular = lower[:-3] + "y"
    elif lower.endswith(("ches", "shes", "xes", "zes", "sses")):
        singular = lower[:-2]
    elif lower.endswith("s") and not lower.endswith("ss"):
        singular = lower[:-1]
    else:
        singular = lower
    return match_case(noun, singular)


# Pronoun subjects have no ending to flip; True = plural, False = singular, None = either.
PRONOUN_NUMBER = {"i": False, "he": False, "she": False, "it": False, "one": False,
                  "someone": False, "somebody": False, "everyone": False, "everybody": False,
                  "anyone": False, "nobody": False, "something": False, "everything": False,
                  "nothing": False, "we": True, "they": True, "you": None}
PRONOUN_FLIPS = {"he": "they", "she": "they", "it": "they", "they": "it", "we": "I", "i": "we"}
# Singular nouns that end in "s", and collective nouns that take either verb: their number
# can't be read from their ending.
ENDS_IN_S_SINGULAR = ("ss", "us", "is", "ous")
EITHER_NUMBER = frozenset(
    "police staff team family data cattle crew group government committee audience jury public "
    "band couple news series species".split())


def noun_looks_plural(noun: str) -> bool | None:
    """True for a plural-looking noun, False for a singular one, None when its ending can't tell."""
    lower = noun.lower()
    if lower in SAME_IN_BOTH or lower in EITHER_NUMBER:
        return None
    if lower in IRREGULAR_SINGULARS:
        return True
    if lower in IRREGULAR_PLURALS:
        return False
    if lower.endswith("s"):
        return None if lower.endswith(ENDS_IN_S_SINGULAR) else True
    return False


def match_case(model_word: str, word: str) -> str:
    """`word` capitalised like `model_word`."""
    return word[:1].upper() + word[1:] if model_word[:1].isupper() else word


@dataclass(frozen=True)
class AgreementParse:
    """Where the subject's head noun and its verb are in an agreement sentence."""

    prefix: str
    verb: str
    other_verb: str
    plural: bool
    noun: str
    noun_span: tuple[int, int]
    flipped_noun: str


WORD_OR_MARK = re.compile(r"[A-Za-z][A-Za-z'-]*|[^\sA-Za-z]")


def parse_agreement(sentence: str) -> AgreementParse:
    """Find the verb (the first is/are, has/have, was/were, does/do after the first word) and the
    subject's head noun (the last word of the noun phrase before it, which ends at a preposition,
    relative pronoun or punctuation: "The key to the cabinets is" -> "key", "is")."""
    if sentence is None or not sentence.strip():
        raise InvalidPromptError(
            f"The sentence is empty. Type one with a subject and a verb, e.g. "
            f"'{DEFAULT_AGREEMENT_SENTENCE}'.")
    items = list(WORD_OR_MARK.finditer(sentence))
    verb_index = next((i for i, m in enumerate(items) if i > 0 and m.group().lower() in VERB_PAIR_OF),
                      None)
    if verb_index is None:
        pairs = ", ".join(f"{s}/{p}" for s, p in VERB_PAIRS)
        raise InvalidPromptError(
            f"No verb of a known pair found in {sentence!r}. Use a sentence whose verb is one of "
            f"{pairs} after the subject, e.g. '{DEFAULT_AGREEMENT_SENTENCE}'.")
    before = items[:verb_index]
    start = 0
    for index, item in enumerate(before):
        word = item.group().lower()
        if word in PHRASE_ENDERS:
            break
        if word in DETERMINERS:
            start = index + 1
            break
    phrase = []
    for item in before[start:]:
        if item.group().lower() in PHRASE_ENDERS or not item.group()[0].isalpha():
            break
        phrase.append(item)
    if not phrase:
        raise InvalidPromptError(
            f"Could not find the subject before {items[verb_index].group()!r} in {sentence!r}. "
            "Start the sentence with its subject (e.g. 'The keys to the cabinet are'), or type "
            "the corrupted prefix yourself.")
    noun = phrase[-1]
    verb = items[verb_index].group().lower()
    singular, plural_verb = VERB_PAIR_OF[verb]
    is_plural = verb in PLURAL_VERBS
    flipped = singularize(noun.group()) if is_plural else pluralize(noun.group())
    return AgreementParse(
        prefix=sentence[:items[verb_index].start()].rstrip(), verb=verb,
        other_verb=singular if is_plural else plural_verb, plural=is_plural, noun=noun.group(),
        noun_span=(noun.start(), noun.end()), flipped_noun=flipped)


def agreement_task(model, sentence: str = DEFAULT_AGREEMENT_SENTENCE,
                   corrupted_prefix: str | None = None) -> PatchingTask:
    """Subject-verb agreement: the prefix before the verb, with the subject's number flipped.

    The correct answer is the verb in the sentence (" are"), the wrong one its pair (" is"); the
    corrupted prefix swaps the head noun for its other number ("keys" -> "key") unless you give
    one (it must have the same number of tokens).
    """
    parse = parse_agreement(sentence)
    if not parse.prefix:
        raise InvalidPromptError("Nothing comes before the verb; put the subject first.")
    clean = check_prompt(parse.prefix, model, "The text before the verb")
    correct = " " + parse.verb
    wrong = " " + parse.other_verb
    correct_id = single_token_id(model, correct, "The verb")
    wrong_id = single_token_id(model, wrong, "The other verb")
    if corrupted_prefix is None or not corrupted_prefix.strip():
        check_subject_can_flip(parse, sentence)
        if parse.flipped_noun == parse.noun:
            raise InvalidPromptError(
                f"{parse.noun!r} is the same in the singular and the plural, so flipping it "
                "changes nothing. Use another noun, or type the corrupted prefix yourself.")
        start, end = parse.noun_span
        corrupted_text = parse.prefix[:start] + parse.flipped_noun + parse.prefix[end:]
        flipped_ids = model.tokenizer.encode(corrupted_text, add_special_tokens=False)
        clean_ids = model.tokenizer.encode(parse.prefix, add_special_tokens=False)
        if len(flipped_ids) != len(clean_ids):
            raise InvalidPromptError(
                f"The subject {parse.noun!r} could not be flipped to {parse.flipped_noun!r}: "
                f"{parse.prefix!r} is {len(clean_ids)} tokens ({shown_tokens(model, parse.prefix)})"
                f" but {corrupted_text!r} would be {len(flipped_ids)} "
                f"({shown_tokens(model, corrupted_text)}), and patching needs both prefixes to "
                "have the same number of tokens. Use a noun whose singular and plural are both "
                "one token (e.g. 'The keys to the cabinet are on the table'), or type a "
                "corrupted prefix with as many tokens yourself.")
        advice = "Type a corrupted prefix with as many tokens as the clean one."
    else:
        corrupted_text = corrupted_prefix.strip()
        advice = "Edit the corrupted prefix so it has as many tokens as the clean one."
    corrupted = check_prompt(corrupted_text, model, "The corrupted prefix")
    same_length_or_explain(model, clean.token_ids, corrupted.token_ids, advice)
    changed = differing_positions(clean.token_ids, corrupted.token_ids)
    subject = span_positions(model, parse.prefix, *parse.noun_span)
    key_positions = [("subject", p) for p in subject] or [("changed", p) for p in changed]
    key_positions.append(("last (before the verb)", len(clean.token_ids) - 1))
    number = "plural" if parse.plural else "singular"
    return PatchingTask(
        kind="agreement", name=f"Agreement: {parse.prefix!r} -> {correct!r} vs {wrong!r}",
        description=(
            f"The subject {parse.noun!r} is {number}, so the model should prefer {correct!r} over "
            f"{wrong!r}. The corrupted prefix {corrupted.text!r} flips the subject's number. "
            "Patching shows where the number information travels from the subject to the "
            "position that predicts the verb."),
        model_name=model.name, clean_prompts=(clean.text,), clean_token_ids=(clean.token_ids,),
        correct_answers=(correct,), correct_ids=(correct_id,),
        corrupted_prompts=(corrupted.text,), corrupted_token_ids=(corrupted.token_ids,),
        wrong_answers=(wrong,), wrong_ids=(wrong_id,), key_positions=tuple(key_positions),
        warnings=clean.notes)


def check_subject_can_flip(parse: AgreementParse, sentence: str) -> None:
    """Refuse, saying what to type, a subject the automatic corruption can't flip: a pronoun,
    or a noun whose number visibly disagrees with the sentence's verb ("The cats is")."""
    word = parse.noun.lower()
    verb_number = "plural" if parse.plural else "singular"
    if word in PRONOUN_NUMBER:
        pronoun_plural = PRONOUN_NUMBER[word]
        if pronoun_plural is not None and pronoun_plural != parse.plural:
            fix = f"{parse.noun} {parse.other_verb}"
            raise InvalidPromptError(
                f"In {sentence!r} the verb {parse.verb!r} does not agree with its subject "
                f"{parse.noun!r} (it takes {parse.other_verb!r}), so the verb the model should "
                f"prefer is not the one typed. Type a sentence that agrees, e.g. starting "
                f"{fix!r}; pronoun subjects also need a corrupted prefix typed by hand.")
        flip = PRONOUN_FLIPS.get(word)
        example = (f" (e.g. {match_case(parse.noun, flip)!r} for {parse.noun!r})"
                   if flip else "")
        raise InvalidPromptError(
            f"The subject {parse.noun!r} is a pronoun, so its number can't be flipped by "
            f"changing its ending. Type the corrupted prefix yourself{example}, or use a noun "
            f"subject, e.g. '{DEFAULT_AGREEMENT_SENTENCE}'.")
    looks_plural = noun_looks_plural(parse.noun)
    if looks_plural is not None and looks_plural != parse.plural:
        noun_number = "plural" if looks_plural else "singular"
        other_noun = singularize(parse.noun) if looks_plural else pluralize(parse.noun)
        start, end = parse.noun_span
        fixed_verb = f"{parse.prefix} {parse.other_verb}"
        fixed_noun = f"{parse.prefix[:start]}{other_noun}{parse.prefix[end:]} {parse.verb}"
        raise InvalidPromptError(
            f"In {sentence!r} the verb {parse.verb!r} is {verb_number} but its subject "
            f"{parse.noun!r} looks {noun_number}, so the sentence does not agree and the verb the "
            f"model should prefer is not the one typed. Type a sentence whose verb agrees with "
            f"its subject, e.g. starting {fixed_verb!r} or {fixed_noun!r}.")


@dataclass(frozen=True)
class VerbCurves:
    """Probability of each verb after denoising `resid_pre` at one layer and one position.

    `correct_prob[layer, pos]` is P(correct verb) when the clean residual stream at the input of
    `layer`, position `pos` is copied into the corrupted run (likewise `wrong_prob`). Reading a
    column (one position) across layers shows where that position stops carrying the subject's
    number: at the subject early on, at the last position late.
    """

    model_name: str
    tokens: tuple[str, ...] = field(metadata=SCREEN_ONLY)
    correct_verb: str
    wrong_verb: str
    correct_prob: torch.Tensor
    wrong_prob: torch.Tensor
    clean_probs: tuple[float, float]
    corrupted_probs: tuple[float, float]
    subject_position: int
    token_texts: tuple[str, ...] = ()
    token_ids: tuple[int, ...] = ()


def verb_metrics(task: PatchingTask) -> tuple[PatchingMetric, PatchingMetric]:
    """Each verb's probability as a metric: (the clean verb, its pair)."""
    if task.kind != "agreement" or task.wrong_ids is None:
        raise InvalidOptionError("Verb curves need an agreement task (a verb and its pair).")
    return correct_prob_metric(tuple(task.correct_ids)), correct_prob_metric(tuple(task.wrong_ids))


def verb_curves_from(model, task: PatchingTask, correct: PatchingResult,
                     wrong: PatchingResult) -> VerbCurves:
    """The curves from denoising resid_pre sweeps scored by each verb's probability."""
    subject = next((p for label, p in task.key_positions if label in ("subject", "changed")),
                   task.n_tokens - 1)
    return VerbCurves(
        model_name=model.name, tokens=correct.tokens, correct_verb=task.correct_answers[0],
        wrong_verb=(task.wrong_answers or ("",))[0], correct_prob=correct.values.detach().clone(),
        wrong_prob=wrong.values.detach().clone(),
        clean_probs=(correct.clean_value, wrong.clean_value),
        corrupted_probs=(correct.corrupted_value, wrong.corrupted_value),
        subject_position=subject, token_texts=correct.token_texts, token_ids=correct.token_ids)


def agreement_verb_curves(model, task: PatchingTask, batch_size: int | None = None,
                          progress: Callable[[int, int], None] | None = None) -> VerbCurves:
    """Both verbs' probabilities after patching each (layer, position) of `resid_pre`.

    One engine sweep (denoising) scored twice, with each verb as the "correct" answer
    (`patch_metrics`); each cell is one patched run.
    """
    metrics = verb_metrics(task)
    inputs, _ = task_inputs(model, task, "correct_prob")
    correct, wrong = patch_metrics(model, inputs, metrics, site="resid_pre",
                                   granularity="layer_pos", direction="denoising",
                                   batch_size=batch_size, progress=progress)
    return verb_curves_from(model, task, correct, wrong)


# ---------------------------------------------------------------------------------------------
# Indirect-object identification (IOI)
# ---------------------------------------------------------------------------------------------

IOI_NAMES: tuple[str, ...] = corpus.NAMES
# {A} and {B} name the two people of the first clause, {S} is the subject repeated later; the
# answer is the other one (the indirect object, IO). Every name follows a space.
IOI_TEMPLATES: tuple[str, ...] = corpus.IOI_TEMPLATES
IOI_PLACES: tuple[str, ...] = corpus.IOI_PLACES
IOI_OBJECTS: tuple[str, ...] = corpus.IOI_OBJECTS
IOI_ORDERS = ("both", "ABBA", "BABA")
IOI_CORRUPTIONS: dict[str, str] = {
    "swap": "flipped subject (ABB -> ABA): the repeated name becomes the indirect object, so "
            "the corrupted prompt points at the other name",
    "third_name": "ABC: the repeated name becomes a third, unrelated name, so no name repeats "
                  "and nothing says which one to pick",
}


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt; `order` is "ABBA" when the indirect object is named first, else "BABA"."""

    text: str
    io: str
    s: str
    order: str
    template: str
    place: str
    obj: str


def one_token_names(model, names: Sequence[str] = IOI_NAMES) -> list[str]:
    """The names that are a single token with a leading space for `model`'s tokenizer."""
    return [name for name in names
            if len(model.token_ids(" " + name)) == 1]


def check_template(template: str) -> None:
    """Refuse an IOI template without the {A}, {B} and {S} placeholders."""
    for placeholder in ("{A}", "{B}", "{S}"):
        if placeholder not in template:
            raise InvalidPromptError(
                f"The IOI template {template!r} has no {placeholder}. Templates name two people {{A}} "
                "and {B}, then repeat the subject as {S}, e.g. "
                f"{IOI_TEMPLATES[0]!r}.")
        if template.index(placeholder) == 0 or template[template.index(placeholder) - 1] != " ":
            raise InvalidPromptError(
                f"In the IOI template {template!r}, {placeholder} must follow a space: names are "
                "checked as one token with their leading space.")


def ioi_prompts(model, n: int, seed: int = 0, templates: Sequence[str] = IOI_TEMPLATES,
                order: str = "both", places: Sequence[str] = IOI_PLACES,
                objects: Sequence[str] = IOI_OBJECTS) -> list[IOIPrompt]:
    """`n` IOI prompts built from one-token names; templates cycle, and with `order="both"`
    ABBA and BABA alternate. Same seed, same prompts."""
    if order not in IOI_ORDERS:
        raise invalid_choice("IOI order", order, IOI_ORDERS)
    if n < 1:
        raise InvalidOptionError(f"Ask for at least one IOI prompt; got {n}.")
    if not templates or not places or not objects:
        raise InvalidOptionError("IOI prompts need at least one template, place and object.")
    for template in templates:
        check_template(template)
    names = one_token_names(model)
    if len(names) < 3:
        raise InvalidPromptError(
            f"Only {len(names)} of the {len(IOI_NAMES)} IOI names are single tokens for "
            f"{model.info.label}; IOI needs at least three.")
    rng = random.Random(f"ioi|{seed}")
    prompts = []
    for index in range(n):
        io, s = rng.sample(names, 2)
        this_order = order if order != "both" else ("ABBA" if index % 2 == 0 else "BABA")
        a, b = (io, s) if this_order == "ABBA" else (s, io)
        template = templates[index % len(templates)]
        place, obj = rng.choice(places), rng.choice(objects)
        prompts.append(IOIPrompt(
            text=template.format(A=a, B=b, S=s, place=place, obj=obj), io=io, s=s,
            order=this_order, template=template, place=place, obj=obj))
    return prompts


def ioi_corrupted_text(prompt: IOIPrompt, corruption: str, third: str) -> str:
    """The corrupted text of an IOI prompt under `corruption` (swap or third name)."""
    a, b = (prompt.io, prompt.s) if prompt.order == "ABBA" else (prompt.s, prompt.io)
    repeated = prompt.io if corruption == "swap" else third
    return prompt.template.format(A=a, B=b, S=repeated, place=prompt.place, obj=prompt.obj)


def ioi_task(model, n_prompts: int = 8, corruption: str = "swap", seed: int = 0,
             order: str = "both", template: str = IOI_TEMPLATES[0]) -> PatchingTask:
    """IOI ("When Mary and John went to the store, John gave a drink to" -> " Mary").

    All prompts share one template, place and object, so positions line up across prompts; the
    names vary. Correct = the indirect object, wrong = the subject. `corruption` is "swap"
    (flipped subject) or "third_name" (ABC), as in Wang et al. (2022).
    """
    if corruption not in IOI_CORRUPTIONS:
        raise invalid_choice("IOI corruption", corruption, tuple(IOI_CORRUPTIONS))
    if not 1 <= n_prompts <= 64:
        raise InvalidOptionError(f"Use between 1 and 64 IOI prompts; got {n_prompts}.")
    check_template(template)
    rng = random.Random(f"ioi-scene|{seed}")
    place, obj = rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS)
    prompts = ioi_prompts(model, n_prompts, seed, templates=(template,), order=order,
                          places=(place,), objects=(obj,))
    names = one_token_names(model)
    clean_ids, corrupted_ids, corrupted_texts = [], [], []
    for prompt in prompts:
        third = rng.choice([n for n in names if n not in (prompt.io, prompt.s)])
        corrupted_text = ioi_corrupted_text(prompt, corruption, third)
        clean = check_prompt(prompt.text, model, "The IOI prompt")
        corrupted = check_prompt(corrupted_text, model, "The corrupted IOI prompt")
        same_length_or_explain(model, clean.token_ids, corrupted.token_ids,
                               "Use names that are single tokens.")
        clean_ids.append(clean.token_ids)
        corrupted_ids.append(corrupted.token_ids)
        corrupted_texts.append(corrupted_text)
    if len({len(ids) for ids in clean_ids}) != 1:
        raise InvalidPromptError(
            "The IOI prompts do not all have the same number of tokens, so positions would not "
            "line up across prompts. Use a template whose only varying words are the names.")
    first = prompts[0]
    name_positions = ioi_name_positions(model, first)
    return PatchingTask(
        kind="ioi", name=f"IOI, {n_prompts} prompt{'s' if n_prompts > 1 else ''}, {corruption}",
        description=(
            f"The model should name the indirect object (e.g. {' ' + first.io!r}) rather than the "
            f"repeated subject ({' ' + first.s!r}). Corruption: {IOI_CORRUPTIONS[corruption]}. "
            "Values are averaged over the prompts."),
        model_name=model.name, clean_prompts=tuple(p.text for p in prompts),
        clean_token_ids=tuple(clean_ids),
        correct_answers=tuple(" " + p.io for p in prompts),
        correct_ids=tuple(single_token_id(model, " " + p.io, "The indirect object") for p in prompts),
        corrupted_prompts=tuple(corrupted_texts), corrupted_token_ids=tuple(corrupted_ids),
        wrong_answers=tuple(" " + p.s for p in prompts),
        wrong_ids=tuple(single_token_id(model, " " + p.s, "The subject") for p in prompts),
        key_positions=(*name_positions, ("end", len(clean_ids[0]) - 1)),
        position_roles=ioi_position_roles(model, prompts, len(clean_ids[0])))


IOI_ROLES = {"ABBA": ("IO", "S1", "S2"), "BABA": ("S1", "IO", "S2")}


def ioi_position_roles(model, prompts: Sequence[IOIPrompt], n_tokens: int) -> tuple[str, ...]:
    """Each position's role over all prompts: IO, S1, S2, END, "IO/S1" where the name order
    differs between prompts, "" for template words."""
    roles: list[list[str]] = [[] for _ in range(n_tokens)]
    for prompt in prompts:
        found = ioi_name_positions(model, prompt)
        for role, (_, position) in zip(IOI_ROLES[prompt.order], found, strict=False):
            if role not in roles[position]:
                roles[position].append(role)
    roles[n_tokens - 1] = [*roles[n_tokens - 1], "END"]
    return tuple("/".join(names) for names in roles)


def ioi_name_positions(model, prompt: IOIPrompt) -> tuple[tuple[str, int], ...]:
    """Token positions of the two first-clause names and of the repeated subject (S2)."""
    found = []
    labels = iter(("first name", "second name", "repeated subject (S2)"))
    for match in re.finditer(r"\b(" + re.escape(prompt.io) + "|" + re.escape(prompt.s) + r")\b",
                             prompt.text):
        label = next(labels, None)
        if label is None:
            break
        found.append((label, span_positions(model, prompt.text, match.start(), match.end())[0]))
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# Fact recall
# ---------------------------------------------------------------------------------------------

FACT_CORRUPTIONS = ("subject", "noise")


@dataclass(frozen=True)
class KnownFact:
    """A fact prompt, the words of its subject, and the one-word answer."""

    prompt: str
    subject: str
    answer: str


def capitalized(text: str) -> str:
    """`text` with its first letter upper-case."""
    return text[:1].upper() + text[1:]


DEFAULT_FACTS: tuple[KnownFact, ...] = tuple(
    KnownFact(f"{capitalized(fact.subject)} is located in the {fact.kind} of",
              capitalized(fact.subject), fact.answer)
    for fact in corpus.FACTS)


def usable_facts(model, facts: Sequence[KnownFact] = DEFAULT_FACTS) -> list[KnownFact]:
    """The facts whose answer is a single token (with a leading space) for `model`."""
    return [fact for fact in facts
            if len(model.token_ids(as_next_word(fact.answer))) == 1]


def find_subject(prompt: str, subject: str | None, facts: Sequence[KnownFact]) -> tuple[int, int]:
    """Character span of the subject: the given words, else a known fact's subject in the
    prompt, else the words before the first "is"/"was"/"are"/"can"/"stands"."""
    lowered = prompt.lower()
    if subject and subject.strip():
        where = lowered.find(subject.strip().lower())
        if where < 0:
            raise InvalidPromptError(
                f"The subject {subject.strip()!r} does not occur in the prompt {prompt!r}. Type "
                "the subject exactly as it is written in the prompt.")
        return where, where + len(subject.strip())
    for fact in facts:
        where = lowered.find(fact.subject.lower())
        if where >= 0:
            return where, where + len(fact.subject)
    relation = re.search(r"\s(is|was|are|were|can|stands|lies)\b", prompt)
    if relation is None or not prompt[:relation.start()].strip():
        raise InvalidPromptError(
            f"Could not tell which words of {prompt!r} are the subject. Type the subject "
            "(e.g. 'The Eiffel Tower').")
    text = prompt[:relation.start()]
    start = len(text) - len(text.lstrip())
    return start, relation.start()


def fact_task(model, prompt: str = DEFAULT_FACTS[0].prompt, answer: str = DEFAULT_FACTS[0].answer,
              corruption: str = "subject", subject: str | None = None,
              other_subject: str | None = None, noise_scale: float = DEFAULT_NOISE_SCALE,
              facts: Sequence[KnownFact] = DEFAULT_FACTS) -> PatchingTask:
    """Fact recall ("The Eiffel Tower is located in the city of" -> " Paris").

    "subject" corruption swaps the subject for another one with as many tokens (chosen from
    `facts` unless given; its answer becomes the wrong answer when it is one token); "noise"
    adds Gaussian noise of `noise_scale` x the embeddings' spread to the subject's tokens, as in
    ROME's causal tracing (Meng et al. 2022).
    """
    if corruption not in FACT_CORRUPTIONS:
        raise invalid_choice("fact corruption", corruption, FACT_CORRUPTIONS)
    clean = check_prompt(prompt, model, "The fact prompt")
    correct = as_next_word(answer.strip()) if answer and answer.strip() else ""
    correct_id = single_token_id(model, correct, "The answer")
    start, end = find_subject(clean.text, subject, facts)
    subject_text = clean.text[start:end]
    positions = span_positions(model, clean.text, start, end)
    key_positions = tuple(("subject", p) for p in positions) + (("last", clean.n_tokens - 1),)
    common = dict(model_name=model.name, clean_prompts=(clean.text,),
                  clean_token_ids=(clean.token_ids,), correct_answers=(correct,),
                  correct_ids=(correct_id,), key_positions=key_positions)
    if corruption == "noise":
        if not noise_scale > 0:
            raise InvalidOptionError(f"The noise scale must be positive; got {noise_scale}.")
        return PatchingTask(
            kind="fact", name=f"Fact: {clean.text!r} -> {correct!r} (noise on the subject)",
            description=(
                f"Noise of {noise_scale:g}x the embeddings' spread hides the subject "
                f"{subject_text!r} (positions {', '.join(map(str, positions))}); patching shows "
                "which activations carry the fact."),
            noise_positions=positions, noise_scale=float(noise_scale), **common)
    other, other_answer = pick_other_subject(model, clean, (start, end), correct, other_subject,
                                             facts)
    corrupted_text = clean.text[:start] + other + clean.text[end:]
    corrupted = check_prompt(corrupted_text, model, "The corrupted fact prompt")
    same_length_or_explain(
        model, clean.token_ids, corrupted.token_ids,
        f"Choose another subject with as many tokens as {subject_text!r} "
        f"({shown_tokens(model, subject_text)}), or use noise corruption.")
    wrong, wrong_id, warnings = None, None, []
    if other_answer is not None:
        candidate = as_next_word(other_answer.strip())
        ids = model.token_ids(candidate)
        if len(ids) == 1 and ids[0] != correct_id:
            wrong, wrong_id = candidate, ids[0]
        else:
            warnings.append(f"The other subject's answer {candidate!r} is not a distinct single "
                            "token, so only 'correct_prob' and 'kl_to_clean' can be measured.")
    return PatchingTask(
        kind="fact", name=f"Fact: {clean.text!r} -> {correct!r} vs {other!r}",
        description=(
            f"The subject {subject_text!r} is swapped for {other!r}"
            + (f" (whose answer is {wrong!r})" if wrong else "") +
            "; patching shows which activations carry the subject's fact to the last position."),
        corrupted_prompts=(corrupted.text,), corrupted_token_ids=(corrupted.token_ids,),
        wrong_answers=(wrong,) if wrong else None, wrong_ids=(wrong_id,) if wrong and wrong_id is not None else None,
        warnings=tuple(warnings), **common)


def pick_other_subject(model, clean, span: tuple[int, int], correct: str,
                       other_subject: str | None,
                       facts: Sequence[KnownFact]) -> tuple[str, str | None]:
    """The replacement subject and its answer (None when unknown): the given one, or the first
    fact whose subject has as many tokens here and whose answer differs."""
    start, end = span
    known_answers = {fact.subject.lower(): fact.answer for fact in facts}
    if other_subject and other_subject.strip():
        other = other_subject.strip()
        return other, known_answers.get(other.lower())
    original = clean.text[start:end]
    # Facts with a one-token answer first: their answer can serve as the wrong answer.
    one_token = usable_facts(model, facts)
    for fact in [*one_token, *(f for f in facts if f not in one_token)]:
        if as_next_word(fact.answer) == correct or fact.subject.lower() == original.lower():
            continue
        replacement = fit_case(original, fact.subject)
        candidate = clean.text[:start] + replacement + clean.text[end:]
        if len(model.to_tokens(candidate)[0]) == clean.n_tokens:
            return replacement, fact.answer
    raise InvalidPromptError(
        f"No subject in the fact list has as many tokens as {clean.text[start:end]!r} "
        f"({shown_tokens(model, clean.text[start:end])}). Type another subject, or use noise "
        "corruption.")


# ---------------------------------------------------------------------------------------------
# Custom pairs
# ---------------------------------------------------------------------------------------------

def fit_case(original: str, replacement: str) -> str:
    """Lower-case a replacement's leading "The" when the subject it replaces is mid-sentence."""
    if original[:1].islower() and replacement.startswith("The "):
        return "the " + replacement[4:]
    return replacement


ALIGNMENTS = ("none", "left_pad")


def custom_task(model, clean: str, corrupted: str, correct: str, wrong: str | None = None,
                align: str = "none") -> PatchingTask:
    """Any clean/corrupted pair with a one-token correct answer (and optionally a wrong one).

    Answers without a leading space get one (the token that follows a word). Prompts must have
    the same number of tokens; `align="left_pad"` instead pads the shorter one at the start with
    the BOS token so the ends line up, which is sound only for positions after the tokens that
    differ (the task's warnings say which).
    """
    if align not in ALIGNMENTS:
        raise invalid_choice("alignment", align, ALIGNMENTS)
    clean_checked = check_prompt(clean, model, "The clean prompt")
    corrupted_checked = check_prompt(corrupted, model, "The corrupted prompt")
    correct_text = as_next_word(correct.strip()) if correct and correct.strip() else ""
    correct_id = single_token_id(model, correct_text, "The correct answer")
    wrong_text, wrong_id = None, None
    if wrong is not None and wrong.strip():
        wrong_text = as_next_word(wrong.strip())
        wrong_id = single_token_id(model, wrong_text, "The wrong answer")
        if wrong_id == correct_id:
            raise InvalidPromptError("The correct and wrong answers are the same token; make "
                                     "them differ.")
    clean_ids, corrupted_ids = list(clean_checked.token_ids), list(corrupted_checked.token_ids)
    warnings = list(clean_checked.notes)
    if len(clean_ids) != len(corrupted_ids) and align == "left_pad":
        clean_ids, corrupted_ids, note = left_pad(model, clean_ids, corrupted_ids)
        warnings.append(note)
    else:
        same_length_or_explain(
            model, clean_ids, corrupted_ids,
            "Make them the same length (e.g. swap a name for another one-token name), or choose "
            "left-pad alignment, which pads the shorter prompt at the start so the ends line up.")
    changed = differing_positions(clean_ids, corrupted_ids)
    return PatchingTask(
        kind="custom", name=f"Custom: {clean_checked.text!r} vs {corrupted_checked.text!r}",
        description=(f"Clean {clean_checked.text!r} should give {correct_text!r}"
                     + (f" rather than {wrong_text!r}" if wrong_text else "")
                     + f"; the corrupted prompt is {corrupted_checked.text!r}."),
        model_name=model.name, clean_prompts=(clean_checked.text,),
        clean_token_ids=(tuple(clean_ids),), correct_answers=(correct_text,),
        correct_ids=(correct_id,), corrupted_prompts=(corrupted_checked.text,),
        corrupted_token_ids=(tuple(corrupted_ids),),
        wrong_answers=(wrong_text,) if wrong_text else None,
        wrong_ids=(wrong_id,) if wrong_id is not None else None,
        key_positions=tuple(("changed", p) for p in changed) + (("last", len(clean_ids) - 1),),
        warnings=tuple(warnings))


def left_pad(model, clean_ids: list[int], corrupted_ids: list[int]) -> tuple[list[int], list[int], str]:
    """Pad the shorter prompt at the start with BOS tokens; say which positions correspond."""
    pad = model.tokenizer.bos_token_id
    if pad is None:
        pad = model.tokenizer.pad_token_id
    if pad is None:
        raise InvalidOptionError(
            f"{model.info.label}'s tokenizer has no BOS or padding token to pad with; make the "
            "prompts the same length instead.")
    shorter = "clean" if len(clean_ids) < len(corrupted_ids) else "corrupted"
    n_pad = abs(len(clean_ids) - len(corrupted_ids))
    if shorter == "clean":
        clean_ids = [pad] * n_pad + clean_ids
    else:
        corrupted_ids = [pad] * n_pad + corrupted_ids
    shared_end = 0
    while (shared_end < len(clean_ids) and
           clean_ids[-1 - shared_end] == corrupted_ids[-1 - shared_end]):
        shared_end += 1
    note = (f"The {shorter} prompt was padded at the start with {n_pad} BOS token"
            f"{'s' if n_pad > 1 else ''}, so the two prompts line up from the end. "
            f"{shared_end_text(shared_end, len(clean_ids))} Padding also shifts every token's "
            "position, which changes the model's output a little.")
    return clean_ids, corrupted_ids, note


def shared_end_text(shared_end: int, n_positions: int) -> str:
    """Which of the last positions of two end-aligned prompts hold the same tokens."""
    last = n_positions - 1
    if shared_end == 0:
        return ("No position holds the same token in both, not even the last (the prompts end "
                "with different tokens), so per-position results do not compare one to one "
                "anywhere; read them with care.")
    if shared_end == 1:
        shared = f"Only the last position ({last}) holds the same token in both"
    else:
        shared = f"Only positions {n_positions - shared_end} to {last} hold the same tokens in both"
    return (shared + "; earlier positions do not correspond one to one, so read per-position "
            "results there with care.")
