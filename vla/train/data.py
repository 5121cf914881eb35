"""In-memory training frames from a LeRobot dataset, action-chunk targets and batches.

    frames = load_frames(["data/pick", "data/push"], cameras=("agentview", "wrist"), image_size=64)
    train_idx, val_idx = split_episodes(frames, val_fraction=0.1, seed=0)
    batch = make_batch(io, frames, idx, augment_cfg, generator)   # tensors for VLAPolicy.compute_loss

Images are decoded once and resized to the policy's resolution with `vla.policy_io.resize_images` (the
function every runtime uses), so small datasets train without a data-loader process. Batches go through
the policy's `PolicyIO` (image normalization, prompts, state, action targets): the transforms inference uses. The target
for frame t is the chunk actions[t : t + H] of its episode; steps past the episode end repeat the last
action and are left out of the loss (`action_mask`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vla.policy_io import ENV_STATE_KEY, PolicyIO, resize_for, resize_images
from vla.train.augment import augment_images
from vla.train.config import AugmentConfig, StartOversample


@dataclass
class Frames:
    images: torch.Tensor  # uint8 [N, C, S, S, 3]
    states: np.ndarray  # float32 [N, S_dim] (raw units)
    actions: np.ndarray  # float32 [N, D] (raw units)
    task_index: np.ndarray  # int64 [N]
    tasks: list[str]
    episode: np.ndarray  # int64 [N] episode index
    episode_stop: np.ndarray  # int64 [N] exclusive end position of each frame's episode
    env_states: np.ndarray | None = None  # float32 [N, E] privileged task state (auxiliary loss), if recorded

    def __len__(self) -> int:
        return len(self.actions)


def load_frames(roots: str | Sequence[str], cameras: Sequence[str], image_size: int,
                state_key: str = "observation.state", action_key: str = "action", vision: Any = None) -> Frames:
    """One dataset root, or several concatenated (multi-task training): tasks are merged by string.
    `vision` (a VisionConfig): resize the way the policy's transforms do (`vla.policy_io.resize_for`;
    default: antialiased bilinear to image_size)."""
    if isinstance(roots, (str, bytes)) or not isinstance(roots, Sequence):
        roots = [roots]
    if not roots:
        raise ValueError("need at least one dataset root")
    # roots load side by side: PNG decoding and parquet reads release the GIL for part of the time (77k frames
    # of the quickstart: 76 s one after another, 62 s on 2 threads); `map` keeps the order and re-raises
    workers = min(len(roots), os.cpu_count() or 1, 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda r: _load_one(str(r), cameras, image_size, state_key, action_key, vision=vision), roots))
    if len(parts) == 1:
        return parts[0]
    tasks: list[str] = []
    for f in parts:
        tasks += [t for t in f.tasks if t not in tasks]
    task_index, episode, stop = [], [], []
    frame_off = ep_off = 0
    for f in parts:
        remap = np.array([tasks.index(t) for t in f.tasks], dtype=np.int64)
        task_index.append(remap[f.task_index])
        episode.append(f.episode + ep_off)
        stop.append(f.episode_stop + frame_off)
        frame_off += len(f)
        ep_off += int(f.episode.max()) + 1
    env = [f.env_states for f in parts]
    return Frames(torch.cat([f.images for f in parts]), np.concatenate([f.states for f in parts]),
                  np.concatenate([f.actions for f in parts]), np.concatenate(task_index), tasks,
                  np.concatenate(episode), np.concatenate(stop),
                  np.concatenate(env) if all(e is not None for e in env) else None)  # all or none


def _load_one(root: str, cameras: Sequence[str], image_size: int, state_key: str, action_key: str,
              chunk: int = 256, vision: Any = None) -> Frames:
    from vla.data import LeRobotDataset

    ds = LeRobotDataset(root)
    keys = [f"observation.images.{c}" for c in cameras]
    missing = [k for k in (*keys, action_key) if k not in ds.features]
    if missing:
        raise ValueError(f"dataset {root} lacks features {missing}; it has {sorted(ds.features)}")
    n = len(ds)
    if n == 0:
        raise ValueError(f"dataset {root} has no frames")
    images = torch.empty(n, len(cameras), image_size, image_size, 3, dtype=torch.uint8)
    for lo in range(0, n, chunk):  # decode + resize in chunks to bound peak memory
        hi = min(n, lo + chunk)
        raw = np.stack([np.stack([ds.frame(i, k) for k in keys]) for i in range(lo, hi)])  # [b, C, H, W, 3]
        small = resize_for(vision, raw) if vision is not None else resize_images(raw, image_size)
        images[lo:hi] = torch.from_numpy(small)
    states = (np.asarray(ds.get_column(state_key), dtype=np.float32) if state_key in ds.features
              else np.zeros((n, 0), np.float32))
    episode = np.asarray(ds.episode_indices, dtype=np.int64)
    stop = np.zeros(n, dtype=np.int64)
    for ep in np.unique(episode):
        a, b = ds.episode_bounds(int(ep))
        stop[a:b] = b
    env = np.asarray(ds.get_column(ENV_STATE_KEY), dtype=np.float32) if ENV_STATE_KEY in ds.features else None
    return Frames(images, states, np.asarray(ds.get_column(action_key), dtype=np.float32),
                  np.asarray(ds.get_column("task_index"), dtype=np.int64), list(ds.tasks), episode, stop, env)


def check_env_states(frames: Frames, aux_state_dim: int | None) -> None:
    """A policy with an auxiliary head (`VLAConfig.aux`) needs that many task-state dims in every frame.

    Real teleop recordings have no privileged task state: training such data with the head is refused
    up front, naming the column, rather than dropping the auxiliary loss without a word."""
    if aux_state_dim is None:
        return
    if frames.env_states is None or frames.env_states.shape[1] != aux_state_dim:
        got = "no such column in some dataset" if frames.env_states is None else f"{frames.env_states.shape[1]} dims"
        raise ValueError(f"VLAConfig.aux.state_dim={aux_state_dim}, but the datasets' {ENV_STATE_KEY!r} has {got} "
                         "(teleop recordings do not have it); record demos with `vla sim demos`, or train without "
                         "the auxiliary head: --set model.aux=null (see README, fine-tuning on teleop demos)")


def split_episodes(frames: Frames, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame positions of training and held-out episodes (None when val_fraction == 0)."""
    eps = np.unique(frames.episode)
    n_val = int(round(len(eps) * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if n_val == 0:
        return np.arange(len(frames)), None
    if n_val >= len(eps):
        raise ValueError(f"val_fraction={val_fraction} leaves no training episodes ({len(eps)} episodes)")
    val_eps = np.random.default_rng(seed).permutation(eps)[:n_val]
    is_val = np.isin(frames.episode, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def sampling_weights(frames: Frames, idx: np.ndarray, oversample: StartOversample | None) -> np.ndarray | None:
    """Probabilities over `idx` that weight the first `oversample.steps` frames of every episode
    `oversample.weight` times.

    Early frames are where the policy must decide *which* object to go to; later frames can mostly be
    solved from the arm's own position, so uniform sampling under-trains the grounding. None = uniform.
    """
    if oversample is None or oversample.weight == 1.0:
        return None
    start_steps, start_weight = oversample.steps, oversample.weight
    idx = np.asarray(idx)
    start = episode_starts(frames)
    w = np.where(idx - start[idx] < start_steps, start_weight, 1.0)
    return w / w.sum()


def episode_starts(frames: Frames) -> np.ndarray:
    """[N] the index of the first frame of each frame's episode (frames are contiguous per episode)."""
    first = np.r_[True, frames.episode[1:] != frames.episode[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(frames)), 0))


def pick_frames(rng: np.random.Generator, idx: np.ndarray, size: int, weights: np.ndarray | None) -> np.ndarray:
    """One global batch of frame indices from `idx`, drawn with `weights` (sampling_weights; None = uniform);
    with replacement only if idx is too short."""
    return rng.choice(idx, size=size, replace=len(idx) < size, p=weights)


def chunk_targets(frames: Frames, idx: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw action chunks [B, H, D] starting at each frame, and which steps lie inside the episode [B, H]."""
    steps = idx[:, None] + np.arange(horizon)[None, :]  # [B, H]
    inside = steps < frames.episode_stop[idx][:, None]
    steps = np.minimum(steps, frames.episode_stop[idx][:, None] - 1)  # repeat the last action past the end
    return frames.actions[steps], inside


def make_batch(io: PolicyIO, frames: Frames, idx: np.ndarray, augment: AugmentConfig | None,
               generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Tensors for `VLAPolicy.compute_loss`, plus `actions` (raw chunks) and `step_valid` for L1 metrics."""
    idx = np.asarray(idx, dtype=np.int64)
    small = frames.images[torch.from_numpy(idx)]  # [B, C, S, S, 3] uint8
    if augment is not None:
        if generator is None:
            raise ValueError("augmentation needs a torch.Generator")
        small = augment_images(small, augment, generator)  # float in [0, 1] [B, C, 3, S, S]
    pixel_values = torch.from_numpy(io.pixels(small.numpy()))
    ids, mask = io.prompts([frames.tasks[t] for t in frames.task_index[idx]])
    chunks, inside = chunk_targets(frames, idx, io.cfg.action.horizon)
    normed = io.normalize_actions(chunks)
    action_ids, action_mask = io.targets(normed, inside)
    batch = {"pixel_values": pixel_values, "prompt_ids": torch.from_numpy(ids), "prompt_mask": torch.from_numpy(mask),
             "action_ids": torch.from_numpy(action_ids), "action_mask": torch.from_numpy(action_mask),
             "actions": torch.from_numpy(chunks), "step_valid": torch.from_numpy(inside)}
    a = io.cfg.action
    if a.prefix_conditioning > 0 and generator is not None:  # training: this share of chunks gets k given steps
        b = len(idx)
        on = torch.rand(b, generator=generator) < a.prefix_conditioning
        k = torch.randint(1, a.horizon, (b,), generator=generator)  # k in [1, H-1]
        batch["given_steps"] = torch.where(on, k, torch.zeros_like(k))  # [B]
        if a.prefix_noise > 0:  # the slots are given noisy ids (only the given ones are read); targets stay clean
            noise = torch.randn(normed[..., :6].shape, generator=generator).numpy() * a.prefix_noise
            noisy = np.array(normed, dtype=np.float32, copy=True)
            noisy[..., :6] = np.clip(noisy[..., :6] + noise, -1.0, 1.0)
            batch["slot_ids"] = torch.from_numpy(io.targets(noisy, inside)[0])  # [B, n]
    if io.cfg.use_state:
        batch["state"] = torch.from_numpy(io.state(frames.states[idx]))
    if io.cfg.aux is not None:  # frames passed check_env_states when they were loaded for training
        env = io.normalizers[ENV_STATE_KEY].normalize(frames.env_states[idx].astype(np.float64))
        batch["env_state"] = torch.from_numpy(np.asarray(env, dtype=np.float32))
    return batch
