"""The computational graph circuits are drawn on: senders, receivers and the edges between them.

GPT-2's residual stream at each position is a running sum, so every component reads the sum of
what earlier components wrote. Senders (writers) are the token embeddings, every head's output
(z through W_O) and every MLP's output; receivers (readers) are every head's query, key and value
input, every MLP's input, and the logits. An edge joins a sender to a receiver that comes after
it at the same position, so edges are per position, as in TransformerLens 4.3's
`enumerate_edges`; `EdgeGraph.valid` [sender, receiver] says which pairs exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from interp.errors import InvalidOptionError

READER_KINDS = ("q", "k", "v")


@dataclass(frozen=True)
class EdgeGraph:
    """Index arithmetic of the edge graph of a GPT-2 with `n_layers` x `n_heads`, `n_pos` tokens.

    Senders: 0 = embeddings, then per layer its heads and its MLP. Receivers: per layer the
    q inputs of its heads, their k inputs, their v inputs, then its MLP input; last the logits.
    """

    n_layers: int
    n_heads: int
    n_pos: int

    @property
    def n_senders(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_receivers(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    def head_sender(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_sender(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def senders_before(self, layer: int) -> int:
        """How many senders write before layer `layer`'s attention reads (embeddings included)."""
        return 1 + layer * (self.n_heads + 1)

    def head_receiver(self, layer: int, head: int, kind: str) -> int:
        return layer * (3 * self.n_heads + 1) + READER_KINDS.index(kind) * self.n_heads + head

    def mlp_receiver(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_receiver(self) -> int:
        return self.n_receivers - 1

    def attention_receivers(self, layer: int) -> slice:
        start = layer * (3 * self.n_heads + 1)
        return slice(start, start + 3 * self.n_heads)

    @cached_property
    def sender_names(self) -> tuple[str, ...]:
        names = ["embed"]
        for layer in range(self.n_layers):
            names += [f"L{layer}H{head}" for head in range(self.n_heads)] + [f"MLP{layer}"]
        return tuple(names)

    @cached_property
    def receiver_names(self) -> tuple[str, ...]:
        names = []
        for layer in range(self.n_layers):
            for kind in READER_KINDS:
                names += [f"L{layer}H{head}.{kind}" for head in range(self.n_heads)]
            names.append(f"MLP{layer}")
        return (*names, "logits")

    @cached_property
    def sender_layer(self) -> torch.Tensor:
        """The layer of each sender (-1 for the embeddings)."""
        layers = [-1] + [layer for layer in range(self.n_layers) for _ in range(self.n_heads + 1)]
        return torch.tensor(layers)

    @cached_property
    def sender_is_mlp(self) -> torch.Tensor:
        return torch.tensor([name.startswith("MLP") for name in self.sender_names])

    @cached_property
    def receiver_layer(self) -> torch.Tensor:
        """The layer of each receiver (n_layers for the logits)."""
        layers = [layer for layer in range(self.n_layers) for _ in range(3 * self.n_heads + 1)]
        return torch.tensor([*layers, self.n_layers])

    @cached_property
    def receiver_owner(self) -> torch.Tensor:
        """The sender each receiver's component is [receiver] (its head or MLP; -1 for the
        logits): what the receiver's input feeds."""
        owner = torch.full((self.n_receivers,), -1, dtype=torch.long)
        for layer in range(self.n_layers):
            for kind in READER_KINDS:
                for head in range(self.n_heads):
                    owner[self.head_receiver(layer, head, kind)] = self.head_sender(layer, head)
            owner[self.mlp_receiver(layer)] = self.mlp_sender(layer)
        return owner

    @cached_property
    def receiver_is_mlp(self) -> torch.Tensor:
        return torch.tensor([name.startswith("MLP") for name in self.receiver_names])

    @cached_property
    def valid(self) -> torch.Tensor:
        """[sender, receiver] bool: the sender writes before the receiver reads."""
        sender_layer = self.sender_layer[:, None]
        receiver_layer = self.receiver_layer[None, :]
        earlier = sender_layer < receiver_layer
        same_layer_into_mlp = ((sender_layer == receiver_layer) & ~self.sender_is_mlp[:, None]
                               & self.receiver_is_mlp[None, :])
        return earlier | same_layer_into_mlp

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum()) * self.n_pos

    @cached_property
    def receiver_component(self) -> tuple[str, ...]:
        """The component each receiver belongs to ("L0H3" for its q, k and v; "logits")."""
        return tuple(name.split(".")[0] for name in self.receiver_names)

    def sender_index(self, name: str) -> int:
        try:
            return self.sender_names.index(name)
        except ValueError:
            raise InvalidOptionError(
                f"Unknown component {name!r}: components are 'embed', heads such as 'L0H3' "
                f"(layers 0-{self.n_layers - 1}, heads 0-{self.n_heads - 1}) and MLPs such "
                "as 'MLP0'.") from None

    def edge_label(self, sender: int, receiver: int, position: int) -> str:
        return f"{self.sender_names[sender]} -> {self.receiver_names[receiver]} @ {position}"

    def components(self) -> tuple[str, ...]:
        """Every head and MLP (the nodes an ablation can remove), in layer order."""
        return self.sender_names[1:]
