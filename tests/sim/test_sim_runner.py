"""Episode runner, Policy protocol, video writer."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

import sim


class ZeroPolicy:
    def __init__(self) -> None:
        self.resets = 0

    def __call__(self, obs):
        return np.zeros(7, np.float32)

    def reset(self) -> None:
        self.resets += 1


def test_run_episode_expert_and_frames():
    env = sim.make("ReachCube", image_size=32)
    result = sim.run_episode(env, sim.make_expert("ReachCube", env), seed=0, wrist=True)
    assert result.success and result.ever_succeeded
    assert len(result.frames) == result.length + 1 == len(result.actions) + 1
    assert result.frames[0].shape == (32, 64, 3)  # agentview | wrist
    assert result.instruction and isinstance(result.instruction, str)


def test_run_episode_any_policy_truncates_at_horizon():
    env = sim.make("ReachCube", image_size=16, horizon=5)
    policy = ZeroPolicy()
    result = sim.run_episode(env, policy, seed=0, record=False)
    assert policy.resets == 1 and result.length == 5 and not result.success and result.frames == []
    assert isinstance(policy, sim.Policy)


def test_run_episode_rejects_non_policy():
    env = sim.make("ReachCube", image_size=16)
    with pytest.raises(TypeError, match="sim.Policy"):
        sim.run_episode(env, lambda obs: np.zeros(7), seed=0)


@pytest.mark.parametrize("ext", ["gif", "mp4"])
def test_write_video(tmp_path, ext):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(6)]
    path = sim.write_video(tmp_path / f"v.{ext}", frames, fps=10)
    assert path.exists() and path.stat().st_size > 0
    back = imageio.mimread(path)
    assert len(back) == 6 and back[0].shape[:2] == (32, 48)
    assert not list(tmp_path.glob(".v-*")), "temp file left behind"


def test_write_video_validates(tmp_path):
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        sim.write_video(tmp_path / "v.avi", [np.zeros((8, 8, 3), np.uint8)], fps=10)
    with pytest.raises(ValueError, match="no frames"):
        sim.write_video(tmp_path / "v.gif", [], fps=10)
    with pytest.raises(ValueError, match="uint8"):
        sim.write_video(tmp_path / "v.gif", [np.zeros((8, 8, 3), np.float32)], fps=10)
