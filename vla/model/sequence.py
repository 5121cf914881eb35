"""The sequence layout's masks and positions (torch): training, every decoding path and the exported graphs
build them here.

    attn = attention_mask_4d(valid, action_start, bidirectional_tail)   # bool [B, 1, T, T], True = may attend
    pos = position_ids(valid)                                          # [B, T], pads skipped
    batch = example_batch(cfg, batch_size=2)   # random tensors with the shapes forward takes (tests, ONNX tracing)

The observation transforms (image resize and normalization, prompts, state) are numpy and live in
`vla.policy_io`, shared by training and every runtime.
"""

from __future__ import annotations

import torch

from vla.config import VLAConfig


def position_ids(valid: torch.Tensor) -> torch.Tensor:
    """bool [B, T] -> int64 [B, T]: 0, 1, 2, ... over valid tokens (pads repeat their neighbour's id)."""
    return (valid.long().cumsum(-1) - 1).clamp(min=0)


def attention_mask_4d(valid: torch.Tensor, action_start: int | None = None,
                      bidirectional_tail: bool = False) -> torch.Tensor:
    """bool [B, T] -> bool [B, 1, T, T]: causal over valid keys.

    With `bidirectional_tail`, positions >= `action_start` (the parallel-decoding action slots) also see
    each other both ways (OpenVLA-OFT). Every query may attend to itself so a pad row never has an all-masked softmax (NaN); pad
    rows are never read by valid rows.
    """
    b, t = valid.shape
    idx = torch.arange(t, device=valid.device)
    allowed = idx[None, :] <= idx[:, None]  # [T, T] causal
    if bidirectional_tail:
        if action_start is None:
            raise ValueError("bidirectional_tail needs action_start")
        tail = idx >= action_start
        allowed = allowed | (tail[:, None] & tail[None, :])
    m = allowed[None] & valid[:, None, :]  # [B, T, T]
    m = m | torch.eye(t, dtype=torch.bool, device=valid.device)[None]
    return m[:, None]  # [B, 1, T, T]


def example_batch(cfg: VLAConfig, batch_size: int = 2, text_vocab: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the shapes `VLAPolicy.forward` takes (tests, ONNX tracing, TRT profiles).

    Prompts get a different amount of left padding per row so masks are exercised.
    """
    g = torch.Generator().manual_seed(seed)
    b, c, s, t = batch_size, len(cfg.cameras), cfg.vision.image_size, cfg.text.prompt_len
    pixel_values = torch.rand(b, c, cfg.vision.channels, s, s, generator=g) * 2 - 1  # [B, C, 3 (fused: 6), S, S]
    prompt_ids = torch.randint(4, text_vocab, (b, t), generator=g)  # [B, T]
    prompt_mask = torch.ones(b, t, dtype=torch.bool)  # [B, T]
    for i in range(b):
        prompt_mask[i, : min(i, t - 1)] = False  # row i has i pad tokens on the left
    out = {"pixel_values": pixel_values, "prompt_ids": prompt_ids, "prompt_mask": prompt_mask}
    if cfg.use_state:
        out["state"] = torch.rand(b, cfg.state_dim, generator=g) * 2 - 1  # [B, S_dim] normalized
    return out
