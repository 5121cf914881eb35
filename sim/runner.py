"""Episode runner, the `Policy` protocol any policy plugs in through, and a rollout video writer.

import sim
env = sim.make("PickCube")
result = sim.run_episode(env, sim.make_expert("PickCube", env), seed=0)
print(result.success, result.length)
sim.write_video("pick.gif", result.frames, fps=env.metadata["render_fps"])
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    """obs dict (see sim.env) -> action float32 [7]; `reset()` at the start of every episode."""

    def __call__(self, obs: dict[str, Any]) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclass
class EpisodeResult:
    success: bool  # info["success"] at the last step
    length: int  # policy steps taken
    frames: list[np.ndarray] = field(default_factory=list)  # agentview uint8 [H, W, 3]: reset + every step
    instruction: str = ""
    ever_succeeded: bool = False  # success at any step (differs when terminate_on_success=False)
    actions: list[np.ndarray] = field(default_factory=list)  # float32 [7] per step


def run_episode(
    env: gym.Env,
    policy: Policy,
    seed: int | None = None,
    record: bool = True,
    max_steps: int | None = None,
    wrist: bool = False,
) -> EpisodeResult:
    """Roll `policy` out for one episode (until terminated/truncated or `max_steps`).

    record: keep the agentview frames (side by side with the wrist view when `wrist`).
    """
    if not isinstance(policy, Policy):
        raise TypeError(
            f"{type(policy).__name__} does not follow sim.Policy (needs __call__(obs) and reset())"
        )
    policy.reset()
    obs, info = env.reset(seed=seed)
    result = EpisodeResult(success=bool(info["success"]), length=0, instruction=str(obs["instruction"]))

    def keep(o: dict[str, Any]) -> None:
        if record:
            result.frames.append(
                np.concatenate([o["agentview"], o["wrist"]], axis=1) if wrist else o["agentview"]
            )

    keep(obs)
    limit = max_steps if max_steps is not None else np.inf
    while result.length < limit:
        action = np.asarray(policy(obs), dtype=np.float32)
        obs, _, terminated, truncated, info = env.step(action)
        result.length += 1
        result.actions.append(action)
        result.success = bool(info["success"])
        result.ever_succeeded |= result.success
        keep(obs)
        if terminated or truncated:
            break
    return result


def write_video(path: str | os.PathLike, frames: list[np.ndarray], fps: float) -> Path:
    """Write uint8 [H, W, 3] frames to .mp4 (imageio-ffmpeg) or .gif, atomically (temp file + rename)."""
    path = Path(path)
    if not frames:
        raise ValueError("write_video: no frames")
    if fps <= 0:
        raise ValueError(f"write_video: fps={fps} must be > 0")
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"write_video: {path} must end in .mp4 or .gif")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != shape:
            raise ValueError(
                f"write_video: frame {i} is {f.dtype} {f.shape}, expected uint8 {shape} (H, W, 3)"
            )
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent, prefix=f".{path.stem}-")
    os.close(fd)
    try:
        if suffix == ".gif":
            # duration per frame in ms; loop forever
            imageio.mimsave(tmp, frames, format="GIF", duration=1000.0 / fps, loop=0)
        else:
            # macro_block_size=1 keeps odd sizes such as 128x256 without rescaling
            imageio.mimsave(
                tmp,
                frames,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                quality=7,
                macro_block_size=1,
                pixelformat="yuv420p",
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
