"""Asynchronous chunk execution on a step clock: which action runs at control step t when chunks arrive d
steps after the observation they were planned on. Torch-free, no threads, no wall clock: the control loop
(`deploy.control`, `vla control --async`) drives it, and the tests drive it with a fake clock.

    sp = AsyncSplicer("prefix", replan_every=2, tokens_per_step=7)   # switch | ensemble | prefix
    sp.reset()
    for t in range(T):
        for req, chunk in finished:                  # chunks the worker finished since the last tick
            sp.deliver(req, chunk, t)                 # -> "spliced" | "expired" | "invalid"
        if worker_idle and sp.wants_plan(t):
            req = sp.request(t, origin_ns=obs.t_obs)  # PlanRequest; prefix mode: req.prefix_ids to force
            worker.submit(req, obs)                   # runtime.infer(obs, prefix_ids=req.prefix_ids)
        step = sp.action(t)                           # ChunkStep | None (None: the bridge holds)

A chunk planned at step s and delivered at step t = s + d has its first d actions in the past: they are
skipped, and the chunk plays from index d (a chunk with d >= H is wholly in the past: "expired", never
executed; the plan before it runs on where it covers the step, otherwise the step holds). How the new chunk
meets the one that was playing:
- switch: the new chunk replaces the old one from step t on.
- ensemble: every chunk covering a step is averaged over the overlap (vla.chunking.TemporalEnsemble, ACT's
  exp(-m i) weights, i = 0 the oldest).
- prefix (prefix-forced decoding, the token-policy analogue of real-time chunking's inpainting): when the
  request is made, the actions that will run while it is computed are known: the current chunk's next k
  actions, k = the delay estimate (the largest delay of the last `delay_window` chunks, capped by what the
  current chunk covers). Their token ids (`ActionChunk.ids`, `tokens_per_step` per action) are forced as the
  first k * tokens_per_step tokens of the new chunk, so its first k actions *are* the committed ones and the
  rest continues them; the splice itself is a switch. Those first k actions are reported with the previous
  chunk's origin (they are its actions), so the seam is where the new chunk's own actions begin.
  Autoregressive decoders condition on the forced tokens; a parallel decoder does when it was trained with
  `action.prefix_conditioning` (its first k slots are given the forced tokens' embeddings). An untrained
  parallel decoder cannot (forcing would only overwrite slots, the same as switch), so
  `prefix_tokens_per_step` refuses it.

Requests: at most one in flight, so a chunk is never older than the one playing, and each request is made on
the newest observation the moment the previous chunk is in (the worker never queues an old observation). `wants_plan(t)` is True when none is in flight and either there is no plan,
`replan_every` steps passed since the last request, or the plan runs out within the delay estimate.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla.chunking import ChunkExecutor, ChunkStep, RecedingHorizon, TemporalEnsemble

SPLICE_MODES = ("switch", "ensemble", "prefix")
DELIVERY = ("spliced", "expired", "invalid")


@dataclass(frozen=True)
class PlanRequest:
    id: int  # 0, 1, ... per episode
    step: int  # control step of the observation it plans on
    origin_ns: int  # that observation's timestamp (bridge clock): the deadlines of its actions count from it
    prefix_ids: np.ndarray | None = None  # int64 [k * tokens_per_step]: committed actions' tokens (prefix mode)
    forced_steps: int = 0  # k


class AsyncSplicer:
    def __init__(self, mode: str = "switch", replan_every: int | None = 1, ensemble_m: float = 0.01,
                 tokens_per_step: int | None = None, delay_window: int = 8) -> None:
        if mode not in SPLICE_MODES:
            raise ValueError(f"splice mode {mode!r}: must be one of {SPLICE_MODES}")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every={replan_every}: must be >= 1 (or None: when the chunk runs out)")
        if mode == "prefix" and (tokens_per_step is None or tokens_per_step < 1):
            raise ValueError("splice mode 'prefix' needs tokens_per_step >= 1 (action tokens per control step: the "
                             f"bins tokenizer's action dim), got {tokens_per_step}")
        if delay_window < 1:
            raise ValueError(f"delay_window={delay_window}: must be >= 1")
        self.mode, self.replan_every, self.tokens_per_step = mode, replan_every, tokens_per_step
        self.ensemble_m, self.delay_window = ensemble_m, delay_window
        self.executor: ChunkExecutor = (TemporalEnsemble(ensemble_m) if mode == "ensemble" else RecedingHorizon(None))
        self.reset()

    def reset(self) -> None:
        """A new episode (the executor keeps its lifetime count of invalid chunks)."""
        self.executor.reset()
        self._in_flight: PlanRequest | None = None
        self._last_request_step: int | None = None
        self._plan: tuple[int, int, np.ndarray | None] | None = None  # newest spliced (step, H, ids)
        self._forced: dict[int, tuple[int, int]] = {}  # step -> (origin step, origin_ns) of a forced action
        self._next_id = 0
        self.delays: collections.deque[int] = collections.deque(maxlen=self.delay_window)
        self.counts: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ requests
    @property
    def in_flight(self) -> PlanRequest | None:
        return self._in_flight

    @property
    def delay_estimate(self) -> int:
        """Steps a request is expected to take: the largest of the last `delay_window` delays (0 before any)."""
        return max(self.delays, default=0)

    def plan_end(self) -> int | None:
        """First step the newest plan no longer covers (None: no plan)."""
        return None if self._plan is None else self._plan[0] + self._plan[1]

    def wants_plan(self, t: int) -> bool:
        if self._in_flight is not None:
            return False
        if self._plan is None or self._last_request_step is None:
            return True
        if self.replan_every is not None and t - self._last_request_step >= self.replan_every:
            return True
        return self.plan_end() - t <= self.delay_estimate

    def request(self, t: int, origin_ns: int = 0) -> PlanRequest:
        """Register a request for the observation of step t (the caller runs it)."""
        if self._in_flight is not None:
            raise RuntimeError(f"request {self._in_flight.id} is still in flight; deliver or cancel it first")
        prefix, k = None, 0
        if self.mode == "prefix" and self._plan is not None and self._plan[2] is not None:
            s, h, ids = self._plan
            k = max(0, min(self.delay_estimate, s + h - t))  # what the current chunk still covers
            if k:
                n = self.tokens_per_step
                prefix = np.asarray(ids, dtype=np.int64).reshape(-1)[(t - s) * n:(t - s + k) * n].copy()
        req = PlanRequest(self._next_id, t, int(origin_ns), prefix, k)
        self._next_id += 1
        self._in_flight, self._last_request_step = req, t
        self.counts["requests"] += 1
        return req

    def cancel(self, req: PlanRequest) -> None:
        """The request was not computed (e.g. its observation went stale before the worker took it)."""
        self._check_in_flight(req)
        self._in_flight = None
        self.counts["cancelled"] += 1

    def _check_in_flight(self, req: PlanRequest) -> None:
        if self._in_flight is None or req.id != self._in_flight.id:
            raise ValueError(f"request {req.id} is not the one in flight "
                             f"({None if self._in_flight is None else self._in_flight.id})")

    # ------------------------------------------------------------------ results
    def deliver(self, req: PlanRequest, chunk: Any, t: int) -> str:
        """Splice the chunk computed for `req` in at step t (>= req.step); returns one of DELIVERY."""
        self._check_in_flight(req)
        if t < req.step:
            raise ValueError(f"chunk for step {req.step} delivered at step {t}: deliveries cannot precede requests")
        self._in_flight = None
        d = t - req.step
        self.delays.append(d)
        status = self._splice(req, chunk, d)
        self.counts[status] += 1
        return status

    def _splice(self, req: PlanRequest, chunk: Any, d: int) -> str:
        actions = np.asarray(getattr(chunk, "actions", chunk))
        if actions.ndim != 2:
            raise ValueError(f"action chunk must be [H, D], got shape {actions.shape}")
        if d >= len(actions):
            return "expired"  # every action of it is in the past
        # the forced actions are the playing chunk's own: they keep its origin (seams and deadlines alike)
        forced = {j: self.action(j) for j in range(req.step, req.step + req.forced_steps)}
        if not self.executor.add_plan(req.step, chunk, origin_ns=req.origin_ns):
            self._last_request_step = None  # never executed; the old plan runs out; ask again at once
            return "invalid"
        ids = getattr(chunk, "ids", None)
        self._plan = (req.step, len(actions), None if ids is None else np.asarray(ids))
        self._forced = {j: (st.origin_step, st.origin_ns) for j, st in forced.items() if st is not None}
        return "spliced"

    def action(self, t: int) -> ChunkStep | None:
        """The action for step t, or None when no plan covers it (the bridge holds)."""
        step = self.executor.action(t)
        if step is None or t not in self._forced or self._plan is None or step.origin_step != self._plan[0]:
            return step
        return ChunkStep(step.action, *self._forced[t])


def prefix_tokens_per_step(runtime: Any) -> int:
    """Action tokens per control step for prefix-forced splicing, or ValueError saying why it cannot apply."""
    name = type(runtime).__name__
    if not getattr(runtime, "supports_prefix", False):
        raise ValueError(f"splice='prefix' needs a runtime that decodes from forced tokens; {name} does not "
                         "(a scripted or callable policy has no action tokens)")
    io = getattr(runtime, "io", None)
    if io is None:
        raise ValueError(f"splice='prefix': {name} has no PolicyIO, so its action tokens per step are unknown")
    a = io.cfg.action
    if a.tokenizer != "bins":
        raise ValueError(f"splice='prefix' needs per-step action tokens (tokenizer 'bins'); this policy's "
                         f"tokenizer is {a.tokenizer!r}, whose tokens describe the whole chunk")
    mode = getattr(runtime, "mode", None) or a.decoding
    if mode == "parallel" and a.prefix_conditioning <= 0:
        raise ValueError(f"splice='prefix' needs autoregressive decoding or a parallel policy trained with "
                         f"action.prefix_conditioning > 0; this runtime decodes {mode!r} without it, so its slots "
                         "never see the forced tokens (forced slots would be the same as splice='switch')")
    if mode not in ("autoregressive", "parallel"):
        raise ValueError(f"splice='prefix': unknown decoding mode {mode!r}")
    return a.dim


class SeamMeter:
    """Squared change of the commanded motion (the 6 translation/rotation components; gripper excluded) between
    consecutive actions, and at seams: where the chunk an action came from (`origin_step`) changes. Shared by
    the control loop's episode report and `vla eval`'s simulated latency. `new_episode()` forgets the last
    action (no seam across episodes); the lists keep growing."""

    def __init__(self, seam_sq: list[float] | None = None, step_sq: list[float] | None = None) -> None:
        self.seam_sq = [] if seam_sq is None else seam_sq
        self.step_sq = [] if step_sq is None else step_sq
        self._last: tuple[int, np.ndarray] | None = None

    def new_episode(self) -> None:
        self._last = None

    def add(self, step: ChunkStep) -> None:
        motion = np.asarray(step.action[:6], dtype=np.float64)
        if self._last is not None:
            sq = float(np.sum((motion - self._last[1]) ** 2))
            self.step_sq.append(sq)
            if step.origin_step != self._last[0]:
                self.seam_sq.append(sq)
        self._last = (step.origin_step, motion)
