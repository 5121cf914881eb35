"""Prismatic's `fused-gelu-mlp` projector (OpenVLA-7B): Linear(Dv, 4 Dv) -> GELU -> Linear(4 Dv, D) -> GELU
-> Linear(D, D) per patch; K = P tokens. The 2-layer `gelu-mlp` of single-tower Prismatic checkpoints is
the `mlp` projector."""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig


class FusedGeluMLPProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        hidden = 4 * in_dim  # Prismatic's `initial_projection_dim`
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim), nn.GELU(),
                                 nn.Linear(out_dim, out_dim))
        self.num_tokens = num_patches

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> [N, P, D]."""
        return self.net(feats)
