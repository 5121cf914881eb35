"""Synthetic LeRobot datasets for training tests (no sim needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATE_NAMES = ["x", "y", "z", "qw", "qx", "qy", "qz", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]


def features(size: int) -> dict:
    img = {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channel"]}
    return {
        "observation.images.agentview": img,
        "observation.images.wrist": dict(img),
        "observation.state": {"dtype": "float32", "shape": [8], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [7], "names": ACTION_NAMES},
    }


def write_synthetic_dataset(root: Path, episodes: int = 3, length: int = 8, size: int = 32, seed: int = 0) -> Path:
    """Random images/states; actions are random but fixed per frame (a memorization target)."""
    from vla.data import LeRobotDatasetWriter

    rng = np.random.default_rng(seed)
    tasks = ["pick up the red cube", "push the green cube"]
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=features(size)) as w:
        for ep in range(episodes):
            for _ in range(length):
                a = rng.uniform(-0.02, 0.02, 7).astype(np.float32)
                a[6] = rng.choice([-1.0, 1.0])
                w.add_frame({
                    "observation.images.agentview": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                    "observation.images.wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                    "observation.state": rng.normal(size=8).astype(np.float32),
                    "action": a,
                }, task=tasks[ep % 2])
            w.save_episode()
    return root
