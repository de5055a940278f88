"""Attribution methods on the GPT-2-small-shaped model, 20-token prompt: cost in forward passes.

Each method is timed with `attribute` (median of 3 after a warm-up) and divided by the time of
one plain forward pass of the prompt measured right before and after it (the mean of the two
medians), so the figures are multiples of a forward pass and stay comparable under load. Beside each, its floor, measured the same way:
  gradient x input, LRP:  one forward and one backward pass of plain autograd on the embeddings;
  integrated gradients:   the same for the 50 interpolated inputs in one batch (the bare IG
                          computation, no captum);
  SHAP (500 evaluations): the very masked inputs shap asked for, run as bare batched forward
                          passes of the same batch size (shap's own overhead is the difference).
Targets: gradient x input and LRP <= 3 forward passes; IG 50 steps <= 40; SHAP within 1.25x of
its floor. One torch thread (BENCH_TORCH_THREADS), for the reason bench/patching.py gives.
"""

from __future__ import annotations

import torch

from bench.harness import (
    Entry,
    bench_prompt_tokens,
    bench_threads,
    best_time,
    entry,
    small_gpt2_dir,
)

IG_STEPS = 50
SHAP_EVALS = 500
FORWARD_TARGET = {"gradient_x_input": 3.0, "lrp": 3.0, "integrated_gradients": 40.0}
SHAP_OF_FLOOR = 1.25


def embedding_backward(model, ids: torch.Tensor, target_id: int) -> None:
    """One forward and backward pass of plain autograd from the embeddings to the target logit."""
    hf = model.bridge.original_model
    with model.exclusive(), torch.enable_grad():
        embeddings = hf.get_input_embeddings()(ids).detach().requires_grad_(True)
        hf(inputs_embeds=embeddings).logits[:, -1, target_id].sum().backward()


def interpolated_backward(model, ids: torch.Tensor, target_id: int, steps: int) -> None:
    """The bare IG computation: `steps` scaled embeddings in one batch, forward and backward."""
    hf = model.bridge.original_model
    with model.exclusive(), torch.enable_grad():
        embeddings = hf.get_input_embeddings()(ids).detach()
        alphas = torch.linspace(0, 1, steps).view(-1, 1, 1)
        path = (alphas * embeddings).requires_grad_(True)
        hf(inputs_embeds=path).logits[:, -1, target_id].sum().backward()


def bare_forward_passes(model, rows: torch.Tensor, batch_size: int, target_id: int) -> None:
    with model.exclusive() as bridge, torch.no_grad():
        for start in range(0, rows.shape[0], batch_size):
            bridge(rows[start:start + batch_size])[:, -1, target_id]


def run() -> list[Entry]:
    with bench_threads() as threads:
        return measure(threads)


def measure(threads: int) -> list[Entry]:
    from interp.attribution import attribute, resolve_target
    from interp.models import load_model

    model = load_model(str(small_gpt2_dir()), device="cpu")
    ids = bench_prompt_tokens(model, 20)
    token_ids = tuple(ids[0].tolist())
    target = resolve_target(model, token_ids, None)
    entries = []

    def forward_time() -> float:
        return best_time(lambda: model.logits(ids), repeats=5)

    forward_s = forward_time()
    print(f"one forward pass, 20 tokens, {threads} thread(s): {forward_s * 1e3:.1f} ms", flush=True)

    def report(name: str, ours_s: float, floor_s: float, floor_name: str,
               max_passes: float | None = None, max_of_floor: float | None = None) -> None:
        nonlocal forward_s
        before, forward_s = forward_s, forward_time()
        unit = (before + forward_s) / 2  # the forward pass around this measurement
        passes, of_floor = ours_s / unit, ours_s / floor_s
        if max_passes is not None:
            verdict = f"target <= {max_passes:g} forward passes: {'OK' if passes <= max_passes else 'MISSED'}"
        else:
            verdict = f"target <= {max_of_floor:g}x floor: {'OK' if of_floor <= max_of_floor else 'MISSED'}"
        note = (f"{passes:.1f} forward passes of {unit * 1e3:.0f} ms (floor {floor_s / unit:.1f}: "
                f"{floor_name}); ours {of_floor:.2f}x floor; {verdict}")
        print(f"{name}: {note}", flush=True)
        entries.append(entry(f"attribution {name}, {threads} thread(s)", ours_s, floor_name,
                             floor_s, note))

    backward_s = best_time(lambda: embedding_backward(model, ids, target.token_id))
    for method in ("gradient_x_input", "lrp"):
        ours_s = best_time(lambda method=method: attribute(model, token_ids, method, target=target))
        report(method, ours_s, backward_s, "autograd forward+backward",
               max_passes=FORWARD_TARGET[method])

    ig_floor_s = best_time(lambda: interpolated_backward(model, ids, target.token_id, IG_STEPS))
    ig_s = best_time(lambda: attribute(model, token_ids, "integrated_gradients", target=target,
                                       n_steps=IG_STEPS))
    report(f"integrated_gradients {IG_STEPS} steps", ig_s, ig_floor_s,
           f"{IG_STEPS} interpolated inputs, one batched forward+backward",
           max_passes=FORWARD_TARGET["integrated_gradients"])

    result = attribute(model, token_ids, "shap", target=target, max_evals=SHAP_EVALS,
                       keep_masked_inputs=True)  # warm-up, and the masked inputs for the floor
    rows, batch_size = result.extras["masked_inputs"], result.options["batch_size"]
    shap_s = best_time(lambda: attribute(model, token_ids, "shap", target=target,
                                         max_evals=SHAP_EVALS), warmup=0)
    floor_s = best_time(lambda: bare_forward_passes(model, rows, batch_size, target.token_id))
    report(f"shap partition {SHAP_EVALS} evals ({rows.shape[0]} masked inputs)", shap_s, floor_s,
           f"the same {rows.shape[0]} masked inputs, bare batched forward passes",
           max_of_floor=SHAP_OF_FLOOR)
    return entries
