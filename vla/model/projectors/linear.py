"""Linear projector (LLaVA-1): one matrix maps every patch feature to an LM embedding; K = P tokens."""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig


class LinearProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.num_tokens = num_patches

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> [N, P, D]."""
        return self.proj(feats)
