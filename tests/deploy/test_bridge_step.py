"""The one-round-trip step (`act(..., observe=True)`) and the transport helpers it relies on.

    .venv/bin/pytest -q tests/deploy/test_bridge_step.py
"""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from deploy.bridge import BridgeClient, BridgeError
from deploy.control import ControlConfig, ControlLoop
from deploy.protocol import ZERO_COPY_MIN_BYTES, Message, WireArrays, decode, encode, recv_frames, send_frames
from deploy.robot import KinematicRobot, goal_expert
from vla.runtime import PolicyRuntime

STEP = np.array([0.01, 0, 0, 0, 0, 0, -1.0])


def test_lockstep_step_returns_the_observation_the_action_produced(make_bridge):
    server = make_bridge(lockstep=True)
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        r = c.act(STEP, obs_seq=o.obs_seq, observe=True)
        assert r.status == "executed" and r.obs is not None
        assert r.obs.obs_seq == o.obs_seq + 1 and c.last_obs_seq == r.obs.obs_seq
        assert r.obs.obs["state"][0] == pytest.approx(0.46)  # moved by the executed action
        assert r.obs.obs["agentview"].shape == (32, 32, 3) and r.obs.obs["instruction"] == "move to the goal"
        again = c.observe()  # the carried observation is the bridge's current one
        assert again.obs_seq == r.obs.obs_seq
        np.testing.assert_array_equal(again.obs["state"], r.obs.obs["state"])
        # chaining steps without observe(): obs_seq defaults to the carried observation
        r2 = c.act(STEP, observe=True)
        assert r2.status == "executed" and r2.obs.obs_seq == r.obs.obs_seq + 1
        assert r2.obs.obs["state"][0] == pytest.approx(0.47)
        assert c.act(STEP).obs is None  # without observe=True nothing extra comes back


def test_step_still_drops_stale_and_invalid_actions(make_bridge):
    server = make_bridge(lockstep=True)
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        r = c.act(STEP, obs_seq=o.obs_seq, observe=True)
        stale = c.act(STEP, obs_seq=o.obs_seq, observe=True)  # computed from the previous observation
        assert stale.status == "old" and stale.obs.obs_seq == r.obs.obs_seq  # nothing executed
        assert stale.obs.obs["state"][0] == pytest.approx(0.46)
        back = c.act(STEP, seq=1, obs_seq=r.obs.obs_seq, observe=True)  # action_seq went backwards
        assert back.status == "old" and back.obs.obs_seq == r.obs.obs_seq
        bad = c.act(STEP * np.nan, obs_seq=r.obs.obs_seq, observe=True)
        assert bad.status == "rejected" and bad.obs.obs_seq == r.obs.obs_seq
        future = c.act(STEP, obs_seq=r.obs.obs_seq + 3, observe=True)
        assert future.status == "rejected" and future.obs.obs["state"][0] == pytest.approx(0.46)
        s = c.stats()
        assert s["executed"] == 1 and s["act.old"] == 2 and s["act.rejected"] == 2


def test_step_privileged_and_errors(make_bridge):
    server = make_bridge(lockstep=True)
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        assert "goal" not in c.act(STEP, obs_seq=o.obs_seq, observe=True).obs.obs
        assert "goal" in c.act(STEP, observe=True, privileged=True).obs.obs
        with pytest.raises(BridgeError, match="bad_request"):  # a malformed act is an error, not an observation
            c.request("act", meta={"session": "x", "observe": True})
        assert c.act(STEP, observe=True).status == "executed"  # still serving


def test_realtime_step_carries_the_newest_observation_before_the_tick(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=32, control_hz=2.0))
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        r = c.act(STEP, obs_seq=o.obs_seq, deadline_ns=o.t_bridge + 10**9, observe=True)
        assert r.status == "queued" and r.obs.obs_seq >= o.obs_seq and r.obs.t_next_tick is not None


def test_lockstep_control_loop_uses_one_round_trip_per_step(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=32, control_hz=50.0), lockstep=True)
    with BridgeClient(server.endpoint) as c:
        loop = ControlLoop(c, PolicyRuntime(goal_expert), ControlConfig(hz=200, privileged=True))
        rep = loop.run_episode(seed=1)
        assert rep.success and rep.counts["executed"] == rep.steps and rep.counts.get("repeated_obs", 0) == 0
        s = c.stats()
    assert s.get("requests.observe", 0) == 0  # every observation after the reset came with an act reply
    assert s["requests.act"] == rep.steps and s["requests.reset"] == 1


def test_realtime_control_loop_still_observes_after_the_tick(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=32, control_hz=50.0))
    with BridgeClient(server.endpoint) as c:
        rep = ControlLoop(c, PolicyRuntime(goal_expert), ControlConfig(hz=50, privileged=True)).run_episode(seed=1)
        s = c.stats()
    assert rep.success and s["requests.observe"] >= rep.steps


def test_observation_is_laid_out_once_and_follows_the_robot(make_bridge):
    """Each observation is laid out for the wire once (224 px images: shared zmq.Frames) and reused by
    every reply until the robot steps or resets; plain and privileged layouts are kept apart, and no
    reply's own fields leak into the next one."""
    server = make_bridge(robot=KinematicRobot(image_size=224), lockstep=True)
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        again = c.observe()
        assert again.obs_seq == o.obs_seq and o.obs["agentview"].shape == (224, 224, 3)
        np.testing.assert_array_equal(again.obs["agentview"], o.obs["agentview"])
        assert "goal" in c.observe(privileged=True).obs and "goal" not in c.observe().obs
        r = c.act(STEP, obs_seq=o.obs_seq, observe=True, privileged=True)
        assert r.status == "executed" and r.obs.obs_seq == o.obs_seq + 1 and "goal" in r.obs.obs
        assert r.obs.obs["state"][0] == pytest.approx(0.46)
        plain = c.request("observe").meta
        assert plain["obs_seq"] == r.obs.obs_seq and "status" not in plain and "executed" not in plain
        assert c.observe().obs["state"][0] == pytest.approx(0.46)
        new = c.reset(seed=5)
        assert new.episode == 1 and c.observe().obs["episode_seed"] == 5
        assert not np.array_equal(c.observe().obs["agentview"], o.obs["agentview"])  # new episode, new images


@pytest.fixture
def pair():
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://step-test")
    b.connect("inproc://step-test")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_send_recv_frames_round_trip_small_and_zero_copy_sizes(pair):
    a, b = pair
    img = np.full((224, 224, 3), 7, np.uint8)  # over ZERO_COPY_MIN_BYTES: handed to zmq zero-copy
    small = np.arange(7, dtype=np.float32)  # under it: copied into the message at send time
    assert small.nbytes < ZERO_COPY_MIN_BYTES <= img.nbytes
    send_frames(a, encode(Message("observe", seq=5, arrays={"img": img, "small": small, "s": np.float32(2)})))
    small[0] = 99  # the copy was taken at send time
    frames = recv_frames(b)
    assert len(frames) == 4 and all(isinstance(f, zmq.Frame) for f in frames)
    out = decode(frames)
    np.testing.assert_array_equal(out.arrays["img"], img)
    assert out.arrays["small"][0] == 0 and out.arrays["s"].shape == () and out.arrays["s"] == 2
    assert not out.arrays["img"].flags.writeable and not out.arrays["small"].flags.writeable


def test_recv_frames_times_out_like_recv(pair):
    _, b = pair
    b.setsockopt(zmq.RCVTIMEO, 10)
    with pytest.raises(zmq.Again):
        recv_frames(b)
    with pytest.raises(zmq.Again):
        recv_frames(b, zmq.NOBLOCK)


def test_wire_arrays_are_sent_many_times_by_reference(pair):
    a, b = pair
    img = np.full((224, 224, 3), 7, np.uint8)
    img.flags.writeable = False
    wire = WireArrays({"img": img, "state": np.arange(8, dtype=np.float32)})
    assert isinstance(wire.bufs[0], zmq.Frame) and type(wire.bufs[1]) is bytes  # big: by reference; small: copied
    for seq in range(3):
        send_frames(a, encode(Message("observe", seq, wire, {"i": seq})))
    for seq in range(3):
        out = decode(recv_frames(b))
        assert out.seq == seq and out.meta == {"i": seq} and list(out.arrays) == ["img", "state"]
        np.testing.assert_array_equal(out.arrays["img"], img)
        np.testing.assert_array_equal(out.arrays["state"], np.arange(8, dtype=np.float32))
