"""Closed-loop evaluation of a policy in gymnasium envs: success rate with a Wilson 95% CI, episode
length, per-step latency, rollout video. Knows nothing of `sim/`: the caller (the `vla eval` CLI)
passes an env factory, and optionally a video writer and an expert factory.

    from vla.evaluation import ChunkedPolicy, evaluate
    report = evaluate(ChunkedPolicy(runtime), make_env=lambda: sim.make("PickCube"), episodes=20, seed=0,
                      video_path="pick.mp4", write_video=sim.write_video)
    report["success_rate"], report["success_ci95"], report["latency_ms_p50"]

`ChunkedPolicy` adapts a runtime (any backend of `vla.runtime.Runtime`: torch, ONNX Runtime, TensorRT)
to the one-action-per-step `sim.Policy` protocol through the chunk executor `vla control` uses: it
predicts a chunk, executes its first `execute_steps` actions, then re-plans. A chunk that fails to
decode is never executed (`vla.chunking`'s rule): a step no valid plan covers holds still (zero motion,
the previous gripper command); such chunks are counted in `invalid_chunks`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vla.chunking import RecedingHorizon
from vla.progress import progress
from vla.runtime import ACTION_DIM
from vla.splicing import AsyncSplicer, SeamMeter, prefix_tokens_per_step


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sensible at 0 and n successes, unlike Wald)."""
    if n <= 0:
        raise ValueError(f"wilson_interval needs n >= 1 trials, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must be in [0, n={n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class ChunkedPolicy:
    """`sim.Policy` over a runtime (`vla.runtime.Runtime`): chunks run through the one chunk executor
    (`vla.chunking`) that `vla control` uses too; records per-step and per-inference latency (ms).

    execute_steps: actions of each chunk run before re-planning (receding horizon; default: the runtime's
    checkpoint's `action.execute_steps`, else the whole chunk). A step no valid plan covers (a chunk that did
    not decode) holds still: zero motion and the previous gripper command."""

    def __init__(self, runtime: Any, execute_steps: int | None = None) -> None:
        self.execute_steps = runtime.execute_steps if execute_steps is None else int(execute_steps)
        if self.execute_steps is not None and self.execute_steps < 1:
            raise ValueError(f"execute_steps={execute_steps} must be >= 1")
        self.runtime = runtime
        self.executor = RecedingHorizon(self.execute_steps)
        self.step_ms: list[float] = []
        self.inference_ms: list[float] = []
        self.reset()

    def reset(self) -> None:
        self.executor.reset()
        self.runtime.reset()
        self._t = 0
        self._gripper = -1.0  # episodes start with the gripper open

    @property
    def invalid_chunks(self) -> int:
        """Chunks that did not decode, over every episode this runner ran (never executed)."""
        return self.executor.invalid_chunks

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        t0 = time.perf_counter()
        t = self._t
        if self.executor.needs_plan(t):
            chunk = self.runtime.infer(obs)  # ActionChunk [H, 7] robot units
            self.inference_ms.append((time.perf_counter() - t0) * 1e3)
            if self.execute_steps is not None and self.execute_steps > len(chunk.actions):
                raise ValueError(f"execute_steps={self.execute_steps} > the policy's chunk of {len(chunk.actions)}")
            self.executor.add_plan(t, chunk)
        step = self.executor.action(t)
        if step is None:  # no valid plan covers t: hold still
            action = np.zeros(ACTION_DIM, dtype=np.float32)
            action[-1] = self._gripper
        else:
            action = np.asarray(step.action, dtype=np.float32)
        self._gripper = float(action[-1])
        self._t += 1
        self.step_ms.append((time.perf_counter() - t0) * 1e3)
        return action


class DelayedChunkPolicy(ChunkedPolicy):
    """`sim.Policy` with a simulated inference latency of `delay_steps` control steps, on the env's step clock
    (deterministic, no wall clock: the same episodes for every mode, as fast as the sim runs).

    splice "sync": the arm holds still for `delay_steps` steps while the policy thinks, then plays the chunk
    from its first action (what a synchronous loop does with a slow policy). "switch" | "ensemble" |
    "prefix": asynchronous inference (`vla.splicing.AsyncSplicer`, as `vla control --async`): the chunk is
    computed on the observation of step t and delivered at step t + delay_steps, its first delay_steps actions
    skipped; the current chunk plays meanwhile. prefix forces the committed actions' tokens
    (`runtime.infer(obs, prefix_ids=...)`; autoregressive token policies)."""

    def __init__(self, runtime: Any, delay_steps: int, splice: str = "switch", execute_steps: int | None = None,
                 ensemble_m: float = 0.01) -> None:
        if delay_steps < 0:
            raise ValueError(f"delay_steps={delay_steps}: must be >= 0")
        if splice not in ("sync", "switch", "ensemble", "prefix"):
            raise ValueError(f"splice={splice!r}: must be sync, switch, ensemble or prefix")
        self.delay_steps, self.splice, self.ensemble_m = int(delay_steps), splice, ensemble_m
        tokens = prefix_tokens_per_step(runtime) if splice == "prefix" else None
        self.seams = SeamMeter()  # squared motion change at each chunk seam, over every episode
        steps = runtime.execute_steps if execute_steps is None else execute_steps
        # one splicer for every episode (its executor counts invalid chunks over the runner's lifetime);
        # execute_steps None = re-plan when the chunk runs out, as the synchronous runner does
        self.splicer = None if splice == "sync" else AsyncSplicer(splice, steps, ensemble_m, tokens)
        super().__init__(runtime, execute_steps)

    @property
    def invalid_chunks(self) -> int:
        return (self.splicer or self).executor.invalid_chunks

    def reset(self) -> None:
        super().reset()
        if self.splicer is not None:
            self.splicer.reset()
        self._due: tuple[int, Any, Any] | None = None  # (delivery step, request, chunk) being "computed"
        self.seams.new_episode()

    def _infer(self, obs: dict[str, Any], prefix_ids: Any = None) -> Any:
        t0 = time.perf_counter()
        chunk = self.runtime.infer(obs) if prefix_ids is None else self.runtime.infer(obs, prefix_ids=prefix_ids)
        self.inference_ms.append((time.perf_counter() - t0) * 1e3)
        return chunk

    def _step_sync(self, t: int, obs: dict[str, Any]) -> Any:
        if self._due is not None and self._due[0] <= t:  # the arm waited: the chunk starts now, from action 0
            self.executor.add_plan(t, self._due[2])
            self._due = None
        if self._due is None and self.executor.needs_plan(t):
            chunk = self._infer(obs)
            if self.delay_steps == 0:
                self.executor.add_plan(t, chunk)
            else:
                self._due = (t + self.delay_steps, None, chunk)
        return None if self._due is not None else self.executor.action(t)

    def _step_async(self, t: int, obs: dict[str, Any]) -> Any:
        sp = self.splicer
        if self._due is not None and self._due[0] <= t:
            sp.deliver(self._due[1], self._due[2], t)
            self._due = None
        if self._due is None and sp.wants_plan(t):
            req = sp.request(t)
            chunk = self._infer(obs, req.prefix_ids)
            if self.execute_steps is not None and self.execute_steps > len(chunk.actions):
                raise ValueError(f"execute_steps={self.execute_steps} > the policy's chunk of {len(chunk.actions)}")
            if self.delay_steps == 0:
                sp.deliver(req, chunk, t)
            else:
                self._due = (t + self.delay_steps, req, chunk)
        return sp.action(t)

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        t0 = time.perf_counter()
        t = self._t
        step = self._step_sync(t, obs) if self.splicer is None else self._step_async(t, obs)
        if step is None:  # nothing covers t (or the arm waits for a synchronous plan): hold still
            action = np.zeros(ACTION_DIM, dtype=np.float32)
            action[-1] = self._gripper
        else:
            action = np.asarray(step.action, dtype=np.float32)
            self.seams.add(dataclasses.replace(step, action=action))  # the float32 action the env gets
        self._gripper = float(action[-1])
        self._t += 1
        self.step_ms.append((time.perf_counter() - t0) * 1e3)
        return action


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def rollout(env: Any, policy: Any, seed: int, record: bool) -> dict[str, Any]:
    """One episode with the gymnasium API; success = info["success"] at the last step."""
    policy.reset()
    obs, info = env.reset(seed=seed)
    frames = [np.concatenate([obs["agentview"], obs["wrist"]], axis=1)] if record else []
    success, length = bool(info.get("success", False)), 0
    instruction = str(obs.get("instruction", ""))
    while True:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        length += 1
        success = bool(info["success"])
        if record:
            frames.append(np.concatenate([obs["agentview"], obs["wrist"]], axis=1))
        if terminated or truncated:
            break
    return {"seed": seed, "success": success, "length": length, "instruction": instruction, "frames": frames}


def evaluate(policy: Any, make_env: Callable[[], Any], episodes: int, seed: int = 0,
             video_path: str | None = None, write_video: Callable[..., Any] | None = None,
             video_episodes: int = 2, expert_factory: Callable[[Any], Any] | None = None,
             show_progress: bool = False) -> dict[str, Any]:
    """Roll out `episodes` episodes (seeds seed, seed+1, ...) -> JSON-ready report.

    policy: a `sim.Policy`-like callable (a `ChunkedPolicy` adds latency and invalid-chunk fields).
    expert_factory(env) -> expert: also rolls the expert out on the same seeds, for a relative score.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    if video_path is not None and write_video is None:
        raise ValueError("video_path needs a write_video callable (sim.write_video)")
    env = make_env()
    try:
        results, frames = [], []
        for i in progress(range(episodes), disable=not show_progress, desc="eval"):
            r = rollout(env, policy, seed + i, record=video_path is not None and i < video_episodes)
            frames.extend(r.pop("frames"))
            results.append(r)
        expert_rate = None
        if expert_factory is not None:
            expert = expert_factory(env)
            wins = sum(rollout(env, expert, seed + i, record=False)["success"] for i in range(episodes))
            expert_rate = wins / episodes
        fps = float(getattr(getattr(env, "unwrapped", env), "metadata", {}).get("render_fps", 10))
    finally:
        env.close()
    k = sum(r["success"] for r in results)
    lo, hi = wilson_interval(k, episodes)
    report: dict[str, Any] = {
        "episodes": episodes,
        "seed": seed,
        "successes": k,
        "success_rate": k / episodes,
        "success_ci95": [lo, hi],
        "mean_length": float(np.mean([r["length"] for r in results])),
        "latency_ms_p50": None,
        "latency_ms_p99": None,
        "per_episode": results,
    }
    if isinstance(policy, ChunkedPolicy):
        report.update({
            "latency_ms_p50": _pct(policy.step_ms, 50), "latency_ms_p99": _pct(policy.step_ms, 99),
            "inference_ms_p50": _pct(policy.inference_ms, 50), "inference_ms_p99": _pct(policy.inference_ms, 99),
            "invalid_chunks": policy.invalid_chunks, "execute_steps": policy.execute_steps,
        })
    if isinstance(policy, DelayedChunkPolicy):
        report.update({"delay_steps": policy.delay_steps, "splice": policy.splice, "seams": len(policy.seams.seam_sq),
                       "seam_jerk": float(np.mean(policy.seams.seam_sq)) if policy.seams.seam_sq else None})
    if expert_rate is not None:
        report["expert_success_rate"] = expert_rate
        report["relative_to_expert"] = (k / episodes) / expert_rate if expert_rate > 0 else None
    if video_path is not None and frames:
        write_video(video_path, frames, fps)
        report["video"] = str(video_path)
    return report
