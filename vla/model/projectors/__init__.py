"""Projector registry: vision features [N, P, Dv] -> LM token embeddings [N, K, D].

    proj = build_projector(ProjectorConfig(type="pixel_shuffle"), in_dim=Dv, out_dim=D, num_patches=P, grid=g)
    proj.num_tokens   # K visual tokens per camera
    PROJECTORS        # name -> class; every entry is exercised by tests/vla/model/test_projectors.py

The connector choice the VLM literature debates:
- `linear`        one matrix per patch (LLaVA-1): K = P
- `mlp`           2-layer GELU MLP per patch (LLaVA-1.5, OpenVLA): K = P
- `pixel_shuffle` merge r x r neighbouring patches into one token, then MLP (InternVL, SmolVLM): K = P / r^2
- `resampler`     Q learned queries cross-attend to the patches (Q-Former / Perceiver): K = Q
- `qformer`       instruction-aware Q-Former (InstructBLIP): the queries also attend to the prompt: K = Q
- `fused_gelu_mlp` 3-layer GELU MLP per patch, the first layer 4x wide (Prismatic / OpenVLA-7B): K = P
"""

from __future__ import annotations

from torch import nn

from vla.config import ProjectorConfig
from vla.model.projectors.fused_gelu_mlp import FusedGeluMLPProjector
from vla.model.projectors.linear import LinearProjector
from vla.model.projectors.mlp import MLPProjector
from vla.model.projectors.pixel_shuffle import PixelShuffleProjector
from vla.model.projectors.qformer import QFormerProjector
from vla.model.projectors.resampler import ResamplerProjector

PROJECTORS: dict[str, type[nn.Module]] = {
    "linear": LinearProjector,
    "mlp": MLPProjector,
    "pixel_shuffle": PixelShuffleProjector,
    "resampler": ResamplerProjector,
    "qformer": QFormerProjector,
    "fused_gelu_mlp": FusedGeluMLPProjector,
}


def build_projector(cfg: ProjectorConfig, in_dim: int, out_dim: int, num_patches: int, grid: int | None) -> nn.Module:
    """Instantiate the projector named by `cfg.type`."""
    if cfg.type not in PROJECTORS:
        raise ValueError(f"unknown projector {cfg.type!r}; available: {sorted(PROJECTORS)}")
    return PROJECTORS[cfg.type](cfg, in_dim=in_dim, out_dim=out_dim, num_patches=num_patches, grid=grid)


__all__ = ["PROJECTORS", "build_projector", "FusedGeluMLPProjector", "LinearProjector", "MLPProjector", "PixelShuffleProjector", "QFormerProjector",
           "ResamplerProjector"]
