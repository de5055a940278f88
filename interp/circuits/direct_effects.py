"""The direct effect of each of a circuit's components on the task's metric direction: the
logit lens page's direct logit attribution (DLA) at the answer position, averaged over pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.circuits.data import CircuitData
from interp.circuits.selection import Circuit
from interp.export import register_csv, table_to_csv
from interp.logit_lens import dla_of_checked
from interp.validation import CheckedPrompt

HEADER = ("component", "direct effect")


@dataclass(frozen=True)
class ComponentEffects:
    """Rows (component, mean direct effect on the metric) for a circuit's heads and MLPs, in
    layer order; `metric_label` names the direction (logit difference or correct logit)."""

    model_name: str
    task_name: str
    metric_label: str
    n_pairs: int
    rows: tuple[tuple[str, float], ...]

    @property
    def header(self) -> tuple[str, ...]:
        return HEADER


def dla_label(component: str) -> str:
    """The DLA label of a circuit component ("MLP3" is DLA's "MLP 3"; heads match)."""
    return f"MLP {component[3:]}" if component.startswith("MLP") else component


def component_direct_effects(model, circuit: Circuit, data: CircuitData) -> ComponentEffects:
    """Each circuit component's direct effect on logit[correct] - logit[wrong] (or the correct
    logit, for one-answer metrics) at the last position of each clean prompt, averaged over
    `data`'s pairs: one DLA pass per pair, through the final LayerNorm's frozen scale."""
    total: torch.Tensor | None = None
    labels: tuple[str, ...] = ()
    wrong_ids = data.metric.wrong_ids
    for pair in range(data.n_pairs):
        ids = tuple(int(t) for t in data.clean_tokens[pair].tolist())
        checked = CheckedPrompt(text=model.tokenizer.decode(list(ids)), token_ids=ids,
                                tokens=tuple(model.display_tokens(list(ids))),
                                n_ctx=model.info.n_ctx, notes=())
        dla = dla_of_checked(model, checked, data.metric.correct_ids[pair],
                             None if wrong_ids is None else wrong_ids[pair])
        last = dla.contributions[-1]
        total = last if total is None else total + last
        labels = dla.labels
    assert total is not None  # a task has at least one pair
    mean = total / data.n_pairs
    index = {label: i for i, label in enumerate(labels)}
    rows = tuple((name, float(mean[index[dla_label(name)]])) for name in circuit.components())
    metric = ("logit(correct) - logit(wrong)" if wrong_ids is not None else "logit(correct)")
    return ComponentEffects(data.model_name, data.task_name, metric, data.n_pairs, rows)


@register_csv(ComponentEffects)
def component_effects_csv(result: ComponentEffects) -> bytes:
    """CSV of the components and their direct effects."""
    return table_to_csv(result.header, result.rows)
