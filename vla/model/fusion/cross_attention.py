"""Cross-attention fusion (Flamingo; Llama 3.2 Vision): the visual tokens stay out of the LM sequence and are
read through gated cross-attention blocks inserted before every k-th decoder layer of the causal LM.

    xattn = CrossAttentionFusion(FusionConfig(mode="cross_attention", every=1), d=128, lm_heads=4, n_layers=2)
    ctx = xattn.context(visual)        # visual [B, Nv, D] -> {"vis_k", "vis_v"}: [blocks, B, H, Nv, hd], once per observation
    x = xattn.before_layer(i, x, ctx)  # x [B, T, D] -> x, through block j if decoder layer i has one

Each block (`GatedCrossAttention`):
    x = x + tanh(a_attn) * o(attend(q(LN(x)), k(LN_kv(visual)), v(LN_kv(visual))))
    x = x + tanh(a_ffn)  * FFN(LN(x))
with both gates 0 at init, so a fresh policy's LM computes exactly what it computes without the blocks. The
LM's own modules are never modified or wrapped: `VLAPolicy` runs the blocks from forward pre-hooks on the
decoder layers (`install`), so the LM's state-dict names, LoRA targets and the decoding paths stay as they
are; the exported `DecoderCore` calls `before_layer` itself. Visual keys / values are computed once per
observation (`context`), in torch and in the exported encoder graph alike, never per decoded token.
Attention is written as MatMul / Softmax so the torch module and the ONNX graph are the same code.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from vla.config import FusionConfig


class GatedCrossAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"FusionConfig.heads={heads}: must divide the LM's hidden size {d}")
        self.heads, self.head_dim = heads, d // heads
        self.norm = nn.LayerNorm(d)
        self.kv_norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.attn_gate = nn.Parameter(torch.zeros(1))  # tanh(0) = 0: the block starts as the identity
        self.ffn_gate = nn.Parameter(torch.zeros(1))

    def keys_values(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """visual [B, Nv, D] -> keys, values [B, H, Nv, hd]."""
        b, n, _ = visual.shape
        v = self.kv_norm(visual)
        k = self.k(v).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        return k, self.v(v).view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], k / v [B, H, Nv, hd] -> [B, T, D]."""
        b, t, d = x.shape
        q = self.q(self.norm(x)).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * (self.head_dim ** -0.5)  # [B, H, T, Nv]
        att = torch.matmul(torch.softmax(scores, -1).to(v.dtype), v).transpose(1, 2).reshape(b, t, d)
        x = x + torch.tanh(self.attn_gate).to(x.dtype) * self.o(att)
        return x + torch.tanh(self.ffn_gate).to(x.dtype) * self.ffn(self.ffn_norm(x))


class CrossAttentionFusion(nn.Module):
    """The blocks and where they sit: block j runs before decoder layer `layers[j]` = j * every."""

    context_names = ("vis_k", "vis_v")

    def __init__(self, cfg: FusionConfig, d: int, lm_heads: int, n_layers: int) -> None:
        super().__init__()
        heads = cfg.heads or lm_heads
        self.layers = tuple(range(0, n_layers, cfg.every))
        self.index = {layer: j for j, layer in enumerate(self.layers)}
        self.blocks = nn.ModuleList(GatedCrossAttention(d, heads) for _ in self.layers)
        self.active: dict[str, torch.Tensor] | None = None  # the context of the observation being decoded

    def context(self, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """visual [B, Nv, D] -> {"vis_k", "vis_v": [blocks, B, H, Nv, hd]}: every block's keys and values."""
        kv = [blk.keys_values(visual) for blk in self.blocks]
        return {"vis_k": torch.stack([k for k, _ in kv]), "vis_v": torch.stack([v for _, v in kv])}

    def before_layer(self, i: int, x: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        j = self.index.get(i)
        if j is None:
            return x
        k, v = ctx["vis_k"][j], ctx["vis_v"][j]
        if k.shape[0] != x.shape[0]:
            raise ValueError(f"cross-attention context has batch {k.shape[0]}, the LM batch {x.shape[0]}")
        return self.blocks[j](x, k, v)

    def install(self, decoder_layers: nn.ModuleList) -> None:
        """Forward pre-hooks on the decoder layers that get a block (the LM modules themselves unchanged)."""
        if len(decoder_layers) <= self.layers[-1]:
            raise ValueError(f"cross-attention blocks before layers {self.layers}, but the LM has {len(decoder_layers)}")
        for i in self.layers:
            decoder_layers[i].register_forward_pre_hook(functools.partial(self._pre_hook, i), with_kwargs=True)

    def _pre_hook(self, i: int, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        if self.active is None:
            raise RuntimeError("fusion.mode 'cross_attention': the LM ran without visual context; call it inside "
                               "VLAPolicy.fusion_context(...) (VLAPolicy.forward and vla.model.decoding do)")
        if args:
            return (self.before_layer(i, args[0], self.active), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self.before_layer(i, kwargs["hidden_states"], self.active)}
