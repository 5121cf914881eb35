"""Initial values of the queried connectors' patch position embeddings (`ProjectorConfig.key_pos_embed`).

    table = patch_positions(num_patches=64, grid=8, dim=128)   # [P, D], each row unit RMS

A 2-D sine-cosine code of the patch grid (MAE's, half the channels for the row, half for the column), at the
scale of the LayerNorm'd keys it is added to (RMS 1): a learned table initialised this small (std 0.02) stays
invisible next to them (measured: BENCHMARKS.md, "Fusion ablation"). Without a square grid, N(0, 1) rows.
"""

from __future__ import annotations

import math

import torch


def patch_positions(num_patches: int, grid: int | None, dim: int) -> torch.Tensor:
    if grid is None or dim % 4:
        return torch.randn(num_patches, dim)
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # [D/4]
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):  # row-major patches, as the towers emit them
        ang = coord[:, None] * freq[None]  # [P, D/4]
        parts += [torch.sin(ang), torch.cos(ang)]
    table = torch.cat(parts, 1)  # [P, D]: each (sin, cos) pair has norm 1, so every row has norm sqrt(D / 2)
    return table * math.sqrt(dim) / table.norm(dim=1, keepdim=True)
