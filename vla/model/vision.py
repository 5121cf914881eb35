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
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _buffers_like_parameters(module: nn.Module) -> Iterator[None]:
    """While inside, a module whose parameters are on the meta device (`VLAPolicy.from_pretrained` builds
    it so) has its buffers there too, so a shape probe runs; the real buffers are put back after."""
    params = list(module.parameters())
    if not params or params[0].device.type != "meta":
        yield
        return
    saved = [(m, k, b) for m in module.modules() for k, b in m._buffers.items() if b is not None]
    for m, k, b in saved:
        m._buffers[k] = b.to("meta")
    try:
        yield
    finally:
        for m, k, b in saved:
            m._buffers[k] = b


def _static_pos_embed(model: nn.Module, image_size: int) -> None:
    """DINOv2's embeddings interpolate the position table whenever the graph is traced (a bicubic resize
    with antialias, which opset 17 cannot express); where the table already fits the tower's image size
    (towers built from a config, converted checkpoints), it is used as stored, exactly what the untraced
    module computes at that size. A table for another size keeps transformers' interpolation."""
    emb = getattr(model, "embeddings", None)
    if emb is None or not hasattr(emb, "interpolate_pos_encoding") or not hasattr(emb, "position_embeddings"):
        return
    patch = getattr(model.config, "patch_size", None)
    if not isinstance(patch, int) or emb.position_embeddings.shape[1] != 1 + (image_size // patch) ** 2:
        return  # a table for another size (a pretrained tower used at a new resolution): keep interpolating
    emb.interpolate_pos_encoding = lambda embeddings, height, width: emb.position_embeddings


class VisionTower(nn.Module):
    """Wraps an HF vision model; output is the last hidden state (patch tokens).

    `cfg.post_norm=False` returns the last block's output without the final LayerNorm (embeddings ->
    encoder only); `cfg.fused` adds a second tower (`fused_tower`) whose features are concatenated per
    patch: pixel_values [N, 6, S, S] hold the image normalized for each tower."""

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
        _static_pos_embed(self.model, cfg.image_size)
        core = getattr(self.model, "vision_model", self.model)
        if not cfg.post_norm and not (hasattr(core, "embeddings") and hasattr(core, "encoder")):
            raise ValueError(f"VisionConfig.post_norm=False: {type(core).__name__} is no ViT with embeddings + encoder")
        self._core = [core]  # a list: not registered twice as a submodule
        # prefix tokens drop_cls removes: CLS, and DINOv2-with-registers' register tokens after it
        self.num_prefix = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        hidden = getattr(self.model.config, "hidden_size", None)
        if hidden is None and getattr(self.model.config, "hidden_sizes", None):
            hidden = self.model.config.hidden_sizes[-1]  # conv towers: channels of the last stage
        if hidden is None:
            raise ValueError(
                f"vision model {type(self.model).__name__} has neither config.hidden_size nor config.hidden_sizes"
            )
        self.hidden_size = int(hidden)
        # probe once for the token count: robust to CLS tokens and any patching scheme
        with torch.no_grad(), _buffers_like_parameters(self):  # meta when built for loading: no compute
            dev = next(self.model.parameters()).device
            probe = torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=dev)
            n = self._features(probe).shape[1]
        self.num_patches = int(n)
        self.fused_tower = VisionTower(cfg.fused) if cfg.fused is not None else None
        if self.fused_tower is not None:
            if self.fused_tower.num_patches != self.num_patches:
                raise ValueError(f"VisionConfig.fused: the towers give {self.num_patches} and "
                                 f"{self.fused_tower.num_patches} patches; fusing per patch needs the same grid")
            self.hidden_size += self.fused_tower.hidden_size
        side = math.isqrt(self.num_patches)
        self.grid = side if side * side == self.num_patches else None  # None: not a square grid

    def hf_config_dict(self) -> dict[str, Any]:
        """The resolved transformers config (saved so a checkpoint rebuilds without the pretrained dir)."""
        d = self.model.config.to_dict()
        for k in ("transformers_version", "architectures", "_name_or_path", "model_type", "torch_dtype", "dtype"):
            d.pop(k, None)
        return d

    def prepare(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the HF model takes: the tower's dtype, CoordConv channels appended ([N, 3 (+2), S, S])."""
        weight = next(self.model.parameters())
        if weight.dtype != pixel_values.dtype and weight.dtype in (torch.float16, torch.bfloat16):
            pixel_values = pixel_values.to(weight.dtype)  # a half-precision tower takes float32 feeds
        if self.coords is not None:
            coords = self.coords.to(pixel_values.device, pixel_values.dtype).expand(pixel_values.shape[0], -1, -1, -1)
            pixel_values = torch.cat([pixel_values, coords], 1)  # [N, 3 + 2, S, S]
        return pixel_values

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = self.prepare(pixel_values)
        if self.cfg.post_norm:
            feats = self.model(pixel_values=pixel_values).last_hidden_state  # [N, P(+1), Dv], or a conv map [N, C, h, w]
        else:  # the last block's output, before the final norm
            core = self._core[0]
            feats = core.encoder(core.embeddings(pixel_values)).last_hidden_state  # [N, prefix + P, Dv]
        if feats.dim() == 4:
            # conv tower: row-major grid of h*w tokens; flatten/transpose export to ONNX as plain reshapes
            return feats.flatten(2).transpose(1, 2)  # [N, h*w, C]
        if feats.dim() != 3:
            raise ValueError(f"vision model output has shape {tuple(feats.shape)}; expected [N, P, D] or [N, C, h, w]")
        return feats[:, self.num_prefix:] if self.cfg.drop_cls else feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, P, Dv]; fused: [N, 6, S, S] -> [N, P, Dv1 + Dv2]."""
        if self.fused_tower is None:
            return self._features(pixel_values)
        return torch.cat([self._features(pixel_values[:, :3]), self.fused_tower(pixel_values[:, 3:])], dim=-1)
