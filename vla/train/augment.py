"""Image augmentation for training, in plain torch (no torchvision).

    x = augment_images(small_uint8, AugmentConfig(), generator)   # [B, C, S, S, 3] uint8 -> [B, C, 3, S, S] in [0, 1]

One affine `grid_sample` per image does the random scale-crop (OpenVLA's 90% random-resized crop) and
a random shift (DrQ-style) at once; colour jitter (brightness, contrast, saturation) follows. Every
camera image draws its own parameters. The policy then normalizes the result with
`VLAPolicy.pixels`, the same call inference uses on unaugmented images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vla.train.config import AugmentConfig


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def augment_images(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 [..., S, S, 3] -> float32 [..., 3, S, S] in [0, 1], randomly cropped/shifted/jittered."""
    if images.dtype != torch.uint8:
        raise ValueError(f"augment_images expects uint8 images, got {images.dtype}")
    lead, s = images.shape[:-3], images.shape[-2]
    x = images.reshape(-1, s, s, 3).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, S, S]
    n = x.shape[0]
    g = generator
    scale = _uniform(n, cfg.crop_scale, 1.0, g)  # [N] crop side as a fraction
    # the crop centre may move anywhere the crop stays inside the image, plus the extra shift
    room = (1.0 - scale) + 2 * cfg.shift
    tx = (torch.rand(n, generator=g) * 2 - 1) * room
    ty = (torch.rand(n, generator=g) * 2 - 1) * room
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gray_w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    if cfg.brightness > 0:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g).view(n, 1, 1, 1)
    if cfg.contrast > 0:
        mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)  # [N, 1, 1, 1]
        x = (x - mean) * _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g).view(n, 1, 1, 1) + mean
    if cfg.saturation > 0:
        gray = (x * gray_w).sum(1, keepdim=True)  # [N, 1, S, S]
        x = (x - gray) * _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g).view(n, 1, 1, 1) + gray
    return x.clamp(0.0, 1.0).reshape(*lead, 3, s, s)
