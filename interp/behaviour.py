"""Confidence and failure cases: how sure the model is, token by token, and where it goes wrong.

Along a text, each token gets the entropy of the distribution it was predicted from (in nats:
0 = certain, ln |vocab| = uniform), that distribution's top-1 probability, and the probability
of the token actually there; runs of low top-1 probability mark where the model was guessing.
Behavioural tests treat the model as a black box: the answer's probability across rewrites of
one question (it should not move much), and a catalogue of known failures (repetition loops,
ignored negation, arithmetic, confident answers about things that do not exist) run live.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from interp.bias import continuation_log_probs, parse_terms
from interp.errors import InvalidOptionError, InvalidPromptError, invalid_choice
from interp.inputs import InputField

Progress = Callable[[float, str], None]
DEFAULT_LOW_CONFIDENCE = 0.3
TRACE_MODES = {"text": "this text", "generation": "a greedy continuation too"}
CONFIDENCE_FIELDS = (  # the form of confidence_along / confidence_of_generation
    InputField("text", "Text or prompt", "The nurse said that she would be late.", "long_text",
               key="confidence_text"),
    InputField("mode", "Trace", "text", "radio", key="confidence_mode",
               choices=tuple(TRACE_MODES), choice_labels=TRACE_MODES, row=1),
    InputField("threshold", "Low confidence below (top-1 probability)", DEFAULT_LOW_CONFIDENCE,
               "slider", key="confidence_threshold", minimum=0.05, maximum=0.95, step=0.05,
               row=1, column=1),
)
REPEAT_NGRAM = 3
REPETITION_LOOP_SHARE = 0.3


@dataclass(frozen=True)
class ConfidenceTrace:
    """Per token of a text (after BOS): what the model predicted at the position before it.

    `entropy` [n] in nats, `top1_prob` [n] and `top1_tokens` [n] of that prediction,
    `token_prob` [n] the probability of the token really there; the first `prompt_tokens`
    tokens are the prompt, the rest were generated (0 generated when a text is analysed).
    """

    model_name: str
    text: str
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    entropy: np.ndarray
    top1_prob: np.ndarray
    top1_tokens: tuple[str, ...]
    token_prob: np.ndarray
    prompt_tokens: int
    threshold: float

    @property
    def low_confidence(self) -> np.ndarray:
        return self.top1_prob < self.threshold

    @property
    def low_spans(self) -> tuple[tuple[int, int], ...]:
        """Runs [start, end) of consecutive tokens predicted with top-1 probability below the
        threshold."""
        spans, start = [], None
        for index, low in enumerate([*self.low_confidence.tolist(), False]):
            if low and start is None:
                start = index
            elif not low and start is not None:
                spans.append((start, index))
                start = None
        return tuple(spans)


def check_threshold(threshold: float) -> None:
    """Refuse a low-confidence threshold outside (0, 1)."""
    if not 0 < threshold < 1:
        raise InvalidOptionError(f"The low-confidence threshold must be in (0, 1), not {threshold}.")


@torch.no_grad()
def trace_ids(model, ids: Sequence[int], prompt_tokens: int, threshold: float) -> ConfidenceTrace:
    """The trace of token ids that start with BOS (which itself gets no prediction)."""
    check_threshold(threshold)
    if len(ids) < 2:
        raise InvalidPromptError("Type some text to analyse: it is empty.")
    if len(ids) > model.info.n_ctx:
        raise InvalidPromptError(f"The text is {len(ids)} tokens long, more than "
                                 f"{model.info.name}'s context of {model.info.n_ctx} tokens.")
    tokens = torch.tensor([list(ids)], dtype=torch.long)
    log_probs = torch.log_softmax(model.logits(tokens)[0, :-1].float(), dim=-1).cpu()
    probs = log_probs.exp()
    entropy = -(probs * log_probs).sum(dim=-1)
    top1_prob, top1_id = probs.max(dim=-1)
    following = torch.tensor(list(ids[1:]), dtype=torch.long)
    token_prob = probs[torch.arange(len(following)), following]
    return ConfidenceTrace(
        model_name=model.name, text=model.decode(ids[1:]),
        tokens=tuple(model.display_tokens(ids[1:])), token_ids=tuple(int(i) for i in ids[1:]),
        entropy=entropy.numpy(), top1_prob=top1_prob.numpy(),
        top1_tokens=tuple(model.display_tokens(top1_id.tolist())),
        token_prob=token_prob.numpy(), prompt_tokens=prompt_tokens, threshold=threshold)


def confidence_along(model, text: str, threshold: float = DEFAULT_LOW_CONFIDENCE,
                     progress: Progress | None = None) -> ConfidenceTrace:
    """Entropy and top-1 probability at every token of `text` (one forward pass)."""
    ids = model.to_tokens(text)[0].tolist()
    trace = trace_ids(model, ids, prompt_tokens=len(ids) - 1, threshold=threshold)
    if progress is not None:
        progress(1.0, "Done")
    return trace


def confidence_of_generation(model, prompt: str, max_new_tokens: int = 30,
                             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                             threshold: float = DEFAULT_LOW_CONFIDENCE,
                             progress: Progress | None = None) -> ConfidenceTrace:
    """Generate a continuation, then trace the prompt and the generated tokens together."""
    from interp.generation import generate

    generated = [token.token_id for token in generate(
        model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
        seed=seed)]
    bos, *prompt_ids = model.to_tokens(prompt)[0].tolist()
    # A prompt the generator cut to fit the window is traced with the same cut.
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(generated) + 1 - model.info.n_ctx):]
    if progress is not None:
        progress(0.5, "Generated; scoring every token")
    return trace_ids(model, [bos, *prompt_ids, *generated], prompt_tokens=len(prompt_ids),
                     threshold=threshold)


# ---------------------------------------------------------------------------------------------
# Consistency under paraphrase and token edits
# ---------------------------------------------------------------------------------------------

DEFAULT_REWRITES = (
    "The Eiffel Tower is in the city of",
    "The Eiffel Tower is located in the city of",
    "As everyone knows, the Eiffel Tower stands in the city of",
    "I read that the Eiffel Tower can be found in the city of",
    "the eiffel tower is in the city of",
    "The Eiffel Tower is in teh city of",
)
DEFAULT_ANSWER = "Paris"


def token_edits(prompt: str) -> tuple[str, ...]:
    """Small surface edits of a prompt that should not change its answer: lower case, a typo
    (two inner letters of its longest word swapped), a doubled space, a dropped first word."""
    words = prompt.split()
    if not words:
        raise InvalidPromptError("Type a prompt to edit.")
    edits = [prompt.lower()]
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    if len(word) >= 4:
        typo = word[0] + word[2] + word[1] + word[3:]
        edits.append(" ".join([*words[:longest], typo, *words[longest + 1:]]))
    if len(words) > 1:
        edits.append(" ".join(words[:1]) + "  " + " ".join(words[1:]))
        edits.append(" ".join(words[1:]))
    return tuple(dict.fromkeys(e for e in edits if e != prompt))


@dataclass(frozen=True)
class ConsistencyResult:
    """P(answer | rewrite) for each rewrite of one question (the answer scored as a sequence),
    with the top-1 next token after each rewrite."""

    model_name: str
    rewrites: tuple[str, ...]
    answer: str
    answer_prob: np.ndarray
    top1_tokens: tuple[str, ...]
    top1_prob: np.ndarray

    @property
    def spread(self) -> float:
        """Largest minus smallest answer probability: 0 = perfectly consistent."""
        return float(self.answer_prob.max() - self.answer_prob.min())


def consistency(model, rewrites: Sequence[str], answer: str = DEFAULT_ANSWER,
                progress: Progress | None = None) -> ConsistencyResult:
    """The answer's probability after each rewrite, and what the model would say instead."""
    rewrites = parse_terms(list(rewrites), "rewrite")
    answer = answer.strip()
    if not answer:
        raise InvalidOptionError("Give the answer whose probability is compared.")
    scored = continuation_log_probs(model, [(r, " " + answer) for r in rewrites])
    top_tokens, top_probs = [], []
    for index, rewrite in enumerate(rewrites):
        probs = torch.softmax(model.logits(model.to_tokens(rewrite))[0, -1].float(), dim=-1)
        value, token = probs.max(dim=-1)
        top_tokens.append(model.display_tokens([int(token)])[0])
        top_probs.append(float(value))
        if progress is not None:
            progress((index + 1) / len(rewrites), f"Rewrite {index + 1} of {len(rewrites)}")
    return ConsistencyResult(model_name=model.name, rewrites=rewrites, answer=answer,
                             answer_prob=np.exp([s.total for s in scored]),
                             top1_tokens=tuple(top_tokens), top1_prob=np.array(top_probs))


# ---------------------------------------------------------------------------------------------
# A catalogue of known failure cases
# ---------------------------------------------------------------------------------------------

FAILURE_KINDS = ("repetition", "negation", "arithmetic", "made_up")


@dataclass(frozen=True)
class FailureCase:
    """A prompt known to trip language models up, and how to tell whether it did.

    `repetition`: greedy text that loops; `negation`: the answer should lose probability when
    the prompt says "not" (`negated`); `arithmetic`: the right `answer` should be the top-1;
    `made_up`: a question about something that does not exist, where a confident answer
    (top-1 probability above one half) is made up.
    """

    name: str
    kind: str
    prompt: str
    answer: str = ""
    negated: str = ""


CATALOGUE = (
    FailureCase("Repetition loop", "repetition", "The lazy bear waited near the river. The lazy"),
    FailureCase("Repetition of a list", "repetition", "bucket ice glove paper bucket ice"),
    FailureCase("Negation", "negation", "The Eiffel Tower is in the city of", answer="Paris",
                negated="The Eiffel Tower is not in the city of"),
    FailureCase("Addition", "arithmetic", "2 + 2 =", answer="4"),
    FailureCase("Counting on", "arithmetic", "one, two, three, four,", answer="five"),
    FailureCase("Made-up landmark", "made_up", "The Zorblax Tower stands in the city of"),
    FailureCase("Made-up person", "made_up", "The famous painter Quilla Vantorp was born in"),
)


@dataclass(frozen=True)
class CaseOutcome:
    """What the model did on one case: its greedy continuation, the next token it ranks first
    with its probability, the numbers the check reads, and whether the case tripped it."""

    case: FailureCase
    continuation: str
    top1_token: str
    top1_prob: float
    measures: tuple[tuple[str, float], ...]
    failed: bool
    verdict: str


@dataclass(frozen=True)
class FailureCatalogueResult:
    model_name: str
    outcomes: tuple[CaseOutcome, ...]
    max_new_tokens: int


def repeated_ngram_share(token_ids: Sequence[int], n: int = REPEAT_NGRAM) -> float:
    """Fraction of the text's token n-grams that already occurred earlier in it."""
    grams = [tuple(token_ids[i:i + n]) for i in range(len(token_ids) - n + 1)]
    if not grams:
        return 0.0
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def answer_prob(model, prompt: str, answer: str) -> float:
    """The probability of " " + `answer` (all its tokens) after `prompt`."""
    return float(np.exp(continuation_log_probs(model, [(prompt, " " + answer)])[0].total))


def check_case(model, case: FailureCase, generated_ids: Sequence[int]
               ) -> tuple[tuple[tuple[str, float], ...], bool, str]:
    """The probabilities a failure case is judged by, whether it tripped, and the verdict's text."""
    if case.kind == "repetition":
        share = repeated_ngram_share(generated_ids)
        looped = share > REPETITION_LOOP_SHARE
        return ((f"repeated {REPEAT_NGRAM}-grams", share),), looped, (
            f"{share:.0%} of the continuation's {REPEAT_NGRAM}-grams repeat earlier ones: "
            + ("it loops." if looped else "no loop."))
    if case.kind == "negation":
        plain, negated = answer_prob(model, case.prompt, case.answer), answer_prob(
            model, case.negated, case.answer)
        ignored = negated >= 0.5 * plain
        return ((f"P({case.answer})", plain), (f"P({case.answer}) negated", negated)), ignored, (
            f"P({case.answer}) is {plain:.3f}, and {negated:.3f} after \"not\": "
            + ("the negation is ignored." if ignored else "the negation lowers it."))
    if case.kind == "arithmetic":
        probability = answer_prob(model, case.prompt, case.answer)
        ids = model.token_ids(" " + case.answer)
        logits = model.logits(model.to_tokens(case.prompt))[0, -1]
        wrong = int(logits.argmax()) != ids[0]
        return ((f"P({case.answer})", probability),), wrong, (
            f"P({case.answer}) = {probability:.3f}; "
            + ("another token ranks first." if wrong else "it ranks first."))
    return (), False, ""  # made_up: judged by the caller from the top-1 probability


def run_case(model, case: FailureCase, max_new_tokens: int) -> CaseOutcome:
    """Run one failure case live: its greedy continuation and verdict."""
    from interp.generation import generate

    if case.kind not in FAILURE_KINDS:
        raise invalid_choice("failure-case kind", case.kind, FAILURE_KINDS)
    generated = list(generate(model, case.prompt, max_new_tokens=max_new_tokens,
                              temperature=0.0, stop=()))
    probs = torch.softmax(model.logits(model.to_tokens(case.prompt))[0, -1].float(), dim=-1)
    top_prob, top_id = probs.max(dim=-1)
    measures, failed, verdict = check_case(model, case, [t.token_id for t in generated])
    if case.kind == "made_up":
        ends = int(top_id) == model.tokenizer.eos_token_id
        failed = not ends and float(top_prob) > 0.5
        verdict = ("It ends the text instead of answering." if ends else
                   f"It answers with top-1 probability {float(top_prob):.2f} about something "
                   "that does not exist: " + ("a confident made-up answer." if failed else
                                              "at least it is unsure."))
    return CaseOutcome(case=case, continuation="".join(t.text for t in generated),
                       top1_token=model.display_tokens([int(top_id)])[0],
                       top1_prob=float(top_prob), measures=measures, failed=failed,
                       verdict=verdict)


def run_catalogue(model, cases: Sequence[FailureCase] = CATALOGUE, max_new_tokens: int = 24,
                  progress: Progress | None = None) -> FailureCatalogueResult:
    """Run every case live on the model, greedily (so the outcome is the same every time)."""
    if not cases:
        raise InvalidOptionError("Choose at least one failure case to run.")
    if not 1 <= max_new_tokens <= 100:
        raise InvalidOptionError(f"New tokens must be 1 to 100, not {max_new_tokens}.")
    outcomes = []
    for index, case in enumerate(cases):
        outcomes.append(run_case(model, case, max_new_tokens))
        if progress is not None:
            progress((index + 1) / len(cases), f"Ran {index + 1} of {len(cases)} cases")
    return FailureCatalogueResult(model_name=model.name, outcomes=tuple(outcomes),
                                  max_new_tokens=max_new_tokens)


def case_from_row(name: str, kind: str, prompt: str, answer: str = "", negated: str = ""
                  ) -> FailureCase:
    """A user's own case from an edited table row (the kind checked, text stripped)."""
    if kind not in FAILURE_KINDS:
        raise invalid_choice("failure-case kind", kind, FAILURE_KINDS)
    if not prompt.strip():
        raise InvalidPromptError(f"The case {name!r} has no prompt.")
    if kind in ("negation", "arithmetic") and not answer.strip():
        raise InvalidOptionError(f"The {kind} case {name!r} needs an answer.")
    if kind == "negation" and not negated.strip():
        raise InvalidOptionError(f"The negation case {name!r} needs its negated prompt.")
    return FailureCase(name=re.sub(r"\s+", " ", name).strip() or kind, kind=kind,
                       prompt=prompt.strip(), answer=answer.strip(), negated=negated.strip())


# ---------------------------------------------------------------------------------------------
# Tables and explanations
# ---------------------------------------------------------------------------------------------

from interp.explain import Explanation, md_escape, register_explainer  # noqa: E402
from interp.export import register_csv, table_to_csv  # noqa: E402


@register_csv(ConfidenceTrace)
def confidence_csv(result: ConfidenceTrace) -> bytes:
    """A confidence trace as CSV bytes, one row per token."""
    header = ["position", "token", "generated", "entropy_nats", "top1_token", "top1_prob",
              "token_prob", "low_confidence"]
    rows = [(i, token, i >= result.prompt_tokens, result.entropy[i], result.top1_tokens[i],
             result.top1_prob[i], result.token_prob[i], bool(result.low_confidence[i]))
            for i, token in enumerate(result.tokens)]
    return table_to_csv(header, rows)


@register_explainer(ConfidenceTrace)
def explain_confidence(result: ConfidenceTrace) -> Explanation:
    """The offline explanation of a confidence trace: means, the least certain token, low-confidence spans."""
    least = int(np.argmin(result.top1_prob))
    spans = [" ".join(result.tokens[a:b]) for a, b in result.low_spans]
    lines = [f"Over {len(result.tokens)} tokens the mean entropy is "
             f"{float(result.entropy.mean()):.2f} nats and the mean top-1 probability "
             f"{float(result.top1_prob.mean()):.2f}. The least certain prediction is before "
             f"token {least} ({md_escape(result.tokens[least])}), top-1 "
             f"{float(result.top1_prob[least]):.2f}.", "",
             f"{len(spans)} low-confidence run(s) (top-1 below {result.threshold:g})"
             + (": " + "; ".join(md_escape(s) for s in spans[:5]) if spans else "."), "",
             "**What this can and can't show**",
             "- Low confidence is not an error: many continuations are plausible after a "
             "comma. High confidence is not correctness: a model can be sure and wrong.",
             "- Probabilities come from the softmax and are not calibrated: a top-1 of 0.9 "
             "need not be right nine times in ten."]
    facts = {"model": result.model_name, "n_tokens": len(result.tokens),
             "mean_entropy": float(result.entropy.mean()),
             "mean_top1": float(result.top1_prob.mean()), "threshold": result.threshold,
             "low_spans": spans, "generated_tokens": len(result.tokens) - result.prompt_tokens}
    return Explanation(title="Confidence along the text", markdown="\n".join(lines), facts=facts)


@register_csv(ConsistencyResult)
def consistency_csv(result: ConsistencyResult) -> bytes:
    """A consistency result as CSV bytes, one row per rewrite."""
    return table_to_csv(["rewrite", "answer", "answer_prob", "top1_token", "top1_prob"], [
        (r, result.answer, p, t, q) for r, p, t, q in zip(
            result.rewrites, result.answer_prob.tolist(), result.top1_tokens,
            result.top1_prob.tolist(), strict=True)])


@register_explainer(ConsistencyResult)
def explain_consistency(result: ConsistencyResult) -> Explanation:
    """The offline explanation of a consistency result: the answer's lowest and highest probability."""
    low, high = int(np.argmin(result.answer_prob)), int(np.argmax(result.answer_prob))
    lines = [f"P({md_escape(result.answer)}) ranges from {result.answer_prob[low]:.3f} "
             f"(rewrite {low + 1}: {md_escape(result.rewrites[low])}) to "
             f"{result.answer_prob[high]:.3f} (rewrite {high + 1}), a spread of "
             f"{result.spread:.3f} over {len(result.rewrites)} rewrites.", "",
             "**What this can and can't show**",
             "- Rewrites that change the meaning (not only the wording) should change the "
             "answer; judge each rewrite before reading a drop as inconsistency."]
    facts = {"model": result.model_name, "answer": result.answer,
             "answer_prob": dict(zip(result.rewrites, result.answer_prob.tolist(), strict=True)),
             "spread": result.spread}
    return Explanation(title="Consistency under rewrites", markdown="\n".join(lines), facts=facts)


@register_csv(FailureCatalogueResult)
def catalogue_csv(result: FailureCatalogueResult) -> bytes:
    """The failure catalogue as CSV bytes, one row per case."""
    return table_to_csv(["case", "kind", "prompt", "continuation", "top1_token", "top1_prob",
                         "tripped", "verdict"], [
        (o.case.name, o.case.kind, o.case.prompt, o.continuation, o.top1_token, o.top1_prob,
         o.failed, o.verdict) for o in result.outcomes])


@register_explainer(FailureCatalogueResult)
def explain_catalogue(result: FailureCatalogueResult) -> Explanation:
    """The offline explanation of the failure catalogue: which cases tripped and why."""
    tripped = [o for o in result.outcomes if o.failed]
    lines = [f"{len(tripped)} of {len(result.outcomes)} cases tripped the model.", ""]
    lines += [f"- **{md_escape(o.case.name)}** ({o.case.kind}): {md_escape(o.verdict)}"
              for o in result.outcomes]
    lines += ["", "**What this can and can't show**",
              "- Each case is one prompt run greedily: it shows that a failure can happen, not "
              "how often. Small or synthetic models fail most of these by design."]
    facts = {"model": result.model_name,
             "cases": [{"name": o.case.name, "kind": o.case.kind, "tripped": o.failed,
                        "top1_token": o.top1_token, "top1_prob": o.top1_prob,
                        "measures": dict(o.measures)} for o in result.outcomes]}
    return Explanation(title="Failure cases", markdown="\n".join(lines), facts=facts)
