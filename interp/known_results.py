"""Known results on real GPT-2 small: does the Workbench reproduce what the papers report?

Each check runs one published experiment with the setting its source states and compares our
number with the published finding under a pass rule fixed here, before any run (never tuned to
a result). Findings the sources report only as figures or for larger models are shown beside
their source without a pass rule. On any other model (a random GPT-2-small-shaped one, the demo
model) the checks still run end to end when forced, and report "differs" with the reason: that
is how the command and its table are tested on machines without GPT-2.

Run: `python -m interp.known_results [--model gpt2] [--force]`.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from interp.errors import InterpError, InvalidOptionError

GPT2_SMALL_IDS = ("gpt2", "openai-community/gpt2")
GPT2_SMALL_SHAPE = {"n_layers": 12, "n_heads": 12, "d_model": 768, "d_vocab": 50257,
                    "n_ctx": 1024}
PASSED, DIFFERS, SHOWN, FAILED = "pass", "differs", "shown", "error"

# Wang et al. (2022), "Interpretability in the Wild", templates of their IOI distribution
# (github.com/redwoodresearch/Easy-Transformer, ioi_dataset.py; a subset whose names are the only
# words that vary), written here with {A}/{B} for the two names and {S} for the subject.
WANG_IOI_TEMPLATES = (
    "Then, {B} and {A} went to the {place}. {S} gave a {obj} to",
    "Then, {B} and {A} had a lot of fun at the {place}. {S} gave a {obj} to",
    "Then, {B} and {A} were working at the {place}. {S} decided to give a {obj} to",
    "After {B} and {A} went to the {place}, {S} gave a {obj} to",
    "While {B} and {A} were working at the {place}, {S} gave a {obj} to",
    "While {B} and {A} were commuting to the {place}, {S} gave a {obj} to",
    "Afterwards, {B} and {A} went to the {place}. {S} gave a {obj} to",
    "Friends {B} and {A} found a {obj} at the {place}. {S} gave it to",
)
IOI_PROMPTS_PER_TEMPLATE = 8
IOI_LOGIT_DIFF_RANGE = (1.75, 7.0)  # "of their order": within a factor 2 of their 3.5
NAME_MOVERS = ((9, 9), (9, 6), (10, 0))
S_INHIBITION = ((7, 3), (7, 9), (8, 6), (8, 10))
INDUCTION_HEADS = ((5, 1), (5, 5), (6, 9), (7, 2), (7, 10))
PREVIOUS_TOKEN_HEADS = ((4, 11), (2, 2))
DUPLICATE_TOKEN_HEADS = ((0, 1), (3, 0))
# A head "is among the top" when it ranks within this many heads of the 144.
TOP_NAME_MOVERS, TOP_S_INHIBITION, TOP_INDUCTION, TOP_PREVIOUS, TOP_DUPLICATE = 5, 6, 10, 5, 5
INDUCTION_REPEAT_LENGTH = 50  # TransformerLens' induction-head demo: 50 random tokens, twice
FACT_PROMPT, FACT_SUBJECT, FACT_ANSWER = ("The Eiffel Tower is located in the city of",
                                          "The Eiffel Tower", " Paris")
CAUSAL_TRACE_NOISE = 3.0  # Meng et al.: noise of 3x the embeddings' standard deviation
LENS_PROMPT, LENS_ANSWER = FACT_PROMPT, FACT_ANSWER

NAME_MOVER_FINDING = "Name movers 9.9, 9.6, 10.0 lead the direct path to the logits"
S_INHIBITION_FINDING = "S-inhibition 7.3, 7.9, 8.6, 8.10 lead the path to the name movers"

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class KnownResult:
    """One row: the published finding, its source and setting, our number, and the verdict
    (`pass`, `differs`, `shown` for findings without a pass rule, `error`) with its reason."""

    finding: str
    source: str
    setting: str
    ours: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class KnownResultsReport:
    model_name: str
    is_gpt2_small: bool
    identity: str
    weights_sha256: str
    rows: tuple[KnownResult, ...]
    seconds: float

    def table(self) -> str:
        """The report as a Markdown table, one row per check."""
        lines = [f"Known results on {self.model_name} ({self.identity}; weights sha256 "
                 f"{self.weights_sha256[:16]}...), {self.seconds:.0f} s", "",
                 "| finding | source | setting | ours | verdict | why |",
                 "|---|---|---|---|---|---|"]
        for row in self.rows:
            cells = (row.finding, row.source, row.setting, row.ours, row.verdict, row.reason)
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return "\n".join(lines)


def weights_sha256(model) -> str:
    """SHA-256 over the model's parameters (names, shapes and float32 bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.bridge.original_model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gpt2_small_identity(model) -> tuple[bool, str]:
    """(is it GPT-2 small?, why): loaded from the Hub id `gpt2` with GPT-2 small's shape.
    The official weights' hash could not be fetched where this was written, so the report
    prints the weights' hash instead of checking it."""
    info = model.info
    shape = {key: getattr(info, key) for key in GPT2_SMALL_SHAPE}
    if model.name not in GPT2_SMALL_IDS:
        return False, (f"{model.name} is not GPT-2 small (Hugging Face id "
                       f"{' or '.join(GPT2_SMALL_IDS)})")
    if shape != GPT2_SMALL_SHAPE:
        return False, f"{model.name} does not have GPT-2 small's shape ({shape})"
    return True, "Hugging Face id gpt2, GPT-2 small's shape"


def rank_of(scores: torch.Tensor, head: tuple[int, int]) -> int:
    """1-based rank of `head` among all heads by score, highest first (NaN last)."""
    flat = torch.nan_to_num(scores.float(), nan=-torch.inf).flatten()
    order = torch.argsort(flat, descending=True, stable=True).tolist()
    return order.index(head[0] * scores.shape[1] + head[1]) + 1


def absent_heads(shape: Sequence[int], heads: Sequence[tuple[int, int]]) -> list[str]:
    """Labels of `heads` outside a [layer, head] grid of `shape`."""
    return [f"{layer}.{head}" for layer, head in heads
            if not (0 <= layer < shape[0] and 0 <= head < shape[1])]


def heads_among_top(scores: torch.Tensor, heads: Sequence[tuple[int, int]], top: int,
                    what: str, real: bool) -> tuple[str, str, str]:
    """(ours, verdict, reason) for "every one of `heads` ranks within the top `top`"."""
    absent = absent_heads(scores.shape, heads)
    if absent:
        return "-", DIFFERS, f"this model has no head {', '.join(absent)}"
    ranks = {f"{layer}.{head}": rank_of(scores, (layer, head)) for layer, head in heads}
    ours = ", ".join(f"{label} #{rank}" for label, rank in ranks.items())
    missing = [label for label, rank in ranks.items() if rank > top]
    if not missing:
        return ours, PASSED, f"all within the top {top} {what}"
    reason = f"{', '.join(missing)} not within the top {top} {what}"
    return ours, DIFFERS, reason if real else reason + " (not real GPT-2 small)"


def verdict_note(verdict: str, reason: str, real: bool) -> tuple[str, str]:
    """A verdict and its reason; a pass on a model that is not real GPT-2 small becomes "differs"."""
    if verdict == PASSED and not real:
        return DIFFERS, reason + ", but this is not real GPT-2 small"
    return verdict, reason


def check_head_scores(model, real: bool) -> list[KnownResult]:
    """The induction, previous-token and duplicate-token head checks."""
    from interp.attention import head_scores

    # A model with a shorter window than GPT-2 gets the longest repeat that fits.
    repeat_length = min(INDUCTION_REPEAT_LENGTH, (model.info.n_ctx - 1) // 2)
    scores = head_scores(model, repeat_length=repeat_length, seed=0)
    setting = (f"{repeat_length} random tokens repeated once after BOS, seed 0; "
               "attention from each second-copy token")
    rows = []
    for finding, source, kind, heads, top, where in (
        ("Induction heads 5.1, 5.5, 6.9, 7.2, 7.10", "Olsson et al. 2022; TransformerLens' "
         "induction-head demo", "induction", INDUCTION_HEADS, TOP_INDUCTION,
         "to the token after its first copy"),
        ("Previous-token heads 4.11 and 2.2", "Olsson et al. 2022; TransformerLens' demo",
         "previous_token", PREVIOUS_TOKEN_HEADS, TOP_PREVIOUS, "to the previous token"),
        ("Duplicate-token heads 0.1 and 3.0", "Wang et al. 2022", "duplicate_token",
         DUPLICATE_TOKEN_HEADS, TOP_DUPLICATE, "to its first copy"),
    ):
        ours, verdict, reason = heads_among_top(scores.of(kind), heads, top, f"{kind} scores",
                                                real)
        rows.append(KnownResult(finding, source, f"{setting} {where}", ours, verdict, reason))
    return rows


def ioi_tasks(model, corruption: str):
    """One IOI task per template, with the given corruption."""
    from interp.patching_tasks import ioi_task

    return [ioi_task(model, n_prompts=IOI_PROMPTS_PER_TEMPLATE, corruption=corruption, seed=index,
                     order="both", template=template)
            for index, template in enumerate(WANG_IOI_TEMPLATES)]


def clean_logit_diff(model, tasks) -> float:
    """Mean logit(IO) - logit(S) at the last position over every template's prompts."""
    from interp.patching.results import metric_from_logits
    from interp.patching_tasks import task_inputs

    values = []
    for task in tasks:
        inputs, metric = task_inputs(model, task, "logit_diff")
        logits = model.logits(inputs.clean_tokens)[:, -1].float().cpu()
        values.append(float(metric_from_logits(metric, logits, None).mean()))
    return sum(values) / len(values)


def check_ioi(model, real: bool, progress: Progress | None) -> list[KnownResult]:
    """The IOI checks: the logit difference, name movers and S-inhibition heads by path patching."""
    from interp.patching import patch_path
    from interp.patching_tasks import task_inputs

    source = "Wang et al. 2022"
    swap_tasks = ioi_tasks(model, "swap")
    value = clean_logit_diff(model, swap_tasks)
    low, high = IOI_LOGIT_DIFF_RANGE
    verdict = PASSED if low <= value <= high else DIFFERS
    reason = (f"within [{low:g}, {high:g}] (theirs about 3.5)" if verdict == PASSED
              else f"outside [{low:g}, {high:g}] (theirs about 3.5)")
    rows = [KnownResult(
        "IOI clean logit difference positive, about 3.5", source,
        f"{len(WANG_IOI_TEMPLATES)} of their templates x {IOI_PROMPTS_PER_TEMPLATE} prompts, "
        "ABBA and BABA", f"{value:.2f}", *verdict_note(verdict, reason, real))]
    grid = (model.info.n_layers, model.info.n_heads)
    absent = absent_heads(grid, NAME_MOVERS + S_INHIBITION)
    if absent:
        reason = f"this model has no head {', '.join(absent)}"
        return rows + [KnownResult(finding, source, "path patching", "-", DIFFERS, reason)
                       for finding in (NAME_MOVER_FINDING, S_INHIBITION_FINDING)]
    if progress:
        progress(0.55, "IOI: path patching to the logits ...")
    abc = ioi_tasks(model, "third_name")[0]
    inputs, metric = task_inputs(model, abc, "logit_diff")
    setting = (f"first template, {IOI_PROMPTS_PER_TEMPLATE} prompts; each sender head's "
               "output from the ABC run (noising), other heads frozen")
    to_logits = patch_path(model, inputs, metric, receivers="resid_final", direction="noising")
    ours, verdict, reason = heads_among_top(to_logits.effect, NAME_MOVERS, TOP_NAME_MOVERS,
                                            "direct effects on the logit difference", real)
    rows.append(KnownResult(NAME_MOVER_FINDING,
                            source, setting + ", path to the logits", ours, verdict, reason))
    if progress:
        progress(0.75, "IOI: path patching to the name movers' queries ...")
    to_movers = patch_path(model, inputs, metric, receivers=list(NAME_MOVERS),
                           receiver_input="q", direction="noising")
    ours, verdict, reason = heads_among_top(to_movers.effect, S_INHIBITION, TOP_S_INHIBITION,
                                            "senders to the name movers' queries", real)
    rows.append(KnownResult(S_INHIBITION_FINDING,
                            source, setting + ", path to 9.9, 9.6, 10.0's queries", ours,
                            verdict, reason))
    return rows


def check_causal_tracing(model) -> KnownResult:
    """Causal tracing of a fact: noise on the subject, restored per layer at its last token."""
    from interp.patching import patch
    from interp.patching_tasks import fact_task, task_inputs

    task = fact_task(model, prompt=FACT_PROMPT, answer=FACT_ANSWER, corruption="noise",
                     subject=FACT_SUBJECT, noise_scale=CAUSAL_TRACE_NOISE)
    inputs, metric = task_inputs(model, task, "correct_prob")
    result = patch(model, inputs, metric, site="resid_pre", granularity="layer_pos",
                   direction="denoising")
    last_subject = max(task.noise_positions or (0,))  # a noise task: positions are set
    restored = result.effect[:, last_subject]
    best = int(torch.nan_to_num(restored, nan=-torch.inf).argmax())
    profile = ", ".join(f"L{layer} {float(v):.2f}" for layer, v in enumerate(restored))
    return KnownResult(
        "Restoring the last subject token's state in middle layers restores the fact",
        "Meng et al. 2022 (ROME), causal tracing",
        f"{FACT_PROMPT!r} -> {FACT_ANSWER!r}; noise {CAUSAL_TRACE_NOISE:g}x the embeddings' "
        "spread on the subject; resid_pre restored per layer at the last subject token",
        f"peak at layer {best} of {model.info.n_layers} ({profile})", SHOWN,
        "shown without a pass rule: the source reports it as figures, mostly for GPT-2 XL")


def check_logit_lens(model) -> KnownResult:
    """The answer's rank at each layer through the logit lens."""
    from interp.logit_lens import logit_lens, resolve_token

    answer = resolve_token(model, LENS_ANSWER, "answer")
    lens = logit_lens(model, LENS_PROMPT, k=1, track=(answer,))
    ranks = lens.ranks_of(answer)[:, -1].tolist()
    shown = ", ".join(f"{label} {int(rank) + 1}" for label, rank in zip(lens.layers, ranks,
                                                                          strict=True))
    return KnownResult(
        "The answer's rank falls through the layers, top-1 only near the end",
        "nostalgebraist 2020, 'interpreting GPT: the logit lens'",
        f"{LENS_PROMPT!r}, rank of {LENS_ANSWER!r} at the last position after each layer",
        shown, SHOWN, "shown without a pass rule: the source shows it as figures")


def checked_run(check: Callable[[], list[KnownResult] | KnownResult], finding: str,
                source: str) -> list[KnownResult]:
    """A check's rows, or one `error` row saying what went wrong (the other checks still run)."""
    try:
        rows = check()
    except InterpError as error:
        return [KnownResult(finding, source, "", "", FAILED, str(error))]
    return rows if isinstance(rows, list) else [rows]


def known_results(model, force: bool = False, progress: Progress | None = None) -> KnownResultsReport:
    """Run every check on `model`. Refuses a model that is not GPT-2 small unless `force`."""
    real, identity = gpt2_small_identity(model)
    if not real and not force:
        raise InvalidOptionError(
            f"Known results are checks on real GPT-2 small: {identity}. Load GPT-2 small, or "
            "pass force=True (--force) to run them anyway; every row will then say 'differs'.")
    started = time.perf_counter()
    say = progress or (lambda fraction, text: None)
    say(0.0, "Head scores on repeated random tokens ...")
    rows = checked_run(lambda: check_head_scores(model, real), "Head scores", "Olsson et al.")
    say(0.2, "IOI on Wang et al.'s templates ...")
    rows += checked_run(lambda: check_ioi(model, real, progress), "IOI", "Wang et al. 2022")
    say(0.9, "Causal tracing and the logit lens ...")
    rows += checked_run(lambda: check_causal_tracing(model), "Causal tracing", "Meng et al.")
    rows += checked_run(lambda: check_logit_lens(model), "Logit lens", "nostalgebraist 2020")
    say(1.0, "Done")
    return KnownResultsReport(model.name, real, identity, weights_sha256(model), tuple(rows),
                              time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run every check on the model and print the table; exit status 0, 1 on an error, 2 when the model is refused."""
    parser = argparse.ArgumentParser(description="Reproduce published findings on GPT-2 small.")
    parser.add_argument("--model", default="gpt2", help="Hugging Face id or local folder")
    parser.add_argument("--force", action="store_true",
                        help="run on a model that is not GPT-2 small (every row then differs)")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from interp.models import load_model

    try:
        model = load_model(args.model)
        real, identity = gpt2_small_identity(model)
        if not real and not args.force:
            print(f"Refused: {identity}. Known results are checks on real GPT-2 small; pass "
                  "--force to run them anyway (every row will say 'differs').")
            return 2
        with tqdm(total=100, desc="known results", unit="%") as bar:
            def progress(fraction: float, text: str) -> None:
                bar.set_postfix_str(text)
                bar.update(round(fraction * 100) - bar.n)
            report = known_results(model, force=args.force, progress=progress)
    except InterpError as error:
        print(f"Error: {error}")
        return 1
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
