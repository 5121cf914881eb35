"""Late fusion (CLIP-style), the floor of the fusion study: no cross-modal attention inside the LM. The LM
sequence is [prompt][state][actions]; vision meets the LM's hidden state only at the action head.

    late = LateFusion(d=128, cameras=2, tokens_per_camera=16)
    ctx = late.context(visual)    # visual [B, C*K, D] -> {"late_context": [B, D]}: per-camera mean pool, Linear
    h = late.fuse(h, ctx)         # h [B, T, D] (the LM's final-normed hidden) -> h + MLP([h; context])

The MLP's last layer is zero-initialised (a fresh policy's head is the LM's own). `VLAPolicy` applies
`fuse` through a forward hook on the decoder's final norm, so every path that produces logits (training,
the KV loop's head, the full LM call, `generate()`, the exported graphs' `DecoderCore`) takes it alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class LateFusion(nn.Module):
    context_names = ("late_context",)

    def __init__(self, d: int, cameras: int, tokens_per_camera: int) -> None:
        super().__init__()
        self.cameras, self.tokens = cameras, tokens_per_camera
        self.pool_proj = nn.Linear(cameras * d, d)
        self.mix = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d))
        nn.init.zeros_(self.mix[2].weight)
        nn.init.zeros_(self.mix[2].bias)
        self.active: dict[str, torch.Tensor] | None = None

    def context(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """visual [B, C*K, D] -> {"late_context": [B, D]}."""
        b, _, d = visual.shape
        pooled = visual.view(b, self.cameras, self.tokens, d).mean(2).flatten(1)  # [B, C*D]
        return {"late_context": self.pool_proj(pooled)}

    def fuse(self, h: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        c = ctx["late_context"].to(h.dtype)  # [B, D]
        if c.shape[0] != h.shape[0]:
            raise ValueError(f"late-fusion context has batch {c.shape[0]}, the LM batch {h.shape[0]}")
        c = c[:, None].expand(-1, h.shape[1], -1)  # [B, T, D]
        return h + self.mix(torch.cat([h, c], -1))

    def install(self, final_norm: nn.Module) -> None:
        final_norm.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError("fusion.mode 'late': the LM ran without visual context; call it inside "
                               "VLAPolicy.fusion_context(...) (VLAPolicy.forward and vla.model.decoding do)")
        return self.fuse(output, self.active)
