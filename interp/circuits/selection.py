"""Choosing a circuit from edge scores: top-n edges, a score threshold, or greedy growth from the
logits back; then edges that can't lie on a path from the embeddings to the logits are pruned.

A circuit is a keep-mask over the edge graph [sender, receiver, pos]. A head's output at a
position reads its query there and its keys and values at every position up to it, so an edge
into a head's k or v at position p feeds that head's outputs at p and later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.circuits.graph import EdgeGraph
from interp.circuits.scores import EdgeScores
from interp.errors import InvalidOptionError, invalid_choice

SELECTIONS = ("top_n", "threshold", "greedy")


@dataclass(frozen=True)
class Circuit:
    """The edges kept [sender, receiver, pos] bool, how they were chosen, from which scores."""

    keep: torch.Tensor
    graph_shape: tuple[int, int, int]
    selection: str
    parameter: float

    @property
    def graph(self) -> EdgeGraph:
        return EdgeGraph(*self.graph_shape)

    @property
    def n_edges(self) -> int:
        return int(self.keep.sum())

    def components(self) -> tuple[str, ...]:
        """The heads and MLPs that send or receive a kept edge, in layer order."""
        graph = self.graph
        used: set[str] = set()
        senders, receivers, _ = torch.nonzero(self.keep, as_tuple=True)
        used.update(graph.sender_names[s] for s in senders.tolist())
        used.update(graph.receiver_component[r] for r in receivers.tolist())
        return tuple(name for name in graph.components() if name in used)


def receiver_feeds(graph: EdgeGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """(the sender each receiver's component is, -1 for the logits; whether it is a k/v input)."""
    spread = torch.zeros(graph.n_receivers, dtype=torch.bool)
    for layer in range(graph.n_layers):
        for head in range(graph.n_heads):
            for kind in ("k", "v"):
                spread[graph.head_receiver(layer, head, kind)] = True
    return graph.receiver_owner, spread


def prune_dead(keep: torch.Tensor, graph: EdgeGraph) -> torch.Tensor:
    """The kept edges that lie on some path from the embeddings to the logits' last position."""
    keep = keep & graph.valid[:, :, None]
    owner, spread = receiver_feeds(graph)
    n_pos = graph.n_pos
    alive = torch.zeros((graph.n_senders, n_pos), dtype=torch.bool)  # reached from the embeddings
    alive[0] = True
    for sender in range(1, graph.n_senders):
        fed = keep[:, owner == sender] & alive[:, None, :]  # [sender, its receivers, pos]
        at = fed.any(0)  # [its receivers, pos]
        reached = torch.zeros(n_pos, dtype=torch.bool)
        for row, is_spread in zip(at, spread[owner == sender].tolist(), strict=True):
            reached |= row.int().cummax(0).values.bool() if is_spread else row
        alive[sender] = reached
    useful = torch.zeros((graph.n_receivers, n_pos), dtype=torch.bool)  # reaches the logits
    useful[graph.logits_receiver, -1] = True
    sender_useful = torch.zeros((graph.n_senders, n_pos), dtype=torch.bool)
    for sender in range(graph.n_senders - 1, -1, -1):
        sender_useful[sender] = (keep[sender] & useful).any(0)
        mine = torch.nonzero(owner == sender).flatten().tolist()
        for receiver in mine:
            if spread[receiver]:  # a key/value at p feeds the head's outputs at p and later
                useful[receiver] = sender_useful[sender].flip(0).int().cummax(0).values.flip(0).bool()
            else:
                useful[receiver] = sender_useful[sender]
    return keep & alive[:, None, :] & useful[None, :, :]


def greedy_keep(scores: EdgeScores, n_edges: int) -> torch.Tensor:
    """Grow from the logits back: add the largest-|score| edge into a component already in the
    circuit (at a position it feeds), `n_edges` times."""
    graph = scores.graph
    owner, spread = receiver_feeds(graph)
    magnitude = torch.where(graph.valid[:, :, None], scores.scores.abs(), -1.0)
    keep = torch.zeros_like(magnitude, dtype=torch.bool)
    open_receivers = torch.zeros((graph.n_receivers, graph.n_pos), dtype=torch.bool)
    open_receivers[graph.logits_receiver, -1] = True
    for _ in range(n_edges):
        candidates = torch.where(open_receivers[None] & ~keep, magnitude, -1.0)
        best = int(torch.argmax(candidates))
        if float(candidates.flatten()[best]) < 0:
            break
        s, rest = divmod(best, graph.n_receivers * graph.n_pos)
        _, p = divmod(rest, graph.n_pos)
        keep.view(-1)[best] = True
        mine = owner == s
        if s > 0:
            open_receivers[mine & ~spread, p] = True
            open_receivers[mine & spread, :p + 1] = True
    return keep


def select_circuit(scores: EdgeScores, selection: str = "top_n", value: float = 100,
                   prune: bool = True) -> Circuit:
    """A circuit from `scores`: the `value` edges of largest |score| ("top_n"), the edges with
    |score| >= `value` ("threshold"), or `value` edges grown from the logits ("greedy")."""
    if selection not in SELECTIONS:
        raise invalid_choice("circuit selection", selection, SELECTIONS)
    graph = scores.graph
    valid = graph.valid[:, :, None].expand_as(scores.scores)
    if selection == "threshold":
        keep = valid & (scores.scores.abs() >= float(value))
    else:
        if value < 0 or int(value) != value:
            raise InvalidOptionError(f"Give a whole number of edges, at least 0; got {value!r}.")
        if selection == "greedy":
            keep = greedy_keep(scores, int(value))
        else:
            keep = torch.zeros_like(valid)
            for s, r, p, _ in scores.ranked(int(value)):
                keep[s, r, p] = True
    if prune:
        keep = prune_dead(keep, graph)
    return Circuit(keep, scores.graph_shape, selection, float(value))


def top_fraction_keeps(scores: EdgeScores, fractions, prune: bool = False) -> torch.Tensor:
    """Keep-masks [size, sender, receiver, pos] of the top `fraction` of edges by |score|."""
    ranked = scores.ranked()
    keeps = torch.zeros((len(fractions), *scores.scores.shape), dtype=torch.bool)
    order = torch.tensor([[s, r, p] for s, r, p, _ in ranked], dtype=torch.long)
    for row, fraction in enumerate(fractions):
        n = max(1, round(fraction * len(ranked)))
        chosen = order[:n]
        keeps[row, chosen[:, 0], chosen[:, 1], chosen[:, 2]] = True
        if prune:
            keeps[row] = prune_dead(keeps[row], scores.graph)
    return keeps


def jaccard(first: Circuit, second: Circuit) -> float:
    """|A and B| / |A or B| of two circuits' edges (1 = the same edges)."""
    union = int((first.keep | second.keep).sum())
    return int((first.keep & second.keep).sum()) / union if union else 1.0
