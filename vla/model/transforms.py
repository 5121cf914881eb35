"""Input transforms shared by training, evaluation and deployment (never re-implemented per backend).

    small = resize_images(uint8_images, size)          # [..., H, W, 3] uint8 -> [..., S, S, 3] uint8
    x = normalize_images(small_or_augmented, mean, std)  # uint8 HWC or float01 CHW -> float [..., 3, S, S]
    ids, mask = pad_prompts(list_of_id_lists, prompt_len, pad_id)   # left padding
    attn = attention_mask_4d(valid, action_start, mode)  # bool [B, 1, T, T], True = may attend
    pos = position_ids(valid)                           # [B, T], pads skipped

Images are resized with antialiased bilinear interpolation in torch and rounded back to uint8, so a
training run can cache the small images once and inference reproduces them bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def resize_images(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [..., H, W, 3] (row 0 = top) -> uint8 [..., size, size, 3]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [..., H, W, 3], got {x.dtype} {tuple(x.shape)}")
    lead, (h, w) = x.shape[:-3], x.shape[-3:-1]
    if (h, w) == (size, size):
        return x.clone()
    flat = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float()  # [N, 3, H, W]
    out = F.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    out = out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # [N, S, S, 3]
    return out.reshape(*lead, size, size, 3)


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [..., S, S, 3] or float in [0, 1] [..., 3, S, S] -> normalized float32 [..., 3, S, S]."""
    if images.dtype == torch.uint8:
        x = images.movedim(-1, -3).float() / 255.0  # [..., 3, S, S]
    elif images.is_floating_point() and images.shape[-3] == 3:
        x = images.float()
    else:
        raise ValueError(f"expected uint8 [..., S, S, 3] or float [..., 3, S, S], got {images.dtype} {tuple(images.shape)}")
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - m) / s


def pad_prompts(prompts: Sequence[Sequence[int]], prompt_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists to `prompt_len` -> (ids int64 [B, T], mask bool [B, T]). Too long -> ValueError."""
    b = len(prompts)
    ids = torch.full((b, prompt_len), pad_id, dtype=torch.long)
    mask = torch.zeros(b, prompt_len, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if len(p) > prompt_len:
            raise ValueError(
                f"prompt {i} has {len(p)} tokens, more than TextConfig.prompt_len={prompt_len}; raise prompt_len"
            )
        if len(p):
            ids[i, prompt_len - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, prompt_len - len(p):] = True
    return ids, mask


def position_ids(valid: torch.Tensor) -> torch.Tensor:
    """bool [B, T] -> int64 [B, T]: 0, 1, 2, ... over valid tokens (pads repeat their neighbour's id)."""
    return (valid.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask_4d(valid: torch.Tensor, action_start: int | None = None, bidirectional_tail: bool = False,
                      bidirectional_prefix: bool = False) -> torch.Tensor:
    """bool [B, T] -> bool [B, 1, T, T]: causal over valid keys.

    With `bidirectional_tail`, positions >= `action_start` (the parallel-decoding action slots) also see
    each other both ways (OpenVLA-OFT). With `bidirectional_prefix`, positions < `action_start` (images,
    prompt, state) see each other both ways (prefix-LM, as PaliGemma / pi0): image tokens can read the
    instruction. Every query may attend to itself so a pad row never has an all-masked softmax (NaN); pad
    rows are never read by valid rows.
    """
    b, t = valid.shape
    idx = torch.arange(t, device=valid.device)
    allowed = idx[None, :] <= idx[:, None]  # [T, T] causal
    if (bidirectional_tail or bidirectional_prefix) and action_start is None:
        raise ValueError("bidirectional_tail / bidirectional_prefix need action_start")
    if bidirectional_tail:
        tail = idx >= action_start
        allowed = allowed | (tail[:, None] & tail[None, :])
    if bidirectional_prefix:
        head = idx < action_start
        allowed = allowed | (head[:, None] & head[None, :])
    m = allowed[None] & valid[:, None, :]  # [B, T, T]
    m = m | torch.eye(t, dtype=torch.bool, device=valid.device)[None]
    return m[:, None]  # [B, 1, T, T]
