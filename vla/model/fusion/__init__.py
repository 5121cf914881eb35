"""Fusion modes: where vision meets the instruction and the actions (`FusionConfig`, docs/fusion.md).

    FUSION_MODES["early"]             the unified sequence [visual][prompt][state][actions] (no module here)
    FUSION_MODES["cross_attention"]   CrossAttentionFusion: gated xattn blocks before every k-th LM layer
    FUSION_MODES["late"]              LateFusion: pooled vision meets the LM hidden state at the action head
    TextGuidedEncoding                TUNE: the prompt inside a ViT tower's layers (any mode; `text_guided`)

A mode's module turns the visual tokens into a *context* of named tensors once per observation
(`context(visual)`), which `VLAPolicy.fusion_context(ctx)` makes active while the LM runs; the exported
encoder graph emits the same tensors and the decoder graphs take them (`context_names`).
"""

from __future__ import annotations

from vla.model.fusion.cross_attention import CrossAttentionFusion, GatedCrossAttention
from vla.model.fusion.late import LateFusion
from vla.model.fusion.text_guided import TextGuidedEncoding

# mode -> the module that carries it (None: early fusion needs none)
FUSION_MODES = {"early": None, "cross_attention": CrossAttentionFusion, "late": LateFusion}

__all__ = ["FUSION_MODES", "CrossAttentionFusion", "GatedCrossAttention", "LateFusion", "TextGuidedEncoding"]
