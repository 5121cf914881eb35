"""Action-chunk execution, the one executor `vla eval` and `vla control` share: which action to run at
control step t, given chunks planned earlier. Torch-free.

    ex = make_executor("receding", replan_every=4)          # open_loop | receding | ensemble
    ex.reset()
    for t in range(T):
        if ex.needs_plan(t):
            ex.add_plan(t, runtime.infer(obs), origin_ns=obs.t_obs)   # ActionChunk (or float [H, 7]), robot units
        step = ex.action(t)                                      # ChunkStep(action [7], origin_step, origin_ns) | None

Modes:
- open_loop: plan, execute all H actions, plan again (fewest policy calls; blind for H steps).
- receding: plan every k steps (k <= H) and execute the first k actions of the newest chunk.
- ensemble (ACT, Zhao et al. 2023): plan every step; the action for step t averages every chunk
  that covers t with weights exp(-m * i), i = 0 for the *oldest* chunk (ACT's choice: it favours
  consistency; m = 0.01 by default, larger m = faster reaction to new observations).

Invalid chunks (one rule for every caller): a chunk that did not decode (`ActionChunk.valid` False, or any
non-finite value) is never executed, nor partly executed. `add_plan` refuses it and counts it in
`invalid_chunks`; the previous plan keeps running for the steps it still covers, and where none covers a
step `action(t)` is None: the caller holds (the bridge holds the arm; `vla eval` sends zero motion with the
last gripper command). `needs_plan` stays True, so the next step asks the policy again.

`origin_step`/`origin_ns` say which observation the action came from (the newest contributing
chunk), so the control loop can give the action an honest deadline: origin_ns + (t - origin_step)
control periods + the allowed latency. A stale plan then gets dropped by the bridge, not executed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("open_loop", "receding", "ensemble")


@dataclass(frozen=True)
class ChunkStep:
    action: np.ndarray  # float64 [7]
    origin_step: int  # control step of the observation the newest contributing chunk came from
    origin_ns: int  # that observation's timestamp (bridge clock)


def _check_chunk(chunk: Any) -> tuple[np.ndarray, bool]:
    """-> (float64 [H, D], valid) from an ActionChunk or an array."""
    actions = getattr(chunk, "actions", chunk)
    c = np.asarray(actions, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"action chunk must be [H, D] with H >= 1, got shape {c.shape}")
    valid = bool(np.all(getattr(chunk, "valid", True))) and bool(np.isfinite(c).all())
    return c, valid


class ChunkExecutor:
    invalid_chunks: int = 0  # over the executor's lifetime (reset() starts an episode, not a new count)

    def reset(self) -> None:
        raise NotImplementedError

    def needs_plan(self, t: int) -> bool:
        raise NotImplementedError

    def add_plan(self, t: int, chunk: Any, origin_ns: int = 0) -> bool:
        """Plan `chunk` (ActionChunk or [H, D]) from step t; False (and counted) when it is invalid."""
        c, valid = _check_chunk(chunk)
        if not valid:
            self.invalid_chunks += 1
            return False
        self._add(t, c, origin_ns)
        return True

    def _add(self, t: int, chunk: np.ndarray, origin_ns: int) -> None:
        raise NotImplementedError

    def action(self, t: int) -> ChunkStep | None:
        """The action for step t, or None when no plan covers t (the bridge then holds)."""
        raise NotImplementedError


class RecedingHorizon(ChunkExecutor):
    """Re-plan every `replan_every` steps (None: when the chunk runs out = open loop)."""

    def __init__(self, replan_every: int | None = None) -> None:
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every={replan_every}: must be >= 1 (or None for open loop)")
        self.replan_every = replan_every
        self.reset()

    def reset(self) -> None:
        self._chunk: np.ndarray | None = None
        self._t0 = 0
        self._origin_ns = 0

    def _len(self) -> int:
        n = len(self._chunk)
        return n if self.replan_every is None else min(n, self.replan_every)

    def needs_plan(self, t: int) -> bool:
        return self._chunk is None or t - self._t0 >= self._len() or t < self._t0

    def _add(self, t: int, chunk: np.ndarray, origin_ns: int) -> None:
        self._chunk, self._t0, self._origin_ns = chunk, t, origin_ns

    def action(self, t: int) -> ChunkStep | None:
        if self._chunk is None or not 0 <= t - self._t0 < len(self._chunk):
            return None
        return ChunkStep(self._chunk[t - self._t0], self._t0, self._origin_ns)


class TemporalEnsemble(ChunkExecutor):
    def __init__(self, m: float = 0.01) -> None:
        if not m >= 0:
            raise ValueError(f"ensemble m={m}: must be >= 0")
        self.m = m
        self.reset()

    def reset(self) -> None:
        self._plans: list[tuple[int, int, np.ndarray]] = []  # (t0, origin_ns, chunk [H, D]), oldest first

    def needs_plan(self, t: int) -> bool:
        return not self._plans or self._plans[-1][0] < t

    def _add(self, t: int, chunk: np.ndarray, origin_ns: int) -> None:
        self._plans = [p for p in self._plans if p[0] + len(p[2]) > t]  # drop chunks that ended
        self._plans.append((t, origin_ns, chunk))

    def action(self, t: int) -> ChunkStep | None:
        covering = [(t0, ns, c[t - t0]) for t0, ns, c in self._plans if 0 <= t - t0 < len(c)]
        if not covering:
            return None
        # ACT's weights, w_0 (oldest) the largest. Scalar libm exp and a left-to-right sum, not np.exp /
        # .sum(0): numpy's SIMD kernels differ by CPU (AVX2 / AVX-512) in the last bit, and the same plans
        # must give the same action on every machine (tests/test_behaviour_fixture.py compares bit for bit)
        w = [math.exp(-self.m * k) for k in range(len(covering))]
        acc = w[0] * np.asarray(covering[0][2], dtype=np.float64)
        for wk, (_, _, a) in zip(w[1:], covering[1:], strict=True):
            acc = acc + wk * np.asarray(a, dtype=np.float64)
        t0, ns, _ = covering[-1]
        return ChunkStep(acc / math.fsum(w), t0, ns)


def make_executor(mode: str, replan_every: int = 1, ensemble_m: float = 0.01) -> ChunkExecutor:
    if mode == "open_loop":
        return RecedingHorizon(None)
    if mode == "receding":
        return RecedingHorizon(replan_every)
    if mode == "ensemble":
        return TemporalEnsemble(ensemble_m)
    raise ValueError(f"chunk mode {mode!r}: must be one of {MODES}")
