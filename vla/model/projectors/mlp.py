"""MLP projector (LLaVA-1.5, OpenVLA): Linear -> GELU -> Linear per patch; K = P tokens."""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig


class MLPProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.num_tokens = num_patches

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> [N, P, D]."""
        return self.net(feats)
