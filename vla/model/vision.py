"""Vision tower: a `transformers` vision model turning camera images into patch features.

    tower = VisionTower(VisionConfig(hf_config={"hidden_size": 32, ...}))   # random init, SigLIP default
    tower = VisionTower(VisionConfig(pretrained="/models/siglip-so400m"))   # local dir, never downloads
    feats = tower(pixel_values)        # [N, 3, S, S] normalized -> [N, P, Dv]
    VisionConfig(..., coord_channels=True)  # CoordConv: x, y coordinate channels appended inside the tower
    tower.num_patches, tower.hidden_size, tower.grid

Convolutional towers (ResNet, ConvNeXt: `last_hidden_state` is a feature map [N, C, h, w], width in
`config.hidden_sizes[-1]`) are flattened row-major to h*w tokens [N, h*w, C], so the projectors
(pixel_shuffle included) see the same square patch grid as with a ViT:

    VisionConfig(model_type="resnet", image_size=64,
                 hf_config={"embedding_size": 16, "hidden_sizes": [32, 64], "depths": [1, 1], "layer_type": "basic"})

Cameras are folded into the batch by the caller ([B, C, ...] -> [B*C, ...]), so one tower serves all
cameras with shared weights (as in OpenVLA's per-view encoding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vla.config import VisionConfig

COORD_CHANNELS = 2  # VisionConfig.coord_channels: x and y


def coord_grid(size: int) -> torch.Tensor:
    """[1, 2, S, S] pixel-centre coordinates in [-1, 1]: channel 0 = x (column), channel 1 = y (row, 0 = top)."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x, y])[None]


def build_hf_vision_config(cfg: VisionConfig) -> Any:
    """The transformers config object for `cfg` (image_size injected where the model has one)."""
    from transformers import AutoConfig

    kw = dict(cfg.hf_config)
    kw.pop("model_type", None)
    hf = AutoConfig.for_model(cfg.model_type, **kw)
    if hasattr(hf, "image_size"):
        hf.image_size = cfg.image_size
    if cfg.coord_channels:
        if not hasattr(hf, "num_channels"):
            raise ValueError(f"VisionConfig.coord_channels: {cfg.model_type} config has no num_channels to widen")
        hf.num_channels = 3 + COORD_CHANNELS
    if hasattr(hf, "vision_use_head") and "vision_use_head" not in kw:
        hf.vision_use_head = False  # SigLIP's pooling head: unused (we take patch tokens), so don't build it
    return hf


def _load_pretrained_vision(path: str) -> nn.Module:
    """A vision-only model from a local dir; a dual-encoder (SigLIP/CLIP) keeps its vision half."""
    from transformers import AutoConfig, AutoModel

    hf = AutoConfig.from_pretrained(path, local_files_only=True)
    vision_cfg = getattr(hf, "vision_config", None)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    if vision_cfg is not None and hasattr(model, "vision_model"):
        return model.vision_model
    return model


class VisionTower(nn.Module):
    """Wraps an HF vision model; output is the last hidden state (patch tokens)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        from transformers import AutoModel

        self.cfg = cfg
        # CoordConv channels: a constant of the graph, rebuilt from the config (not saved with the weights)
        self.register_buffer("coords", coord_grid(cfg.image_size) if cfg.coord_channels else None, persistent=False)
        if cfg.pretrained is not None:
            self.model = _load_pretrained_vision(cfg.pretrained)
        else:
            self.model = AutoModel.from_config(build_hf_vision_config(cfg))
        for m in (self.model, getattr(self.model, "vision_model", None)):
            if getattr(m, "use_head", False):  # a pretrained SigLIP's pooling head: unused, drop it
                m.use_head = False
                del m.head
        hidden = getattr(self.model.config, "hidden_size", None)
        if hidden is None and getattr(self.model.config, "hidden_sizes", None):
            hidden = self.model.config.hidden_sizes[-1]  # conv towers: channels of the last stage
        if hidden is None:
            raise ValueError(
                f"vision model {type(self.model).__name__} has neither config.hidden_size nor config.hidden_sizes"
            )
        self.hidden_size = int(hidden)
        # probe once for the token count: robust to CLS tokens and any patching scheme
        with torch.no_grad():
            probe = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
            n = self._features(probe).shape[1]
        self.num_patches = int(n)
        side = math.isqrt(self.num_patches)
        self.grid = side if side * side == self.num_patches else None  # None: not a square grid

    def hf_config_dict(self) -> dict[str, Any]:
        """The resolved transformers config (saved so a checkpoint rebuilds without the pretrained dir)."""
        d = self.model.config.to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype"):
            d.pop(k, None)
        return d

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.coords is not None:
            coords = self.coords.to(pixel_values.dtype).expand(pixel_values.shape[0], -1, -1, -1)
            pixel_values = torch.cat([pixel_values, coords], 1)  # [N, 3 + 2, S, S]
        out = self.model(pixel_values=pixel_values)
        feats = out.last_hidden_state  # [N, P(+1), Dv], or a conv feature map [N, C, h, w]
        if feats.dim() == 4:
            # conv tower: row-major grid of h*w tokens; flatten/transpose export to ONNX as plain reshapes
            return feats.flatten(2).transpose(1, 2)  # [N, h*w, C]
        if feats.dim() != 3:
            raise ValueError(f"vision model output has shape {tuple(feats.shape)}; expected [N, P, D] or [N, C, h, w]")
        return feats[:, 1:] if self.cfg.drop_cls else feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, P, Dv]."""
        return self._features(pixel_values)
