"""Text-guided vision encoding (TUNE, the FUSION paper's text-guided unified vision encoding): the
instruction enters the vision tower itself. The prompt's token embeddings are projected to the tower's width
and appended to the ViT's patch tokens; every encoder layer then attends over patches and text together,
with a per-layer gate on the text keys, so early layers stay mostly visual and later layers read more of the
instruction. Only the patch tokens leave the tower.

    tg = TextGuidedEncoding(text_dim=D, tower=vision_tower)
    feats = tg(vision_tower, pixel_values, txt, txt_mask)   # [N, 3, S, S], [N, T, D], bool [N, T] -> [N, P, Dv]

Gate: layer l adds log(sigmoid(g_l)) to every attention score whose key is a text token (an attention weight
multiplied by sigmoid(g_l) before renormalisation); g is learned, initialised linearly from -6 (layer 0:
text weighs ~0.25% of a patch) to 0 (last layer: one half). Padded prompt positions are masked out as keys.
The layers are the tower's own transformers modules, called with that additive mask.

How it relates to `film`: FiLM (RT-1) conditions a conv tower's *output* features on a pooled instruction
vector (one scale and shift per channel, the same at every position); TUNE conditions a ViT *inside* every
layer, token by token, through attention, so a patch can attend to the colour word while it is encoded.
FiLM is the conv tower's analogue; both may be combined.
"""

from __future__ import annotations

import torch
from torch import nn


def vit_parts(tower: nn.Module) -> tuple[nn.Module, nn.ModuleList, nn.Module | None]:
    """-> (embeddings, encoder layers, final norm or None) of a transformers ViT (SigLIP, CLIP, DINOv2, ViT)."""
    core = tower._core[0]
    layers = getattr(getattr(core, "encoder", None), "layers", None) or getattr(getattr(core, "encoder", None), "layer", None)
    if not hasattr(core, "embeddings") or layers is None:
        raise ValueError(f"FusionConfig.text_guided needs a ViT tower (embeddings + encoder layers), not "
                         f"{type(core).__name__}; a conv tower's analogue is film")
    norm = getattr(core, "post_layernorm", None) or getattr(core, "layernorm", None)
    return core.embeddings, layers, norm


class TextGuidedEncoding(nn.Module):
    def __init__(self, text_dim: int, tower: nn.Module) -> None:
        super().__init__()
        _, layers, _ = vit_parts(tower)
        self.text_proj = nn.Linear(text_dim, tower.hidden_size)
        self.gates = nn.Parameter(torch.linspace(-6.0, 0.0, len(layers)))  # [layers]

    def forward(self, tower: nn.Module, pixel_values: torch.Tensor, txt: torch.Tensor,
                txt_mask: torch.Tensor) -> torch.Tensor:
        """pixel_values [N, 3, S, S], txt [N, T, D] prompt embeddings, txt_mask bool [N, T] -> [N, P, Dv]."""
        emb, layers, norm = vit_parts(tower)
        x = emb(tower.prepare(pixel_values))  # [N, P(+prefix), Dv]
        n, p, _ = x.shape
        t = self.text_proj(txt.to(self.text_proj.weight.dtype)).to(x.dtype)  # [N, T, Dv]
        x = torch.cat([x, t], 1)  # [N, P + T, Dv]
        neg = torch.finfo(x.dtype).min
        is_text = torch.cat([torch.zeros(p, dtype=torch.bool, device=x.device),
                             torch.ones(t.shape[1], dtype=torch.bool, device=x.device)])  # [P + T]
        keep = torch.cat([torch.ones(n, p, dtype=torch.bool, device=x.device), txt_mask.bool()], 1)  # [N, P + T]
        pad = torch.zeros(n, 1, 1, p + t.shape[1], dtype=x.dtype, device=x.device).masked_fill(
            ~keep[:, None, None, :], neg)  # [N, 1, 1, P + T]: pads are never keys
        for i, layer in enumerate(layers):
            gate = nn.functional.logsigmoid(self.gates[i].float()).to(x.dtype)
            mask = (pad + is_text.to(x.dtype) * gate).expand(n, 1, p + t.shape[1], p + t.shape[1])
            out = layer(x, mask)
            x = out[0] if isinstance(out, tuple) else out
        x = x[:, :p]
        if tower.cfg.post_norm and norm is not None:
            x = norm(x)
        return x[:, tower.num_prefix:] if tower.cfg.drop_cls else x
