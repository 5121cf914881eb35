"""The control loop: fixed-rate observe -> policy -> chunk execution -> act, against a robot bridge.

    with BridgeClient("tcp://127.0.0.1:5555") as client:
        loop = ControlLoop(client, PolicyRuntime(policy), ControlConfig(hz=10, chunk_mode="receding"))
        report = loop.run_episode(seed=0)           # EpisodeReport(success, steps, counts, periods_ns)

    vla control --connect tcp://127.0.0.1:5555 --expert PickCube --hz 10 --episodes 3

Every tick (absolute schedule, missed ticks skipped and counted, never bunched): fetch the newest
observation (lock-step bridges: it came with the previous act's reply, `act(observe=True)`, so a
step is one round trip); if the plan needs refreshing and the observation is fresh (bridge-side age below
`max_obs_age_s`) run the runtime; pick this step's action from the chunk executor; send it with the
observation seq it answers and a deadline in the *bridge's* clock: the planning observation's
timestamp + (steps since) periods + `max_latency_s`. No clock sync is needed, and an action that
waited too long (slow policy, slow network) is dropped by the bridge instead of executed stale.
In lock-step bridges time stops between actions, so staleness and deadlines do not apply there.

Asynchronous inference (`async_inference=True`, `vla control --async`): the runtime runs in a worker thread
(deploy.planner) on the newest fresh observation while the loop keeps ticking and playing the current chunk;
a chunk that arrives d ticks after its observation is spliced in by `vla.splicing.AsyncSplicer` (switch,
ensemble, or prefix-forced decoding), its first d actions skipped. Deadlines still count from the planning
observation, so a late chunk's actions are dropped by the bridge, never executed stale; with no chunk
covering a step the bridge holds and its watchdog applies, as in synchronous mode. Real-time bridges only
(in lock-step the robot waits for every action anyway).

Overruns: a tick that overran skips the ticks it missed and stays on the grid (phase-locked to the
robot), so two actions never land in one robot tick because the loop fell behind.

The episode report carries the measured inference latency (per call; async: submit -> result), the delay
of each async chunk in ticks, and the seam jerk: the mean squared change of the commanded motion (the 6
translation/rotation components, gripper excluded) between consecutive sent actions that come from
different chunks.

Bridge failure: `max_timeouts` consecutive request timeouts raise `BridgeUnavailable` naming the
endpoint, so a killed bridge stops the loop with a clear error rather than a hang.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.client import BridgeClient, BridgeTimeout, ObsReply
from deploy.planner import AsyncPlanner
from vla.chunking import MODES, make_executor
from vla.runtime import Runtime
from vla.splicing import SPLICE_MODES, AsyncSplicer, SeamMeter, prefix_tokens_per_step


class BridgeUnavailable(RuntimeError):
    """The bridge stopped answering (killed, unreachable, or refusing this client)."""


@dataclass(frozen=True)
class ControlConfig:
    hz: float = 10.0
    chunk_mode: str = "receding"  # open_loop | receding | ensemble (vla.chunking)
    replan_every: int = 1  # receding: re-plan every k steps
    ensemble_m: float = 0.01  # ensemble: ACT weight decay
    max_latency_s: float = 0.2  # an action must reach the bridge within this of its due time
    max_obs_age_s: float = 0.25  # older observations are stale: never planned on
    max_steps: int | None = None  # per-episode cap; None = until the bridge reports done
    stop_on_success: bool = True
    privileged: bool = False  # ask for privileged arrays (sim_state), e.g. for SimExpertPolicy
    max_timeouts: int = 3  # consecutive timeouts before BridgeUnavailable
    align_s: float | None = 0.002  # real-time, same rate: tick this long after the robot's tick; None = free-run
    async_inference: bool = False  # infer in a worker while the current chunk plays (real-time bridges)
    splice: str = "switch"  # async: how a late chunk meets the playing one: switch | ensemble | prefix

    def __post_init__(self) -> None:
        if not 0 < self.hz <= 1000:
            raise ValueError(f"hz={self.hz}: must be in (0, 1000]")
        if self.chunk_mode not in MODES:
            raise ValueError(f"chunk_mode={self.chunk_mode!r}: must be one of {MODES}")
        if self.replan_every < 1:
            raise ValueError(f"replan_every={self.replan_every}: must be >= 1")
        for name in ("max_latency_s", "max_obs_age_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be > 0 s")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}: must be >= 1 or None")
        if self.align_s is not None and not 0 <= self.align_s < 1.0 / self.hz:
            raise ValueError(f"align_s={self.align_s}: must be in [0, 1/hz) or None")
        if self.max_timeouts < 1:
            raise ValueError(f"max_timeouts={self.max_timeouts}: must be >= 1")
        if self.splice not in SPLICE_MODES:
            raise ValueError(f"splice={self.splice!r}: must be one of {SPLICE_MODES}")
        if self.splice != "switch" and not self.async_inference:
            raise ValueError(f"splice={self.splice!r} applies to async_inference=True only (synchronous chunks "
                             "are executed by chunk_mode)")
        if self.async_inference and self.chunk_mode != "receding":
            raise ValueError(f"chunk_mode={self.chunk_mode!r} with async_inference=True: asynchronous chunks are "
                             "executed by splice (switch | ensemble | prefix), re-planned every replan_every steps")


@dataclass
class EpisodeReport:
    success: bool
    steps: int  # control steps: async, robot ticks (missed ones included); sync, loop iterations
    episode: int
    counts: dict[str, int] = field(default_factory=dict)  # act statuses, stale_obs, plans, overruns, ...
    periods_ns: list[int] = field(default_factory=list)  # tick-to-tick intervals (for jitter)
    duration_s: float = 0.0
    inference_ms: list[float] = field(default_factory=list)  # per plan (async: submit -> result)
    delays: dict[int, int] = field(default_factory=dict)  # async: ticks from observation to delivery -> chunks
    seam_sq: list[float] = field(default_factory=list)  # squared motion change at each chunk seam
    step_sq: list[float] = field(default_factory=list)  # squared motion change between consecutive sent actions

    @property
    def seam_jerk(self) -> float | None:
        return float(np.mean(self.seam_sq)) if self.seam_sq else None

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "steps": self.steps, "episode": self.episode, "counts": dict(self.counts),
                "duration_s": round(self.duration_s, 3), "period": period_stats(self.periods_ns),
                "inference_ms": latency_stats(self.inference_ms), "delay_ticks": {str(k): v for k, v in
                                                                                sorted(self.delays.items())},
                "seams": len(self.seam_sq), "seam_jerk": self.seam_jerk,
                "step_jerk": float(np.mean(self.step_sq)) if self.step_sq else None}


def latency_stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    a = np.asarray(ms, dtype=np.float64)
    return {"n": int(a.size), "mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max())}


def period_stats(periods_ns: list[int], hz: float | None = None) -> dict[str, float]:
    """Tick-period statistics in ms (jitter = std; err = |period - 1/hz|)."""
    if not periods_ns:
        return {}
    p = np.asarray(periods_ns, dtype=np.float64) / 1e6
    out = {"n": int(p.size), "mean_ms": float(p.mean()), "std_ms": float(p.std()),
           "p50_ms": float(np.percentile(p, 50)), "p99_ms": float(np.percentile(p, 99)), "max_ms": float(p.max())}
    if hz:
        err = np.abs(p - 1000.0 / hz)
        out.update(err_p50_ms=float(np.percentile(err, 50)), err_p99_ms=float(np.percentile(err, 99)))
    return out


class ControlLoop:
    def __init__(self, client: BridgeClient, runtime: Runtime, config: ControlConfig = ControlConfig()) -> None:
        self.client, self.runtime, self.config = client, runtime, config
        self.period_ns = int(1e9 / config.hz)
        self._timeouts = 0
        hello = self._call(client.hello)
        self.bridge_info = hello
        self.lockstep = bool(hello["lockstep"])
        self.tokens_per_step = None
        if config.async_inference:
            if self.lockstep:
                raise ValueError("async_inference needs a real-time bridge: in lock-step mode the robot waits for "
                                 "every action, so a slow policy costs no motion (run it synchronously)")
            if config.splice == "prefix":
                self.tokens_per_step = prefix_tokens_per_step(runtime)

    def _call(self, fn, *args, **kwargs):
        """A bridge request; timeouts are counted and escalate to BridgeUnavailable."""
        try:
            out = fn(*args, **kwargs)
        except BridgeTimeout as e:
            self._timeouts += 1
            if self._timeouts >= self.config.max_timeouts:
                raise BridgeUnavailable(
                    f"bridge at {self.client.endpoint} stopped answering: {self._timeouts} consecutive requests "
                    f"timed out ({self.client.timeout_s:g} s each); last: {e}"
                ) from None
            return None
        self._timeouts = 0
        return out

    def run_episode(self, seed: int | None = None, reset: bool = True) -> EpisodeReport:
        cfg = self.config
        plans = _AsyncPlans(self) if cfg.async_inference else _SyncPlans(self)
        try:
            rep = self._episode(plans, seed, reset)
        except BaseException:
            plans.close()
            raise
        plans.close()
        plans.check()  # a policy error in a request still in flight at the end is not lost
        return rep

    def _episode(self, plans: _SyncPlans | _AsyncPlans, seed: int | None, reset: bool) -> EpisodeReport:
        cfg, c = self.config, self.client
        counts: collections.Counter[str] = collections.Counter()
        rep = EpisodeReport(False, 0, 0, {})
        self.runtime.reset()
        o: ObsReply | None = None
        while o is None:
            o = self._call(c.reset, seed, cfg.privileged) if reset else self._call(c.observe, cfg.privileged)
        start = time.monotonic_ns()
        next_tick, last_tick, last_seq, t = start, None, -1, 0
        carried: ObsReply | None = None  # lock-step: the observation the last act's reply carried
        seams = SeamMeter(rep.seam_sq, rep.step_sq)  # over the actions sent
        success = o.success
        aligned = self._aligned_start(o)
        if aligned is not None:  # phase-lock: observe right after the robot's tick, act before its next one
            time.sleep(max(0, aligned - time.monotonic_ns()) / 1e9)
            next_tick = aligned
        while True:
            tick = time.monotonic_ns()
            if last_tick is not None:
                rep.periods_ns.append(tick - last_tick)
            last_tick = tick
            if carried is not None:
                o, carried = carried, None
            elif t > 0 or aligned is not None:
                o = self._call(c.observe, cfg.privileged)
                if o is None:
                    counts["timeouts"] += 1
                    next_tick, missed = self._sleep(next_tick, counts)
                    t += plans.skip(1 + missed)  # async: this tick passed too
                    continue
            success = success or o.success
            if o.done or (cfg.stop_on_success and o.success) or (cfg.max_steps is not None and t >= cfg.max_steps):
                break
            if o.obs_seq == last_seq:
                counts["repeated_obs"] += 1
            last_seq = o.obs_seq
            plans.plan(t, o, counts, rep, tick)
            step = plans.action(t)
            if step is None or not np.all(np.isfinite(step.action)):
                counts["no_action"] += 1  # nothing valid to send: the bridge holds
            else:
                deadline = None if self.lockstep else (
                    step.origin_ns + (t - step.origin_step) * self.period_ns + int(cfg.max_latency_s * 1e9))
                # lock-step: the act reply carries the observation this action produced (1 round trip
                # per step). Real-time: the next observation only exists after the robot's next tick,
                # so the loop observes then, as before.
                r = self._call(c.act, step.action, obs_seq=o.obs_seq, deadline_ns=deadline,
                               observe=self.lockstep, privileged=cfg.privileged)
                counts["timeouts" if r is None else r.status] += 1
                if r is not None:
                    carried = r.obs
                seams.add(step)
            t += 1
            next_tick, missed = self._sleep(next_tick, counts)
            t += plans.skip(missed)
        rep.success, rep.steps, rep.episode, rep.counts = bool(success), t, o.episode, dict(counts)
        rep.duration_s = (time.monotonic_ns() - start) / 1e9
        return rep

    def _aligned_start(self, o: ObsReply) -> int | None:
        """Local time of the first tick phase-locked to the bridge's ticks, or None (free-running).

        Bridge and loop both tick at the same rate; without a phase lock two actions sometimes land
        in one robot tick (one superseded, the next tick holds). The bridge clock is mapped to ours
        by the reply's send time (off by the one-way latency, well under a millisecond on a LAN)."""
        if self.lockstep or self.config.align_s is None or o.t_next_tick is None:
            return None
        if abs(float(self.bridge_info["control_hz"]) - self.config.hz) > 1e-6:
            return None
        offset = o.t_bridge - o.t_received  # bridge = local + offset
        first = o.t_next_tick - offset + int(self.config.align_s * 1e9)
        now = time.monotonic_ns()
        if first < now:
            first += ((now - first) // self.period_ns + 1) * self.period_ns
        return first

    def _sleep(self, next_tick: int, counts: collections.Counter) -> tuple[int, int]:
        """Sleep to the next tick on the grid -> (its time, ticks missed by an overrun)."""
        next_tick += self.period_ns
        now = time.monotonic_ns()
        missed = 0
        if now > next_tick:  # overran: skip the missed ticks, stay on the grid (phase-locked to the robot)
            counts["overruns"] += 1
            missed = (now - next_tick) // self.period_ns + 1
            counts["missed_ticks"] += missed
            next_tick += missed * self.period_ns
        time.sleep(max(0, next_tick - time.monotonic_ns()) / 1e9)
        return next_tick, missed

    def run(self, episodes: int, seeds: list[int] | None = None) -> list[EpisodeReport]:
        return [self.run_episode(seed=None if seeds is None else seeds[i]) for i in range(episodes)]


class _SyncPlans:
    """Plans inside the tick: the loop waits for the runtime (vla.chunking executes the chunks)."""

    def __init__(self, loop: ControlLoop) -> None:
        cfg = loop.config
        self.loop, self.executor = loop, make_executor(cfg.chunk_mode, cfg.replan_every, cfg.ensemble_m)

    def plan(self, t: int, o: ObsReply, counts: collections.Counter, rep: EpisodeReport, tick_ns: int) -> None:
        if not self.executor.needs_plan(t):
            return
        if not self.loop.lockstep and o.age_s > self.loop.config.max_obs_age_s:
            counts["stale_obs"] += 1  # do not plan on it; the old plan (if any) keeps running out
            return
        t0 = time.perf_counter()
        chunk = self.loop.runtime.infer(o.obs)  # ActionChunk [H, 7]
        rep.inference_ms.append((time.perf_counter() - t0) * 1e3)
        counts["plans"] += 1
        if not self.executor.add_plan(t, chunk, origin_ns=o.t_obs):  # never executed, the old plan runs out
            counts["invalid_chunks"] += 1

    def action(self, t: int):
        return self.executor.action(t)

    def skip(self, missed: int) -> int:
        return 0  # the step counter counts loop ticks: after a slow plan, the chunk continues where it was

    def close(self) -> None:
        pass

    def check(self) -> None:
        pass


class _AsyncPlans:
    """Plans in a worker thread; chunks are spliced in when they arrive (vla.splicing).

    A request waits up to `WAIT_FRACTION` of a period past the tick for its chunk, so a policy faster than
    that plans and acts in the same tick (delay 0, as synchronously); a slower one keeps the arm on the
    playing chunk and its result is spliced in at a later tick."""

    WAIT_FRACTION = 0.5

    def __init__(self, loop: ControlLoop) -> None:
        cfg = loop.config
        self.loop = loop
        self.splicer = AsyncSplicer(cfg.splice, cfg.replan_every, cfg.ensemble_m, loop.tokens_per_step)
        self.planner = AsyncPlanner(loop.runtime).start()

    def _deliver(self, t: int, counts: collections.Counter, rep: EpisodeReport) -> None:
        for r in self.planner.poll():
            if r.superseded:  # not reached: the loop submits only to an idle worker
                continue
            rep.inference_ms.append(r.latency_s * 1e3)
            d = t - r.request.step
            rep.delays[d] = rep.delays.get(d, 0) + 1
            status = self.splicer.deliver(r.request, r.chunk, t)
            counts["spliced" if status == "spliced" else f"{status}_chunks"] += 1

    def plan(self, t: int, o: ObsReply, counts: collections.Counter, rep: EpisodeReport, tick_ns: int) -> None:
        self._deliver(t, counts, rep)
        if self.splicer.in_flight is not None or not self.splicer.wants_plan(t):
            return
        if o.age_s > self.loop.config.max_obs_age_s:
            counts["stale_obs"] += 1  # never planned on; the playing chunk runs on
            return
        req = self.splicer.request(t, origin_ns=o.t_obs)
        if req.forced_steps:
            counts["forced_steps"] += req.forced_steps
        self.planner.submit(req, o.obs)
        counts["plans"] += 1
        budget = tick_ns + int(self.WAIT_FRACTION * self.loop.period_ns) - time.monotonic_ns()
        if budget > 0 and self.planner.wait(budget / 1e9):
            self._deliver(t, counts, rep)  # fast enough for this tick

    def action(self, t: int):
        return self.splicer.action(t)

    def skip(self, missed: int) -> int:
        return missed  # the step counter follows the robot's ticks: chunk indices stay on wall time

    def close(self) -> None:
        self.planner.close()

    def check(self) -> None:
        self.planner.poll()  # re-raises a policy error of the last request
