"""Resampler projector (Q-Former / Perceiver): `num_queries` learned queries cross-attend to the patch
features, then a feed-forward block; K = num_queries tokens whatever the image resolution. The keys carry a
learned position embedding per patch (`ProjectorConfig.key_pos_embed`, default on): without it the module is
a set function of the patches and loses where the object is (BENCHMARKS.md, "Fusion ablation")."""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig
from vla.model.projectors.positions import patch_positions


class ResamplerProjector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        if out_dim % cfg.num_heads != 0:
            raise ValueError(f"ProjectorConfig.num_heads={cfg.num_heads}: must divide the LM hidden size {out_dim}")
        self.num_tokens = cfg.num_queries
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, out_dim) * 0.02)  # [Q, D]
        self.kv_proj = nn.Linear(in_dim, out_dim)
        self.kv_norm = nn.LayerNorm(out_dim)
        # where each patch is, for the queries to select by (ProjectorConfig.key_pos_embed)
        self.key_pos = nn.Parameter(patch_positions(num_patches, grid, out_dim)) if cfg.key_pos_embed else None  # [P, D]
        self.q_norm = nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, cfg.num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(out_dim)
        self.ffn = nn.Sequential(nn.Linear(out_dim, 4 * out_dim), nn.GELU(), nn.Linear(4 * out_dim, out_dim))

    def keys_values(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> the keys / values the queries attend to [N, P, D] (+ the patch positions if configured)."""
        kv = self.kv_norm(self.kv_proj(feats))
        return kv if self.key_pos is None else kv + self.key_pos.to(kv.dtype)

    def _queries(self, n: int) -> torch.Tensor:
        return self.q_norm(self.queries).unsqueeze(0).expand(n, -1, -1)  # [N, Q, D]

    def cross_attention_weights(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, Q, P]: each query's attention over the patches, averaged over heads (diagnostics)."""
        kv = self.keys_values(feats)
        return self.attn(self._queries(feats.shape[0]), kv, kv, need_weights=True, average_attn_weights=True)[1]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> [N, Q, D]."""
        kv = self.keys_values(feats)  # [N, P, D]
        q = self._queries(feats.shape[0])  # [N, Q, D]
        x = q + self.attn(q, kv, kv, need_weights=False)[0]  # [N, Q, D]
        return x + self.ffn(self.ffn_norm(x))
