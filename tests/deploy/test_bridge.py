"""Bridge server + client over loopback TCP with a KinematicRobot: modes, ordering, deadlines, watchdog."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deploy.bridge import BridgeClient, BridgeError, BridgeTimeout
from deploy.control import ControlConfig, ControlLoop
from deploy.robot import KinematicRobot, goal_expert
from deploy.safety import SafetyConfig
from vla.runtime import PolicyRuntime

STEP = np.array([0.01, 0, 0, 0, 0, 0, -1.0])


def test_hello_observe_reset(make_bridge):
    server = make_bridge(lockstep=True)
    assert server.endpoint.startswith("tcp://127.0.0.1:")
    with BridgeClient(server.endpoint) as c:
        info = c.hello()
        assert info["protocol"] == 1 and info["lockstep"] and info["robot"]["robot"] == "KinematicRobot"
        o = c.observe()
        assert o.obs["agentview"].shape == (32, 32, 3) and o.obs["agentview"].dtype == np.uint8
        assert o.obs["state"].dtype == np.float32 and "goal" not in o.obs  # privileged only on request
        assert "goal" in c.observe(privileged=True).obs
        r = c.reset(seed=3)
        assert r.episode == 1 and r.obs_seq > o.obs_seq and r.obs["episode_seed"] == 3
        with pytest.raises(BridgeError, match="seed"):
            c.reset(seed=-1)


def test_lockstep_executes_once_per_observation(make_bridge):
    server = make_bridge(lockstep=True)
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        r = c.act(STEP, obs_seq=o.obs_seq)
        assert r.status == "executed" and r.executed[0] == pytest.approx(0.01)
        assert c.act(STEP, obs_seq=o.obs_seq).status == "old"  # same observation twice
        o2 = c.observe()
        assert o2.obs_seq == o.obs_seq + 1
        assert o2.obs["state"][0] == pytest.approx(0.46)
        assert c.act(STEP, seq=1, obs_seq=o2.obs_seq).status == "old"  # action_seq went backwards
        assert c.act(STEP * np.nan, obs_seq=o2.obs_seq).status == "rejected"
        assert c.act(STEP, obs_seq=o2.obs_seq + 5).status == "rejected"  # future observation
        assert c.observe().obs["state"][0] == pytest.approx(0.46)  # nothing of that moved the robot


def test_clamped_action_is_what_executes(make_bridge):
    server = make_bridge(lockstep=True, safety=SafetyConfig(max_translation_m=0.02))
    with BridgeClient(server.endpoint) as c:
        r = c.act(np.array([0.1, 0, 0, 0, 0, 0, 3.0]), obs_seq=c.observe().obs_seq)
        np.testing.assert_allclose(r.executed, [0.02, 0, 0, 0, 0, 0, 1.0])
        assert c.stats()["clamped"] == 1


def test_realtime_late_action_dropped_and_watchdog_reported(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=32, control_hz=50.0))
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        assert o.watchdog  # nobody has acted yet: holding
        r = c.act(STEP, obs_seq=o.obs_seq, deadline_ns=o.t_obs - 1)
        assert r.status == "late"
        o = c.observe()
        r = c.act(STEP, obs_seq=o.obs_seq, deadline_ns=o.t_bridge + 200_000_000)
        assert r.status == "queued"
        time.sleep(0.1)
        o = c.observe()
        assert o.obs["state"][0] == pytest.approx(0.46) and not o.watchdog
        time.sleep(0.4)  # > 200 ms without an action
        assert c.heartbeat() is True
        s = c.stats()
        assert s["watchdog_trips"] == 1 and s["holds"] >= 10 and s["act.late"] == 1 and s["executed"] == 1


def test_control_loop_reaches_goal_in_both_modes(make_bridge):
    for lockstep in (True, False):
        server = make_bridge(robot=KinematicRobot(image_size=32, control_hz=50.0), lockstep=lockstep)
        with BridgeClient(server.endpoint) as c:
            loop = ControlLoop(c, PolicyRuntime(goal_expert), ControlConfig(hz=50, privileged=True))
            rep = loop.run_episode(seed=1)
            assert rep.success and rep.steps < 10
            assert rep.counts.get("late", 0) == 0 and rep.counts["plans"] == rep.steps


def test_client_times_out_without_bridge():
    with BridgeClient("tcp://127.0.0.1:1", timeout_s=0.2) as c, pytest.raises(BridgeTimeout):
        c.observe()


def test_error_reply_raises(make_bridge):
    server = make_bridge()
    with BridgeClient(server.endpoint) as c:
        with pytest.raises(BridgeError, match="bad_request"):
            c.request("act", meta={"session": "x"})
        assert c.heartbeat() in (True, False)  # still serving


class _BadImageRobot(KinematicRobot):
    """A robot whose observation cannot go on the wire (complex images): an `internal` error."""

    def _make_obs(self):
        obs = super()._make_obs()
        obs.images["agentview"] = np.zeros((4, 4, 3), np.complex64)
        return obs


def test_internal_error_reply_reaches_the_client(make_bridge):
    server = make_bridge(robot=_BadImageRobot(image_size=8), lockstep=True)
    with BridgeClient(server.endpoint, timeout_s=1.0) as c:
        with pytest.raises(BridgeError, match="internal"):  # addressed to the request: no timeout
            c.observe()
        assert c.heartbeat() in (True, False)  # still serving
        assert c.stats()["errors.internal"] == 1
