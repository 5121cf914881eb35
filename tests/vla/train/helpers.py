"""Synthetic LeRobot datasets for training tests (no sim needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATE_NAMES = ["x", "y", "z", "qw", "qx", "qy", "qz", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]


def features(size: int, env_state: bool = False) -> dict:
    img = {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channel"]}
    out = {
        "observation.images.agentview": img,
        "observation.images.wrist": dict(img),
        "observation.state": {"dtype": "float32", "shape": [8], "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": [7], "names": ACTION_NAMES},
    }
    if env_state:
        out["observation.environment_state"] = {"dtype": "float32", "shape": [6], "names": [f"e{i}" for i in range(6)]}
    return out


def write_synthetic_dataset(root: Path, episodes: int = 3, length: int = 8, size: int = 32, seed: int = 0,
                            env_state: bool = False) -> Path:
    """Random images/states; actions are random but fixed per frame (a memorization target).

    env_state=True adds `observation.environment_state` [6]: the mean colour of the agentview image (a target
    the vision path can learn), twice."""
    from vla.data import LeRobotDatasetWriter

    rng = np.random.default_rng(seed)
    tasks = ["pick up the red cube", "push the green cube"]
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=features(size, env_state)) as w:
        for ep in range(episodes):
            for _ in range(length):
                a = rng.uniform(-0.02, 0.02, 7).astype(np.float32)
                a[6] = rng.choice([-1.0, 1.0])
                frame = {
                    "observation.images.agentview": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                    "observation.images.wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                    "observation.state": rng.normal(size=8).astype(np.float32),
                    "action": a,
                }
                if env_state:
                    mean = frame["observation.images.agentview"].reshape(-1, 3).mean(0) / 255.0
                    frame["observation.environment_state"] = np.tile(mean, 2).astype(np.float32)
                w.add_frame(frame, task=tasks[ep % 2])
            w.save_episode()
    return root
