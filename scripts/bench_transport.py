"""Transport benchmark: observation -> action round trip through the bridge vs raw pyzmq vs openpi's websocket.

    .venv/bin/python scripts/bench_transport.py --out benchmarks/transport.json [--iters 500] [--jitter-s 5]

Payload: two 224x224x3 uint8 cameras + float32 [8] state (+ the instruction), action float32 [7].
- bridge:   deploy.bridge over tcp loopback and ipc: `observe` (obs comes back) then `act` (ack comes
            back), i.e. 2 round trips, msgpack headers, validation, the bridge's safety path
            (KinematicRobot in real-time mode, so no physics/rendering is timed).
- raw_zmq:  the same 4 messages with the same bytes over bare DEALER/ROUTER multipart, no header, no
            checks: the floor a hand-written pyzmq loop would reach (goal: bridge <= 1.3x of it).
- openpi:   openpi-client's WebsocketClientPolicy.infer(obs) against an openpi-style asyncio
            websockets server (metadata on connect, msgpack_numpy both ways, compression off), which is
            1 round trip with the obs going up: what a user of openpi's serving stack would run.
Each server runs in its own (spawned) process. Jitter: a ControlLoop with a no-op policy against a
real-time bridge at 10 and 50 Hz; tick-to-tick period statistics. Numbers on a shared CPU are noisy;
the JSON records the load average next to them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZE = 224


def _payload():
    rng = np.random.default_rng(0)
    imgs = {c: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for c in ("agentview", "wrist")}
    return imgs, np.zeros(8, np.float32), np.zeros(7, np.float32)


def _stats(samples_s: list[float]) -> dict[str, float]:
    us = np.asarray(samples_s) * 1e6
    return {"n": int(us.size), "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "min_us": float(us.min())}


# ----------------------------------------------------------------------------------- servers


def _bridge_server(endpoint: str, hz: float, q) -> None:
    from deploy.bridge import BridgeConfig, BridgeServer
    from deploy.robot import KinematicRobot

    server = BridgeServer(KinematicRobot(image_size=SIZE, tol=0.0, horizon=10**9, control_hz=hz),
                          BridgeConfig(bind=endpoint))
    q.put(server.endpoint)
    server.serve_forever()


def _raw_server(endpoint: str, hz: float, q) -> None:  # hz: same signature as _bridge_server
    import zmq

    imgs, state, _ = _payload()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    q.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    obs_frames = [imgs["agentview"], imgs["wrist"], state]
    while True:
        frames = sock.recv_multipart(copy=False)
        ident = frames[0].bytes
        if frames[1].bytes == b"o":
            sock.send_multipart([ident, b"obs", *obs_frames], copy=False)
        else:
            np.frombuffer(frames[2].buffer, np.float32)  # read the action like a real server would
            sock.send_multipart([ident, b"ok"], copy=False)


def _ws_server(port_q) -> None:
    import asyncio

    import websockets.asyncio.server as ws_server
    from openpi_client import msgpack_numpy

    packer = msgpack_numpy.Packer()

    async def handler(ws):  # mirrors openpi.serving.websocket_policy_server.WebsocketPolicyServer._handler
        await ws.send(packer.pack({"meta": "bench"}))
        async for message in ws:
            obs = msgpack_numpy.unpackb(message)
            action = {"actions": np.zeros((1, 7), np.float32) + obs["observation/state"][:7]}
            await ws.send(packer.pack(action))

    async def main():
        async with ws_server.serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
            port_q.put(srv.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


def _start(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q), daemon=True)
    p.start()
    return p, q.get(timeout=120)


# ----------------------------------------------------------------------------------- clients


def bench_bridge(endpoint: str, iters: int, warmup: int) -> dict[str, float]:
    from deploy.bridge import BridgeClient

    action = np.zeros(7, np.float32)
    out = []
    with BridgeClient(endpoint) as c:
        for i in range(iters + warmup):
            t = time.perf_counter()
            o = c.observe()
            c.act(action, obs_seq=o.obs_seq, deadline_ns=o.t_bridge + 10**9)
            if i >= warmup:
                out.append(time.perf_counter() - t)
    return out


def bench_raw(endpoint: str, iters: int, warmup: int) -> dict[str, float]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    action = np.zeros(7, np.float32)
    out = []
    for i in range(iters + warmup):
        t = time.perf_counter()
        sock.send(b"o")
        frames = sock.recv_multipart(copy=False)
        imgs = [np.frombuffer(f.buffer, np.uint8).reshape(SIZE, SIZE, 3) for f in frames[1:3]]
        assert imgs[0].shape == (SIZE, SIZE, 3)
        sock.send_multipart([b"a", action], copy=False)
        sock.recv_multipart(copy=False)
        if i >= warmup:
            out.append(time.perf_counter() - t)
    sock.close()
    ctx.term()
    return out


def bench_openpi(port: int, iters: int, warmup: int) -> dict[str, float]:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    imgs, state, _ = _payload()
    policy = WebsocketClientPolicy("127.0.0.1", port)
    obs = {"observation/image": imgs["agentview"], "observation/wrist_image": imgs["wrist"],
           "observation/state": state, "prompt": "pick up the red cube"}
    out = []
    for i in range(iters + warmup):
        t = time.perf_counter()
        a = policy.infer(obs)["actions"]
        assert a.shape == (1, 7)
        if i >= warmup:
            out.append(time.perf_counter() - t)
    policy._ws.close()
    return out


def bench_jitter(hz: float, seconds: float) -> dict[str, float]:
    from deploy.bridge import BridgeClient
    from deploy.control import ControlConfig, ControlLoop, period_stats
    from deploy.runtime import PolicyRuntime

    proc, endpoint = _start(_bridge_server, "tcp://127.0.0.1:*", hz)
    try:
        with BridgeClient(endpoint) as c:
            steps = int(seconds * hz)
            cfg = ControlConfig(hz=hz, stop_on_success=False, max_steps=steps)
            rep = ControlLoop(c, PolicyRuntime(lambda obs: np.zeros(7, np.float32)), cfg).run_episode(reset=False)
            bridge = c.stats()
        return {**period_stats(rep.periods_ns, hz), "counts": rep.counts,
                "bridge_overruns": bridge.get("overruns", 0), "bridge_late_at_tick": bridge.get("late_at_tick", 0)}
    finally:
        proc.kill()


def bench_codec(n: int = 2000) -> dict[str, float]:
    """In-process cost of the protocol layer alone (no sockets), median us per call."""
    from deploy.protocol import Message, decode, encode

    imgs, state, action = _payload()
    obs = Message("observe", seq=1, reply_to=1, arrays={**imgs, "state": state},
                  meta={"obs_seq": 1, "t_obs": 1, "instruction": "pick up the red cube", "success": False,
                        "terminated": False, "truncated": False, "episode": 0, "episode_seed": 0,
                        "watchdog": False, "obs_seq_now": 1, "t_bridge": 1, "t_next_tick": 1})
    act = Message("act", seq=2, arrays={"action": action},
                  meta={"session": "0" * 32, "action_seq": 1, "obs_seq": 1, "deadline_ns": 1})
    out = {}
    for name, msg in (("obs", obs), ("act", act)):
        frames = [bytes(f) if not isinstance(f, bytes) else f for f in encode(msg)]
        for op, fn in (("encode", lambda m=msg: encode(m)), ("decode", lambda f=frames: decode(f))):
            ts = []
            for _ in range(n):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            out[f"{op}_{name}_us"] = float(np.median(ts) * 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/transport.json")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20, help="untimed iterations per client per round")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (iters are split across them)")
    ap.add_argument("--jitter-s", type=float, default=10.0, help="seconds of control loop per rate")
    args = ap.parse_args(argv)

    from vla.io import atomic_write_json

    tmp = tempfile.mkdtemp(prefix="vla-bench-")
    procs, runs = [], {}  # name -> (client fn, endpoint); all servers up at once, clients interleaved
    try:
        for transport, bind in (("tcp", "tcp://127.0.0.1:*"), ("ipc", f"ipc://{tmp}/{{}}.sock")):
            for name, server, client in (("bridge", _bridge_server, bench_bridge), ("raw_zmq", _raw_server, bench_raw)):
                proc, endpoint = _start(server, bind.format(name), 10.0)
                procs.append(proc)
                runs[f"{name}_{transport}"] = (client, endpoint)
        try:
            proc, port = _start(_ws_server)
            procs.append(proc)
            runs["openpi_ws_tcp"] = (bench_openpi, port)
        except ImportError as e:
            print(f"openpi-client not installed ({e}); pip install --no-deps openpi-client", file=sys.stderr)
        # rounds interleave the transports so drifting load on a shared machine biases none of them
        samples: dict[str, list[float]] = {k: [] for k in runs}
        per_round = max(1, args.iters // args.rounds)
        for _ in range(args.rounds):
            for name, (client, endpoint) in runs.items():
                samples[name] += client(endpoint, per_round, args.warmup)
    finally:
        for p in procs:
            p.kill()
    results = {k: _stats(v) for k, v in samples.items()}
    for k, v in results.items():
        print(k, {m: round(x, 1) for m, x in v.items()}, flush=True)
    if "openpi_ws_tcp" not in results:
        results["openpi_ws_tcp"] = {"error": "openpi-client not installed"}
    ratios = {}
    for t in ("tcp", "ipc"):
        for q in ("p50_us", "p99_us"):
            ratios[f"bridge_vs_raw_zmq_{t}_{q[:3]}"] = results[f"bridge_{t}"][q] / results[f"raw_zmq_{t}"][q]
    if "p50_us" in results["openpi_ws_tcp"]:
        for q in ("p50_us", "p99_us"):
            ratios[f"bridge_vs_openpi_tcp_{q[:3]}"] = results["bridge_tcp"][q] / results["openpi_ws_tcp"][q]
    jitter = {f"{hz:g}hz": bench_jitter(hz, args.jitter_s) for hz in (10.0, 50.0)}
    report = {
        "benchmark": "transport",
        "payload": {"cameras": 2, "image": [SIZE, SIZE, 3], "obs_bytes": 2 * SIZE * SIZE * 3 + 32, "action": [7]},
        "config": vars(args),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg": list(os.getloadavg())},
        "latency": results,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "protocol_codec": bench_codec(),
        "jitter": jitter,
        "notes": "bridge and raw_zmq: observe + act = 2 round trips; openpi: infer = 1 round trip (obs up, action "
                 "down). ratio < 1 means the bridge is faster.",
    }
    atomic_write_json(args.out, report)
    print({k: round(v, 3) for k, v in ratios.items()})
    print({k: {m: round(v[m], 3) for m in ("mean_ms", "std_ms", "p99_ms", "err_p99_ms")} for k, v in jitter.items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
