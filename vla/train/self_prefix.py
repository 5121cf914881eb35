"""Self-prefix training for prefix-conditioned parallel policies (issue 18): `TrainConfig.prefix_self`.

    batch = make_batch(io, frames, idx, augment, gen)              # given_steps k [B], the demo's own prefix
    self_prefix(policy, io, frames, idx, batch, share=0.5, generator=gen)   # some rows: the policy's own

In async splicing (vla.splicing, mode prefix) the k steps a new chunk is given are what the *previous* chunk
commits: planned k steps earlier, its steps k..2k-1. Trained only on the demo's own next actions, which
always agree with the image, the policy learns to continue whatever it is given; in closed loop it is then
given its own older, less accurate steps and copies them, so errors compound across chunks (BENCHMARKS.md,
"Prefix conditioning for parallel decoding"). Here a share of the conditioned rows is given what the policy
itself predicts (greedy, no gradient, unconditioned, no augmentation) from the frame k steps earlier, its
steps k..2k-1, while the targets stay the demo's: the continuation must come from the newest image where
the committed steps disagree with it (scheduled sampling for the seam). Rows whose earlier frame lies
before the episode start, or whose k exceeds H/2 (the earlier chunk does not cover the prefix), keep the
demo's prefix.
"""

from __future__ import annotations

import numpy as np
import torch

from vla.model import VLAPolicy
from vla.model.decoding import decode_parallel
from vla.policy_io import PolicyIO
from vla.train.data import Frames, episode_starts, make_batch


def self_prefix(policy: VLAPolicy, io: PolicyIO, frames: Frames, idx: np.ndarray, batch: dict[str, torch.Tensor],
                share: float, generator: torch.Generator, starts: np.ndarray | None = None) -> int:
    """Give `share` of the conditioned rows of `batch` the policy's own prefix (module docstring), in place
    (batch["slot_ids"]). Returns how many rows were changed."""
    k = batch.get("given_steps")
    if k is None or share <= 0:
        return 0
    idx = np.asarray(idx, dtype=np.int64)
    starts = episode_starts(frames) if starts is None else starts
    kk = k.numpy().astype(np.int64)
    h, dim = policy.cfg.action.horizon, policy.cfg.action.dim
    pick = torch.rand(len(idx), generator=generator).numpy() < share
    rows = np.flatnonzero(pick & (kk > 0) & (2 * kk <= h) & (idx - kk >= starts[idx]))
    if rows.size == 0:
        return 0
    earlier = make_batch(io, frames, idx[rows] - kk[rows], None, None)  # the frames the previous chunks saw
    inputs = {n: earlier[n] for n in ("pixel_values", "prompt_ids", "prompt_mask", "state") if n in earlier}
    device = policy.action_slots.device
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            pred = decode_parallel(policy, {n: v.to(device) for n, v in inputs.items()}).cpu()  # [R, n]
    finally:
        policy.train(was_training)
    slot_ids = batch.get("slot_ids", batch["action_ids"]).clone()
    for j, r in enumerate(rows):
        n = int(kk[r]) * dim
        slot_ids[r, :n] = pred[j, n:2 * n]  # its steps k..2k-1: what it committed for this chunk's first k
    batch["slot_ids"] = slot_ids
    return int(rows.size)
