"""Fault injection: killed control loop, killed bridge, slow policy, malformed floods, CURVE auth."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import deploy_procs
import msgpack
import numpy as np
import pytest
import zmq

from deploy.bridge import BridgeClient, BridgeTimeout
from deploy.control import BridgeUnavailable, ControlConfig, ControlLoop
from deploy.keys import generate_keys
from deploy.protocol import PROTOCOL_VERSION, Message, ProtocolLimits, encode
from vla.runtime import PolicyRuntime

SPAWN = mp.get_context("spawn")


def _wait(pred, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_control_loop_bridge_holds_then_new_loop_continues(make_bridge):
    server = make_bridge(robot=deploy_procs.endless_robot())
    q = SPAWN.Queue()
    proc = SPAWN.Process(target=deploy_procs.run_control, args=(server.endpoint, q), daemon=True)
    proc.start()
    try:
        assert q.get(timeout=60) == "started"
        with BridgeClient(server.endpoint) as c:
            _wait(lambda: c.stats().get("executed", 0) >= 5, what="the control process to act")
            assert c.heartbeat() is False  # a live controller keeps the watchdog fed
            proc.kill()
            proc.join(10)
            _wait(lambda: c.heartbeat(), timeout=5, what="the watchdog to trip")
            s1 = c.stats()
            time.sleep(0.3)
            s2 = c.stats()
            assert s2["executed"] == s1["executed"] and s2["holds"] > s1["holds"]  # holding, serving
            assert s2["watchdog_trips"] == 1 and s2.get("late_at_tick", 0) <= 1
            # a new control loop connects and continues the same episode
            loop = ControlLoop(c, PolicyRuntime(deploy_procs.wiggle),
                               ControlConfig(hz=deploy_procs.HZ, stop_on_success=False, max_steps=10))
            rep = loop.run_episode(reset=False)
            assert rep.counts.get("queued", 0) >= 9 and rep.episode == s2["episode"]
            _wait(lambda: c.stats()["executed"] >= s2["executed"] + 8, timeout=5, what="new actions to execute")
    finally:
        if proc.is_alive():
            proc.kill()


def test_killed_bridge_stops_control_loop_with_clear_error():
    q = SPAWN.Queue()
    proc = SPAWN.Process(target=deploy_procs.run_bridge, args=(q,), daemon=True)
    proc.start()
    try:
        endpoint = q.get(timeout=60)
        with BridgeClient(endpoint, timeout_s=0.3) as c:
            loop = ControlLoop(c, PolicyRuntime(deploy_procs.wiggle),
                               ControlConfig(hz=deploy_procs.HZ, stop_on_success=False, max_timeouts=3))
            threading.Timer(0.5, proc.kill).start()
            t0 = time.monotonic()
            with pytest.raises(BridgeUnavailable, match=f"bridge at {endpoint} stopped answering"):
                loop.run_episode(seed=0)
            assert time.monotonic() - t0 < 30  # stopped, did not hang
    finally:
        proc.kill()
        proc.join(10)


def test_policy_delay_late_actions_dropped_never_executed(make_bridge):
    server = make_bridge(robot=deploy_procs.endless_robot())

    def slow_policy(obs):
        time.sleep(0.3)  # > max_latency 0.2 s
        return np.array([0.01, 0, 0, 0, 0, 0, -1], np.float32)

    with BridgeClient(server.endpoint) as c:
        x0 = c.observe().obs["state"][0]
        cfg = ControlConfig(hz=deploy_procs.HZ, max_latency_s=0.2, max_obs_age_s=1.0, stop_on_success=False,
                            max_steps=3)
        rep = ControlLoop(c, PolicyRuntime(slow_policy), cfg).run_episode(reset=False)
        assert rep.counts["late"] == 3 and rep.counts["overruns"] >= 2
        s = c.stats()
        assert s["act.late"] == 3 and s.get("executed", 0) == 0
        assert c.observe().obs["state"][0] == x0  # the robot never moved


def _malformed(rng, i, limits):
    """One malformed/hostile message (frames) and whether the bridge answers it with an 'act' reply."""
    ok_head = {"v": PROTOCOL_VERSION, "type": "act", "seq": i, "t": 0, "reply_to": None, "arrays": [],
               "meta": {"session": "fuzz", "action_seq": i, "obs_seq": 1, "deadline_ns": None}}
    act = {"name": "action", "dtype": "float32", "shape": [7]}
    kind = i % 12
    if kind == 0:
        return [rng.bytes(int(rng.integers(0, 200)))], False
    if kind == 1:
        return [msgpack.packb([1, 2, 3])], False
    if kind == 2:
        return [msgpack.packb({**ok_head, "v": 0})], False
    if kind == 3:
        return [msgpack.packb({**ok_head, "type": "__reduce__"})], False
    if kind == 4:
        return [msgpack.packb({**ok_head, "arrays": [{**act, "shape": [8]}]}), b"\0" * 28], False
    if kind == 5:
        return [msgpack.packb({**ok_head, "arrays": [{**act, "dtype": "object"}]}), b"\0" * 28], False
    if kind == 6:
        return [msgpack.packb({**ok_head, "arrays": [act] * 20}), *[b"\0" * 28] * 20], False
    if kind == 7:  # well-formed, NaN action
        return encode(Message("act", seq=i, arrays={"action": np.full(7, np.nan, np.float32)},
                              meta=ok_head["meta"])), True
    if kind == 8:  # well-formed, wrong action shape/dtype
        return encode(Message("act", seq=i, arrays={"action": np.zeros((3, 3), np.int16)},
                              meta=ok_head["meta"])), True
    if kind == 9:
        return encode(Message("act", seq=i, arrays={"action": np.zeros(7, np.float32)}, meta={})), False
    if kind == 10:  # total over the limit, every frame under it
        n = limits.max_message_bytes // 2 + 1
        d = {"name": "a", "dtype": "uint8", "shape": [n]}
        return [msgpack.packb({**ok_head, "arrays": [d, {**d, "name": "b"}]}), b"\0" * n, b"\0" * n], False
    return [msgpack.packb({**ok_head, "meta": "not a map"})], False


def _flood(server, limits, n):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(server.endpoint)
    rng = np.random.default_rng(0)
    errors = acts = 0
    try:
        for start in range(0, n, 100):
            batch = [_malformed(rng, i, limits) for i in range(start, min(n, start + 100))]
            for frames, _ in batch:
                sock.send_multipart(frames, copy=False)
            for _, _ in batch:
                assert sock.poll(5000), "bridge stopped answering the flood"
                head = msgpack.unpackb(sock.recv_multipart()[0])
                if head["type"] == "error":
                    errors += 1
                else:
                    assert head["type"] == "act" and head["meta"]["status"] == "rejected"
                    acts += 1
        # frames over ZMQ_MAXMSGSIZE: the connection is dropped before allocation, the bridge stays up
        big = ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(server.endpoint)
        big.send_multipart([b"x", b"\0" * (limits.max_message_bytes + 1)])
        big.close()
    finally:
        sock.close()
        ctx.term()
    return errors, acts


@pytest.mark.parametrize("n", [1200, pytest.param(20000, marks=pytest.mark.slow)])
def test_malformed_flood_bridge_stays_up_answers_errors(make_bridge, n):
    limits = ProtocolLimits(max_message_bytes=1 << 20, max_header_bytes=4096)
    server = make_bridge(lockstep=True, limits=limits)
    errors, acts = _flood(server, limits, n)
    assert errors + acts == n and acts == 2 * (n // 12) + (n % 12 > 7) + (n % 12 > 8)
    with BridgeClient(server.endpoint) as c:  # a well-formed client still works
        o = c.observe()
        r = c.act(np.array([0.01, 0, 0, 0, 0, 0, -1]), obs_seq=o.obs_seq)
        assert r.status == "executed"
        assert c.observe().obs["state"][0] == pytest.approx(0.46)
        s = c.stats()
        assert s["errors.bad_header"] > 0 and s["errors.bad_array"] > 0 and s["errors.too_large"] > 0
        assert s["act.rejected"] == acts and s["executed"] == 1


def test_curve_refuses_clients_without_the_key(make_bridge, tmp_path):
    keys = generate_keys(tmp_path / "keys")
    other = generate_keys(tmp_path / "other")
    with pytest.raises(FileExistsError):
        generate_keys(keys)
    server = make_bridge(curve_keys=str(keys))
    with BridgeClient(server.endpoint, curve_keys=str(keys)) as c:
        assert c.hello()["protocol"] == PROTOCOL_VERSION
        assert c.observe().obs["state"].shape == (8,)
    for bad in (None, str(other)):  # plaintext, and a key pair the bridge never authorized
        with BridgeClient(server.endpoint, timeout_s=0.5, curve_keys=bad) as c, pytest.raises(BridgeTimeout):
            c.hello()
    with BridgeClient(server.endpoint, curve_keys=str(keys)) as c:
        assert c.heartbeat() in (True, False)  # refusals did not disturb the bridge
