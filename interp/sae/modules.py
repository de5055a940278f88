"""The sparse autoencoder: one module for the four activation rules SAELens ships.

An SAE writes an activation x (d_in numbers) as a sparse, non-negative combination of d_sae
learned directions: f = act((pre(x) - b_dec) W_enc + b_enc), x_hat = post(f W_dec + b_dec).
`act` is ReLU ("relu", trained with an L1 penalty), the k largest ("topk"), or a per-feature
threshold ("jumprelu", which is also how a BatchTopK SAE is used after training). `pre`/`post`
are the input preprocessing its config declares (centring over d_model, layer norm, a constant
norm), undone on the way out so the reconstruction lives in the model's own space.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from interp.errors import invalid_choice

ARCHITECTURES = ("relu", "topk", "jumprelu")
NORMALIZATIONS = ("none", "layer_norm", "constant_norm_rescale")
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class SAEConfig:
    """What an SAE is: its shape, activation rule, where it reads and how its input is prepared.

    `centre_input`: subtract each token's mean over d_model before encoding and add it back
    after decoding (SAEs trained on TransformerLens' centred residual stream need it on raw
    Hugging Face activations; the LayerNorms that read the stream ignore that mean anyway).
    `k` is used by "topk"; "jumprelu" keeps its thresholds as a buffer of the module.
    """

    d_in: int
    d_sae: int
    hook_name: str
    architecture: str = "relu"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    centre_input: bool = False
    model_name: str = ""
    dtype: str = "float32"

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise invalid_choice("SAE architecture", self.architecture, ARCHITECTURES)
        if self.normalize_activations not in NORMALIZATIONS:
            raise invalid_choice("activation normalization", self.normalize_activations,
                                 NORMALIZATIONS)
        if self.architecture == "topk" and not (self.k and 0 < self.k <= self.d_sae):
            raise invalid_choice("k for a TopK SAE of width " + str(self.d_sae), self.k,
                                 [f"an integer from 1 to {self.d_sae}"])

    @property
    def expansion(self) -> float:
        return self.d_sae / self.d_in


class SparseAutoencoder(nn.Module):
    """W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in] (SAELens' names and
    layout), plus `threshold` [d_sae] for JumpReLU. `encode`/`decode`/`forward` take [..., d_in]."""

    threshold: torch.Tensor  # a registered buffer

    def __init__(self, config: SAEConfig):
        super().__init__()
        self.config = config
        d_in, d_sae = config.d_in, config.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("threshold", torch.zeros(d_sae))

    def with_config(self, **changes) -> SparseAutoencoder:
        """A copy with some settings changed (e.g. a trained BatchTopK SAE made a JumpReLU one)."""
        copy = SparseAutoencoder(replace(self.config, **changes))
        copy.load_state_dict(self.state_dict())
        return copy.to(self.W_enc.device)

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x as the encoder sees it, and (shift, scale) for `decode` to map a reconstruction back
        (out * scale + shift). As in SAELens, layer norm divides by std + eps on the way in and
        multiplies by std on the way out."""
        shift = torch.zeros_like(x[..., :1])
        scale = torch.ones_like(x[..., :1])
        divisor = scale
        if self.config.centre_input or self.config.normalize_activations == "layer_norm":
            shift = x.mean(dim=-1, keepdim=True)
        if self.config.normalize_activations == "layer_norm":
            scale = (x - shift).std(dim=-1, keepdim=True)
            divisor = scale + LAYER_NORM_EPS
        elif self.config.normalize_activations == "constant_norm_rescale":
            scale = divisor = (x - shift).norm(dim=-1, keepdim=True) / self.config.d_in ** 0.5
        return (x - shift) / divisor, (shift, scale)

    def pre_activations(self, prepared: torch.Tensor) -> torch.Tensor:
        if self.config.apply_b_dec_to_input:
            prepared = prepared - self.b_dec
        return prepared @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The sparse code from pre-activations, by the architecture's rule."""
        if self.config.architecture == "topk":
            values, indices = pre.topk(self.config.k, dim=-1)  # type: ignore[arg-type]  # TopK configs have k
            return torch.zeros_like(pre).scatter(-1, indices, values.relu())
        if self.config.architecture == "jumprelu":
            return pre * (pre > self.threshold)
        return pre.relu()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae]."""
        return self.activate(self.pre_activations(self.prepare(x)[0]))

    def decode(self, features: torch.Tensor, undo=None) -> torch.Tensor:
        """The reconstruction [..., d_in]; `undo` = (shift, scale) from `prepare` of the input."""
        out = features @ self.W_dec + self.b_dec
        if undo is not None:
            shift, scale = undo
            out = out * scale + shift
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, feature activations) of x."""
        prepared, undo = self.prepare(x)
        features = self.activate(self.pre_activations(prepared))
        return self.decode(features, undo), features

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    def unit_decoder_directions(self) -> torch.Tensor:
        """Decoder rows scaled to unit norm [d_sae, d_in] (what a feature writes, up to scale)."""
        return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
