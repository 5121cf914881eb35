"""Pixel-shuffle projector (InternVL, SmolVLM): fold r x r neighbouring patches into the channel axis,
then a LayerNorm + 2-layer MLP; K = P / r^2 tokens (fewer, wider tokens: cheaper LM sequence)."""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig


class PixelShuffleProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        r = cfg.shuffle_factor
        if grid is None:
            raise ValueError(f"pixel_shuffle needs a square patch grid, got {num_patches} patches")
        if grid % r != 0:
            raise ValueError(f"ProjectorConfig.shuffle_factor={r}: must divide the patch grid side {grid}")
        self.r, self.grid = r, grid
        self.num_tokens = (grid // r) ** 2
        wide = in_dim * r * r
        self.net = nn.Sequential(nn.LayerNorm(wide), nn.Linear(wide, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> [N, P / r^2, D]."""
        n, p, d = feats.shape
        g, r = self.grid, self.r
        x = feats.reshape(n, g // r, r, g // r, r, d)  # [N, gy, ry, gx, rx, Dv] (row-major patch grid)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(n, (g // r) ** 2, r * r * d)  # [N, K, r*r*Dv]
        return self.net(x)
