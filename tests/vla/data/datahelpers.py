"""Helpers for vla.data tests: a tiny feature spec, deterministic frames, an episode recorder."""

from __future__ import annotations

import numpy as np

H = W = 32

FEATURES = {
    "observation.images.agentview": {
        "dtype": "image",
        "shape": [H, W, 3],
        "names": ["height", "width", "channel"],
    },
    "observation.images.wrist": {
        "dtype": "image",
        "shape": [H, W, 3],
        "names": ["height", "width", "channel"],
    },
    "observation.state": {"dtype": "float32", "shape": [8], "names": [f"s{i}" for i in range(8)]},
    "action": {"dtype": "float32", "shape": [7], "names": [f"a{i}" for i in range(7)]},
}


def smooth_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth random image (video codecs reproduce it closely, unlike white noise)."""
    y, x = np.mgrid[0:H, 0:W] / H
    c = rng.uniform(0.2, 0.8, size=(3, 3))
    img = np.stack([c[i, 0] + 0.3 * np.sin(2 * np.pi * (c[i, 1] * x + c[i, 2] * y)) for i in range(3)], -1)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)  # [H, W, 3]


def make_frame(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "observation.images.agentview": smooth_image(rng),
        "observation.images.wrist": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "observation.state": rng.normal(size=8).astype(np.float32),
        "action": rng.uniform(-1, 1, size=7).astype(np.float32),
    }


def record(writer, rng, lengths, tasks=None) -> list[list[dict]]:
    """Save one episode per length; returns the frames (with "task") written, per episode."""
    episodes = []
    for e, n in enumerate(lengths):
        task = (tasks or ["pick up the red cube", "push the blue cube"])[e % 2]
        frames = []
        for _ in range(n):
            f = make_frame(rng)
            writer.add_frame(f, task=task)
            frames.append({**f, "task": task})
        writer.save_episode()
        episodes.append(frames)
    return episodes
