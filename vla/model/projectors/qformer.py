"""Instruction-aware Q-Former (InstructBLIP): K learned queries that self-attend together with the
instruction's token embeddings, then cross-attend to the patch features, then a feed-forward block; K =
num_queries tokens per camera that carry what the instruction asks about. Today's `resampler` is the same
block without the instruction (its queries only see each other and the patches).

    proj = QFormerProjector(ProjectorConfig(type="qformer", num_queries=16, num_heads=4), in_dim=Dv, out_dim=D, ...)
    tokens = proj(feats, txt, txt_mask)     # [N, P, Dv], [N, T, D], bool [N, T] -> [N, K, D]

`takes_text = True` tells `VLAPolicy.embed_prefix` to pass the prompt's embeddings (per camera); the prompt
padding is masked out of the self-attention.
"""

from __future__ import annotations

import torch
from torch import nn

from vla.config import ProjectorConfig
from vla.model.projectors.positions import patch_positions


class QFormerProjector(nn.Module):
    takes_text = True

    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> None:
        super().__init__()
        if out_dim % cfg.num_heads != 0:
            raise ValueError(f"ProjectorConfig.num_heads={cfg.num_heads}: must divide the LM hidden size {out_dim}")
        self.num_tokens = cfg.num_queries
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, out_dim) * 0.02)  # [K, D]
        self.self_norm = nn.LayerNorm(out_dim)
        self.txt_norm = nn.LayerNorm(out_dim)
        self.self_attn = nn.MultiheadAttention(out_dim, cfg.num_heads, batch_first=True)
        self.kv_proj = nn.Linear(in_dim, out_dim)
        self.kv_norm = nn.LayerNorm(out_dim)
        # where each patch is, for the queries to select by (ProjectorConfig.key_pos_embed)
        self.key_pos = nn.Parameter(patch_positions(num_patches, grid, out_dim)) if cfg.key_pos_embed else None  # [P, D]
        self.cross_norm = nn.LayerNorm(out_dim)
        self.cross_attn = nn.MultiheadAttention(out_dim, cfg.num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(out_dim)
        self.ffn = nn.Sequential(nn.Linear(out_dim, 4 * out_dim), nn.GELU(), nn.Linear(4 * out_dim, out_dim))

    def keys_values(self, feats: torch.Tensor) -> torch.Tensor:
        """[N, P, Dv] -> the keys / values the queries attend to [N, P, D] (+ the patch positions if configured)."""
        kv = self.kv_norm(self.kv_proj(feats))
        return kv if self.key_pos is None else kv + self.key_pos.to(kv.dtype)

    def _cross_inputs(self, feats: torch.Tensor, txt: torch.Tensor,
                      txt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (queries after attending to each other and the instruction [N, K, D], patch keys / values [N, P, D])."""
        n = feats.shape[0]
        q = self.queries.to(feats.dtype).unsqueeze(0).expand(n, -1, -1)  # [N, K, D]
        h = self.self_norm(q)
        ctx = torch.cat([h, self.txt_norm(txt.to(h.dtype))], 1)  # [N, K + T, D]: queries and the instruction
        ignore = torch.cat([torch.zeros_like(txt_mask[:, :1]).expand(n, q.shape[1]), ~txt_mask.bool()], 1)  # [N, K + T]
        q = q + self.self_attn(h, ctx, ctx, key_padding_mask=ignore, need_weights=False)[0]
        return q, self.keys_values(feats)

    def cross_attention_weights(self, feats: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        """[N, K, P]: each query's attention over the patches, averaged over heads (diagnostics)."""
        q, kv = self._cross_inputs(feats, txt, txt_mask)
        return self.cross_attn(self.cross_norm(q), kv, kv, need_weights=True, average_attn_weights=True)[1]

    def forward(self, feats: torch.Tensor, txt: torch.Tensor, txt_mask: torch.Tensor) -> torch.Tensor:
        """feats [N, P, Dv], txt [N, T, D] prompt embeddings, txt_mask bool [N, T] (True = a real token) -> [N, K, D]."""
        q, kv = self._cross_inputs(feats, txt, txt_mask)  # [N, K, D], [N, P, D]
        q = q + self.cross_attn(self.cross_norm(q), kv, kv, need_weights=False)[0]
        return q + self.ffn(self.ffn_norm(q))
