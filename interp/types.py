"""Shape aliases for the tensors carried by results (jaxtyping-style names, documentation only).

`Float[Tensor, "layer pos"]` reads: a float tensor whose first axis is the layer and the second
the token position. We keep them as plain aliases so `interp` needs no runtime type checker.
"""

from __future__ import annotations

from typing import Annotated

import torch

TokenIds = Annotated[torch.Tensor, "batch pos"]
Logits = Annotated[torch.Tensor, "batch pos d_vocab"]
LayerByPos = Annotated[torch.Tensor, "layer pos"]
LayerByHead = Annotated[torch.Tensor, "layer head"]
