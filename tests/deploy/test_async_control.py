"""Asynchronous control: the inference worker (deploy.planner), the latency wrapper, and the real-time
bridge end to end with a policy slower than the control period."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deploy.bridge import BridgeClient
from deploy.control import ControlConfig, ControlLoop
from deploy.planner import AsyncPlanner
from deploy.robot import KinematicRobot
from deploy.runtimes import latency
from deploy.runtimes.latency import DelayedRuntime
from vla.policy_io import ActionChunk
from vla.runtime import PolicyRuntime, Runtime
from vla.splicing import PlanRequest, prefix_tokens_per_step

HZ = 20.0


class GatedRuntime(Runtime):
    """infer blocks until released; records which observation each call planned on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def infer_batch(self, observations, prefix_ids=None):
        self.seen.append(int(observations[0]["tag"]))
        self.started.set()
        if not self.release.wait(10):
            raise TimeoutError("never released")
        a = np.full((1, 4, 7), float(observations[0]["tag"]), np.float32)
        return ActionChunk(a, np.ones(1, bool))


def test_planner_newest_observation_wins_over_an_older_waiting_one():
    rt = GatedRuntime()
    with AsyncPlanner(rt) as planner:
        planner.submit(PlanRequest(0, 0, 0), {"tag": 0})
        assert rt.started.wait(5)  # request 0 is running and cannot be interrupted
        planner.submit(PlanRequest(1, 1, 0), {"tag": 1})
        planner.submit(PlanRequest(2, 2, 0), {"tag": 2})  # replaces 1, which never started
        assert planner.busy
        rt.release.set()
        assert planner.wait(5)
        results = planner.poll()
    assert rt.seen == [0, 2]
    assert [(r.request.id, r.superseded) for r in results] == [(1, True), (0, False), (2, False)]
    assert results[1].chunk.actions[0, 0] == 0 and results[2].chunk.actions[0, 0] == 2
    assert results[0].chunk is None


def test_planner_reraises_the_policy_error():
    def broken(obs):
        raise ZeroDivisionError("bad weights")

    with AsyncPlanner(PolicyRuntime(broken)) as planner:
        planner.submit(PlanRequest(0, 0, 0), {})
        planner.wait(5)
        with pytest.raises(RuntimeError, match="ZeroDivisionError: bad weights"):
            planner.poll()


def test_delayed_runtime_pads_to_the_latency(monkeypatch):
    slept = []
    monkeypatch.setattr(latency.time, "sleep", slept.append)
    rt = DelayedRuntime(PolicyRuntime(lambda obs: np.zeros(7, np.float32)), latency_ms=250)
    out = rt.infer({})
    assert out.actions.shape == (1, 7)
    assert len(slept) == 1 and 0.2 < slept[0] <= 0.25  # the inner call's own time counts towards it
    assert rt.last_timings["injected_ms"] == pytest.approx(slept[0] * 1e3)
    with pytest.raises(ValueError, match="latency_ms"):
        DelayedRuntime(rt, -1)


def test_prefix_splice_is_refused_for_a_policy_without_tokens():
    with pytest.raises(ValueError, match="splice='prefix'.*PolicyRuntime"):
        prefix_tokens_per_step(PolicyRuntime(lambda obs: np.zeros(7)))


@pytest.mark.parametrize("kw, match", [
    ({"splice": "glue"}, "splice="),
    ({"splice": "prefix"}, "async_inference=True only"),
])
def test_control_config_names_the_bad_field(kw, match):
    with pytest.raises(ValueError, match=match):
        ControlConfig(**kw)


def test_async_refuses_a_lockstep_bridge(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=32), lockstep=True)
    with BridgeClient(server.endpoint) as c, pytest.raises(ValueError, match="real-time bridge"):
        ControlLoop(c, PolicyRuntime(lambda obs: np.zeros(7)), ControlConfig(async_inference=True))


class TickRobot(KinematicRobot):
    """Reports its tick count in state[4], so a policy can say which robot tick each action is meant for."""

    def _make_obs(self):
        obs = super()._make_obs()
        state = obs.state.copy()
        state[4] = self.t
        obs.state = state
        return obs


TICK = 1e-5  # action[1] = the robot tick the action is meant for, times TICK


def ramp(obs: dict) -> np.ndarray:
    """A 6-step chunk moving +x by 2 mm per step; action i of a chunk planned on the observation after robot
    tick s is meant to run at tick s + i + 1, and says so in its y component."""
    s = int(round(float(obs["state"][4])))
    a = np.zeros((6, 7), np.float32)
    a[:, 0] = 0.002
    a[:, 1] = (s + 1 + np.arange(6)) * TICK
    a[:, 6] = -1.0
    return a


def _run_slow(make_bridge, async_inference: bool, steps: int = 30, episodes: int = 1):
    """The ramp policy, 1.3 control periods slow, over a real-time bridge whose ticks record every action
    they execute (robot tick, action). max_latency 1.5 periods: an action one tick late misses its deadline."""
    server = make_bridge(robot=TickRobot(image_size=32, tol=0.0, horizon=10**6, control_hz=HZ))
    executed: list[tuple[int, float]] = []
    tick = server._tick

    def recording_tick(t):
        p = server._pending
        if p is not None and not server._obs.done and t <= p.deadline_ns:  # what the bridge will execute
            executed.append((server.robot.t + 1, float(p.action[1])))
        tick(t)

    server._tick = recording_tick
    rt = DelayedRuntime(PolicyRuntime(ramp), latency_ms=1.3 * 1000 / HZ)
    with BridgeClient(server.endpoint) as c:
        cfg = ControlConfig(hz=HZ, replan_every=2, max_steps=steps, stop_on_success=False,
                            max_latency_s=1.5 / HZ, async_inference=async_inference)
        reps = ControlLoop(c, rt, cfg).run(episodes, seeds=list(range(episodes)))
        stats = c.stats()
    return reps, stats, executed


def test_slow_policy_async_keeps_the_arm_moving_and_runs_each_action_at_its_tick(make_bridge):
    reps, stats, executed = _run_slow(make_bridge, async_inference=True, steps=20, episodes=2)
    assert stats.get("superseded", 0) == 0  # no two actions in one robot tick (no overrun-induced bunching)
    assert stats["executed"] == len(executed) > 20
    # every executed action ran at exactly the tick it was planned for: never stale, in both episodes (a chunk
    # in flight when episode 1 ended never leaks into episode 2)
    assert [round(a / TICK) for _, a in executed] == [tick for tick, _ in executed]
    for rep in reps:
        assert rep.delays and min(rep.delays) >= 2  # 1.3 periods: back 2 ticks after its observation
        assert rep.counts["spliced"] == sum(rep.delays.values())
        assert rep.inference_ms and min(rep.inference_ms) >= 1.3 * 1000 / HZ
    sync, sync_stats, sync_executed = _run_slow(make_bridge, async_inference=False)
    assert sync[0].counts.get("overruns", 0) > 0  # the synchronous loop waits for every plan
    assert sync_stats["holds"] > 2 * stats["holds"]  # ... so the arm idles (its stale actions are dropped)
    assert sync_stats.get("act.late", 0) + sync_stats.get("late_at_tick", 0) > 0
    assert [round(a / TICK) for _, a in sync_executed] == [tick for tick, _ in sync_executed]
    assert sync_stats.get("superseded", 0) == 0  # its overruns keep the grid: no bunching either


def test_fast_policy_async_acts_in_the_same_tick(make_bridge):
    """A policy much faster than the period plans and acts within its tick (delay 0), as synchronously."""
    server = make_bridge(robot=TickRobot(image_size=32, tol=0.0, horizon=10**6, control_hz=HZ))
    with BridgeClient(server.endpoint) as c:
        cfg = ControlConfig(hz=HZ, replan_every=2, max_steps=12, stop_on_success=False, async_inference=True)
        rep = ControlLoop(c, PolicyRuntime(ramp), cfg).run_episode(seed=0)
    assert set(rep.delays) == {0} and rep.counts.get("no_action", 0) == 0
