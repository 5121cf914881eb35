"""Evaluation: Wilson interval, chunk execution, the report, video hand-off (a fake env; no MuJoCo)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla.evaluation import ChunkedPolicy, DelayedChunkPolicy, evaluate, wilson_interval
from vla.policy_io import ActionChunk
from vla.runtime import Runtime


class FakeEnv:
    """Succeeds at step 3 for even seeds, truncates at step 5 otherwise; records the actions it got."""

    metadata = {"render_fps": 10}

    def __init__(self) -> None:
        self.actions: list[np.ndarray] = []
        self.closed = False

    def _obs(self) -> dict:
        return {"agentview": np.zeros((8, 8, 3), np.uint8), "wrist": np.ones((8, 8, 3), np.uint8),
                "state": np.zeros(8, np.float32), "instruction": "lift the cube"}

    def reset(self, seed: int | None = None):
        self.seed, self.t = seed, 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.actions.append(np.asarray(action))
        self.t += 1
        success = self.seed % 2 == 0 and self.t >= 3
        return self._obs(), float(success), success, self.t >= 5, {"success": success}

    def close(self) -> None:
        self.closed = True


class FakeVLA(Runtime):
    """A runtime (vla.runtime.Runtime): chunks [H, 7] whose first column counts calls; invalid on call `bad`."""

    def __init__(self, horizon: int = 3, bad: int | None = None, execute_steps: int | None = None) -> None:
        super().__init__()
        self.horizon, self.execute_steps = horizon, execute_steps
        self.calls, self.bad, self.resets = 0, bad, 0

    def infer_batch(self, observations) -> ActionChunk:
        self.calls += 1
        chunk = np.zeros((1, self.horizon, 7), np.float32)
        chunk[..., 0] = self.calls
        chunk[..., 1] = np.arange(self.horizon)
        chunk[..., 6] = 1.0
        valid = np.array([self.calls != self.bad])
        chunk[~valid] = np.nan
        return ActionChunk(chunk, valid)

    def reset(self) -> None:
        self.resets += 1


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert 0 < wilson_interval(0, 10)[1] < 0.35
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_chunks_execute_open_loop_then_replan() -> None:
    vla = FakeVLA(horizon=3)
    runner = ChunkedPolicy(vla, execute_steps=2)
    acts = [runner({}) for _ in range(5)]
    assert [a[0] for a in acts] == [1, 1, 2, 2, 3]  # replans every 2 steps
    assert [a[1] for a in acts] == [0, 1, 0, 1, 0]  # executes the chunk's first 2 actions in order
    assert len(runner.inference_ms) == 3 and len(runner.step_ms) == 5
    with pytest.raises(ValueError, match="execute_steps=4 > the policy's chunk of 3"):
        ChunkedPolicy(FakeVLA(horizon=3), execute_steps=4)({})
    with pytest.raises(ValueError, match="execute_steps"):
        ChunkedPolicy(vla, execute_steps=0)


def test_execute_steps_default_comes_from_the_checkpoint_config() -> None:
    runner = ChunkedPolicy(FakeVLA(horizon=4, execute_steps=3))
    assert runner.execute_steps == 3
    assert [runner({})[0] for _ in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    whole = ChunkedPolicy(FakeVLA(horizon=4))  # unset: the whole chunk, open loop
    assert whole.execute_steps is None and [whole({})[0] for _ in range(5)] == [1, 1, 1, 1, 2]
    assert ChunkedPolicy(FakeVLA(horizon=4, execute_steps=3), execute_steps=1).execute_steps == 1  # explicit wins


def test_undecodable_chunk_holds_still_and_is_counted() -> None:
    runner = ChunkedPolicy(FakeVLA(horizon=2, bad=2))
    acts = [runner({}) for _ in range(4)]
    assert np.all(np.isfinite(acts))
    np.testing.assert_array_equal(acts[2], [0, 0, 0, 0, 0, 0, 1.0])  # no plan covers t=2: zero motion, gripper kept
    assert acts[3][0] == 3  # asked again at the next step
    assert runner.invalid_chunks == 1


def test_undecodable_chunk_keeps_the_previous_plan_where_it_still_covers() -> None:
    """vla.chunking's one rule: an invalid chunk is never executed; the old plan runs on while it covers t."""
    runner = ChunkedPolicy(FakeVLA(horizon=3, bad=2), execute_steps=2)
    acts = [runner({}) for _ in range(4)]
    assert [(a[0], a[1]) for a in acts] == [(1, 0), (1, 1), (1, 2), (3, 0)]  # t=2: chunk 1's third action
    assert runner.invalid_chunks == 1


def test_report_counts_successes_and_writes_video(tmp_path) -> None:
    written = {}

    def write_video(path, frames, fps):
        written.update(path=path, n=len(frames), shape=frames[0].shape, fps=fps)

    envs = []

    def make_env():
        envs.append(FakeEnv())
        return envs[-1]

    report = evaluate(ChunkedPolicy(FakeVLA()), make_env, episodes=4, seed=10, video_path=str(tmp_path / "v.mp4"),
                      write_video=write_video, video_episodes=1, expert_factory=lambda env: ChunkedPolicy(FakeVLA()))
    assert report["episodes"] == 4 and report["successes"] == 2 and report["success_rate"] == 0.5
    assert report["mean_length"] == (3 + 5 + 3 + 5) / 4
    assert [e["seed"] for e in report["per_episode"]] == [10, 11, 12, 13]
    assert report["latency_ms_p50"] is not None and report["inference_ms_p99"] >= report["inference_ms_p50"]
    assert report["expert_success_rate"] == 0.5 and report["relative_to_expert"] == 1.0
    assert written == {"path": str(tmp_path / "v.mp4"), "n": 4, "shape": (8, 16, 3), "fps": 10.0}
    assert envs[0].closed
    json.dumps(report)  # JSON-ready


@pytest.mark.slow
def test_vla_eval_cli_runs_in_the_sim(tmp_path) -> None:
    """End to end through `vla eval` on a real MuJoCo task with an untrained tiny policy."""
    import argparse

    from tests.vla.model.conftest import io_of, make_policy
    from vla.cli import eval as eval_cli

    policy = make_policy(decoding="parallel")
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "ReachCube", "--episodes", "2",
                              "--video", str(tmp_path / "v.gif"), "--report", str(tmp_path / "r.json"), "--heldout",
                              "--no-progress"])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["episodes"] == 2 and report["split"] == "heldout" and 0 <= report["success_rate"] <= 1
    assert report["latency_ms_p50"] > 0 and (tmp_path / "v.gif").stat().st_size > 0
    assert report["image_size"] == 32  # rendered at the policy's input size (the debug config's 32 px) by default
    args = parser.parse_args(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "ReachCube", "--episodes", "1",
                              "--report", str(tmp_path / "r.json"), "--image-size", "48", "--no-progress"])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "r.json").read_text())["image_size"] == 48
    args = parser.parse_args(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "ReachCube", "--episodes", "1",
                              "--report", str(tmp_path / "r.json"), "--heldout-positions", "--no-progress"])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["split"] == "train" and r["position_split"] == "heldout" and "instruction_split" not in r
    args = parser.parse_args(["eval", "--checkpoint", str(tmp_path / "ckpt"), "--task", "ReachCube", "--episodes", "1",
                              "--heldout", "--heldout-instructions", "--no-progress"])
    with pytest.raises(ValueError, match="--heldout already"):
        args.func(args)


def _play(runner, n):
    acts = [runner({}) for _ in range(n)]
    return [(int(a[0]), int(a[1])) for a in acts]  # (call that planned it, index in its chunk); (0, 0) = hold


def test_simulated_latency_zero_sync_is_the_plain_runner() -> None:
    plain = _play(ChunkedPolicy(FakeVLA(horizon=4), execute_steps=2), 9)
    assert _play(DelayedChunkPolicy(FakeVLA(horizon=4), 0, "sync", execute_steps=2), 9) == plain
    assert _play(DelayedChunkPolicy(FakeVLA(horizon=4), 0, "switch", execute_steps=2), 9) == plain


def test_simulated_latency_sync_holds_while_the_policy_thinks() -> None:
    runner = DelayedChunkPolicy(FakeVLA(horizon=4), 2, "sync", execute_steps=2)
    # plan at 0, the arm waits 2 steps, plays actions 0, 1; plans again at 4, waits, ...
    assert _play(runner, 9) == [(0, 0), (0, 0), (1, 0), (1, 1), (0, 0), (0, 0), (2, 0), (2, 1), (0, 0)]


def test_simulated_latency_async_switch_skips_the_past_and_keeps_moving() -> None:
    runner = DelayedChunkPolicy(FakeVLA(horizon=4), 2, "switch", execute_steps=2)
    # chunk 1 planned at 0 arrives at 2 (plays its index 2, 3); chunk 2 planned at 2 arrives at 4, ...
    assert _play(runner, 8) == [(0, 0), (0, 0), (1, 2), (1, 3), (2, 2), (2, 3), (3, 2), (3, 3)]
    runner = DelayedChunkPolicy(FakeVLA(horizon=4), 4, "switch", execute_steps=2)
    assert _play(runner, 6) == [(0, 0)] * 6  # a 4-step chunk 4 steps late is wholly in the past: hold


def test_simulated_latency_prefix_needs_a_token_runtime() -> None:
    with pytest.raises(ValueError, match="splice='prefix'"):
        DelayedChunkPolicy(FakeVLA(horizon=4), 2, "prefix")
    with pytest.raises(ValueError, match="delay_steps"):
        DelayedChunkPolicy(FakeVLA(horizon=4), -1, "switch")
