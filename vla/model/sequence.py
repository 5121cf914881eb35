"""The sequence layout's masks and positions (torch): training, every decoding path and the exported graphs
build them here.

    attn = attention_mask_4d(valid, action_start, bidirectional_tail)   # bool [B, 1, T, T], True = may attend
    pos = position_ids(valid)                                          # [B, T], pads skipped

The observation transforms (image resize and normalization, prompts, state) are numpy and live in
`vla.policy_io`, shared by training and every runtime.
"""

from __future__ import annotations

import torch


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
