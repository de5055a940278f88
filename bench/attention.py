"""The Attention page's costs on the GPT-2-small-shaped model with a 64-token prompt.

Peer: one plain forward pass of the same 64 tokens (`model.logits`), measured in the same run,
since that is what the page cannot avoid. Targets: patterns plus every head score within 3
forward passes (ours runs two: the prompt, and the 49-token repeated random sequence); the
page's figures for the 12 x 12 grid (built and serialized to JSON, as Streamlit sends them) in
under 1 s. Each row prints its time as a multiple of one forward pass.

Torch runs 1 thread unless BENCH_TORCH_THREADS says otherwise (see bench/patching.py: on a
shared 2-core machine two threads contending made a forward pass ~10x slower).
"""

from __future__ import annotations

import os

import torch

from bench.harness import Entry, best_time, entry, small_gpt2_dir

N_TOKENS = 64
PASSES_TARGET = 3.0
FIGURES_TARGET_S = 1.0
TEXT = ("When Mary and John went to the store, John gave a drink to Mary because she was "
        "thirsty after the long walk home from the market. ")


def prompt_of(model, n_tokens: int) -> str:
    """The longest run of words from TEXT (repeated) that is at most `n_tokens` with BOS."""
    words = (TEXT * 8).split()
    for count in range(len(words), 0, -1):
        text = " ".join(words[:count])
        if model.to_tokens(text).shape[1] <= n_tokens:
            return text
    raise ValueError("no prompt short enough")


def page_figures(result, scores) -> None:
    """Every figure the page draws for one side, serialized as Streamlit does."""
    from interp.attention import attention_rollout, head_score_table
    from interp.figures import figure_for

    shown = [figure_for(result, view=view, layer=5, head=3)
             for view in ("grid", "layer", "head", "lines", "from_token", "to_token")]
    shown += [figure_for(scores, kind="induction", threshold=0.3),
              figure_for(attention_rollout(result), layer=5)]
    for item in shown:
        item.figure.to_json()
    figure_for(head_score_table(scores))


def run() -> list[Entry]:
    from interp.attention import run_attention
    from interp.figures import figure_for
    from interp.models import load_model

    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))
    model = load_model(str(small_gpt2_dir()), device="cpu")
    prompt = prompt_of(model, N_TOKENS)
    tokens = model.to_tokens(prompt)
    forward = best_time(lambda: model.logits(tokens), repeats=5)
    analysis = best_time(lambda: run_attention(model, prompt), repeats=5)
    run_result = run_attention(model, prompt)
    result, scores = run_result.patterns, run_result.scores
    grid = best_time(lambda: figure_for(result, view="grid").figure.to_json(), repeats=5)
    figures = best_time(lambda: page_figures(result, scores), repeats=3)
    peer = f"one forward pass, {tokens.shape[1]} tokens"

    def note(seconds: float, target: str) -> str:
        return f"= {seconds / forward:.2f} forward passes; {target}"

    return [
        entry(f"attention patterns + head scores, {tokens.shape[1]} tokens", analysis, peer,
              forward, note(analysis, f"target <= {PASSES_TARGET:g} passes: "
                                      f"{'met' if analysis / forward <= PASSES_TARGET else 'NOT met'}")),
        entry("12x12 grid figure (built + JSON)", grid, peer, forward,
              note(grid, f"{grid:.3f} s, target < {FIGURES_TARGET_S:g} s: "
                         f"{'met' if grid < FIGURES_TARGET_S else 'NOT met'}")),
        entry("all page figures, one side (12x12 model)", figures, peer, forward,
              note(figures, f"{figures:.3f} s, target < {FIGURES_TARGET_S:g} s: "
                            f"{'met' if figures < FIGURES_TARGET_S else 'NOT met'}")),
    ]
