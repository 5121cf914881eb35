"""Transport benchmark: observation -> action round trip through the bridge vs raw pyzmq vs openpi's websocket.

    .venv/bin/python scripts/bench_transport.py --out benchmarks/transport.json [--iters 1000] [--jitter-s 5]

Payload: two 224x224x3 uint8 cameras + float32 [8] state (+ the instruction), action float32 [7].
Two step shapes, each over tcp loopback and ipc, each against a raw pyzmq loop of the same shape:
- bridge:        deploy.bridge `observe` (obs comes back) then `act` (ack comes back): 2 round trips,
                 msgpack headers, validation, the bridge's safety path (KinematicRobot in real-time
                 mode, so no physics/rendering is timed).
- bridge_step:   `act(..., observe=True)`: the action goes up, the ack plus the newest observation
                 come back: 1 round trip, same real-time bridge.
- bridge_step_lockstep: the same 1-round-trip step against a lock-step bridge (what an evaluation
                 loop runs): the reply waits for the safety clamp and the robot step, so it is not a
                 pure transport number and has no ratio.
- raw_zmq / raw_zmq_step: the same messages with the same bytes over bare DEALER/ROUTER multipart,
                 no header, no checks: the floor a hand-written pyzmq loop would reach (goal: bridge
                 <= 1.3x of it). Images zero-copy on every send (`send(img, copy=False)`), small
                 frames copied: the plain pyzmq way.
- raw_zmq_frame / raw_zmq_step_frame: the same, but the images wrapped in zmq.Frames once and every
                 send sharing them by reference, which is what the bridge does with an observation it
                 answers more than once (deploy.protocol.WireArrays): pyzmq then registers the buffer
                 with its garbage-collector thread once, not on every send. Here the real-time bridge
                 answers each observation many times between its 10 Hz ticks, so this is the baseline
                 with the bridge's own send strategy, and the ratio against it is the protocol's
                 overhead alone; reported with its own ratio so neither baseline is hidden.
- raw_zmq_copy / raw_zmq_step_copy: the same, but every frame copied. On some hosts and heap states
                 that is faster for 147 KiB images, on others 2x slower (glibc trims the freed copies
                 and faults them back in: deploy/protocol.py ZERO_COPY_MIN_BYTES), which is why the
                 bridge does not do it; reported with its own ratio.
- openpi:        openpi-client's WebsocketClientPolicy.infer(obs) against an openpi-style asyncio
                 websockets server (metadata on connect, msgpack_numpy both ways, compression off),
                 1 round trip with the obs going up: what a user of openpi's serving stack would run;
                 compared with bridge_step (also 1 round trip, the obs coming down). Without openpi-client
                 (`pip install --no-deps openpi-client`) or websockets>=13 the row is skipped up front with a
                 message, and the JSON's latency.openpi_ws_tcp says {"skipped": true, "reason": ...}.
Each server runs in its own (spawned) process; clients are interleaved in rounds. Every row also
records cpu_us_per_step (client process with its zmq threads + server process, Linux schedstat), the
part of the overhead a busy host does not blur as much as latency. Jitter: a
ControlLoop with a no-op policy against a real-time bridge at 10 and 50 Hz; tick-to-tick period
statistics. Numbers on a shared CPU are noisy; the JSON records the load average next to them.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import platform
import queue
import shutil
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


def _bridge_server(endpoint: str, hz: float, lockstep: bool, q) -> None:
    from deploy.bridge import BridgeConfig, BridgeServer
    from deploy.robot import KinematicRobot

    server = BridgeServer(KinematicRobot(image_size=SIZE, tol=0.0, horizon=10**9, control_hz=hz),
                          BridgeConfig(bind=endpoint, lockstep=lockstep))
    q.put(server.endpoint)
    server.serve_forever()


RAW_MODES = ("", "_frame", "_copy")  # row suffixes of the raw baselines (see the module docstring)


def _raw_server(endpoint: str, mode: str, q) -> None:
    """b"o" -> obs frames; [b"a", action] -> b"ok"; [b"s", action] -> obs frames (the 1-round-trip step).
    mode "": images zero-copy on every send, small frames copied (the cheaper way for each); "_frame":
    images as zmq.Frames made once, sent by reference; "_copy": all copied."""
    import zmq

    imgs, state, _ = _payload()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    q.put(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    obs_frames = [imgs["agentview"], imgs["wrist"], state]
    if mode == "_frame":
        obs_frames[:2] = [zmq.Frame(a, copy=False) for a in obs_frames[:2]]
    while True:
        frames = sock.recv_multipart(copy=False)
        ident, kind = frames[0].bytes, frames[1].bytes
        if kind != b"o":
            np.frombuffer(frames[2].buffer, np.float32)  # read the action like a real server would
        if kind == b"a":
            sock.send_multipart([ident, b"ok"])
        elif mode == "_copy":
            sock.send_multipart([ident, b"obs", *obs_frames])
        else:
            sock.send(ident, zmq.SNDMORE)
            sock.send(b"obs", zmq.SNDMORE)
            sock.send(obs_frames[0], zmq.SNDMORE, copy=False)
            sock.send(obs_frames[1], zmq.SNDMORE, copy=False)
            sock.send(obs_frames[2])


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


def _cpu_ns(pid: int) -> int | None:
    """CPU time (ns) of all live threads of `pid` (Linux schedstat), None where unavailable."""
    try:
        return sum(int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                   for tid in os.listdir(f"/proc/{pid}/task"))
    except (OSError, ValueError, IndexError):
        return None


def _start(target, *args, timeout_s: float = 120.0):  # target(*args, queue) puts its endpoint on the queue
    """Spawn a server; its endpoint once it is up. Raises at once if the child dies first (an import error in
    it, say: its traceback is on stderr), instead of waiting out the timeout."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q), daemon=True)
    p.start()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return p, q.get(timeout=0.1)
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{target.__name__} exited with code {p.exitcode} before it was up") from None
            if time.monotonic() > deadline:
                p.kill()
                raise TimeoutError(f"{target.__name__} not up after {timeout_s:g} s") from None


# what the openpi baseline imports (bench_openpi, _ws_server): module -> (package, how to install it)
OPENPI_DEPS = {
    "openpi_client.msgpack_numpy": ("openpi-client", "pip install --no-deps openpi-client"),
    "openpi_client.websocket_client_policy": ("openpi-client", "pip install --no-deps openpi-client"),
    "websockets.asyncio.server": ("websockets>=13", "pip install 'websockets>=13'"),
}


def openpi_missing() -> str | None:
    """Why the openpi baseline cannot run here (the missing package and how to install it), None if it can.
    Checked in this process up front: the server child would otherwise die on the import."""
    for module, (package, install) in OPENPI_DEPS.items():
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"{package} is not installed ({e}); {install}"
    return None


# ----------------------------------------------------------------------------------- clients


def bench_bridge(endpoint: str, iters: int, warmup: int) -> list[float]:
    """observe + act: 2 round trips per step."""
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


def bench_bridge_step(endpoint: str, iters: int, warmup: int) -> list[float]:
    """act(observe=True): 1 round trip per step, the reply carries the next observation."""
    from deploy.bridge import BridgeClient

    action = np.zeros(7, np.float32)
    out = []
    with BridgeClient(endpoint) as c:
        o = c.observe()
        for i in range(iters + warmup):
            t = time.perf_counter()
            r = c.act(action, obs_seq=o.obs_seq, deadline_ns=o.t_bridge + 10**9, observe=True)
            o = r.obs
            if i >= warmup:
                out.append(time.perf_counter() - t)
    assert o.obs["agentview"].shape == (SIZE, SIZE, 3)
    return out


def _raw_client(endpoint: str, iters: int, warmup: int, one_trip: bool) -> list[float]:
    """The same messages as the bridge path, hand-written: no header, no validation, best pyzmq calls
    (multipart receive without copies, numpy views onto the frames)."""
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    action = np.zeros(7, np.float32)
    out = []
    for i in range(iters + warmup):
        t = time.perf_counter()
        if one_trip:
            sock.send_multipart([b"s", action])
        else:
            sock.send(b"o")
        frames = sock.recv_multipart(copy=False)
        imgs = [np.frombuffer(f.buffer, np.uint8).reshape(SIZE, SIZE, 3) for f in frames[1:3]]
        assert imgs[0].shape == (SIZE, SIZE, 3)
        if not one_trip:
            sock.send_multipart([b"a", action])
            sock.recv_multipart(copy=False)
        if i >= warmup:
            out.append(time.perf_counter() - t)
    sock.close()
    ctx.term()
    return out


def bench_raw(endpoint: str, iters: int, warmup: int) -> list[float]:
    return _raw_client(endpoint, iters, warmup, one_trip=False)


def bench_raw_step(endpoint: str, iters: int, warmup: int) -> list[float]:
    return _raw_client(endpoint, iters, warmup, one_trip=True)


def bench_openpi(port: int, iters: int, warmup: int) -> list[float]:
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
    from vla.runtime import PolicyRuntime

    proc, endpoint = _start(_bridge_server, "tcp://127.0.0.1:*", hz, False)
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
    """In-process cost of the protocol layer alone (no sockets), median us per call. obs_wire: the
    observation laid out once (WireArrays), as the bridge encodes its replies."""
    from deploy.protocol import Message, WireArrays, decode, encode

    imgs, state, action = _payload()
    obs = Message("observe", seq=1, reply_to=1, arrays={**imgs, "state": state},
                  meta={"obs_seq": 1, "t_obs": 1, "instruction": "pick up the red cube", "success": False,
                        "terminated": False, "truncated": False, "episode": 0, "episode_seed": 0,
                        "watchdog": False, "obs_seq_now": 1, "t_bridge": 1, "t_next_tick": 1})
    act = Message("act", seq=2, arrays={"action": action},
                  meta={"session": "0" * 32, "action_seq": 1, "obs_seq": 1, "deadline_ns": 1})
    obs_wire = Message("observe", seq=1, reply_to=1, arrays=WireArrays(obs.arrays), meta=obs.meta)
    out = {}
    for name, msg in (("obs", obs), ("obs_wire", obs_wire), ("act", act)):
        frames = [f if isinstance(f, bytes) else bytes(memoryview(f)) for f in encode(msg)]
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
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=20, help="untimed iterations per client per round")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds (iters are split across them)")
    ap.add_argument("--jitter-s", type=float, default=10.0, help="seconds of control loop per rate (0: no jitter measurement)")
    args = ap.parse_args(argv)
    if args.jitter_s < 0:
        ap.error(f"--jitter-s {args.jitter_s:g}: must be >= 0")

    from vla.io import atomic_write_json

    tmp = tempfile.mkdtemp(prefix="vla-bench-")
    procs, runs = [], {}  # name -> (client fn, endpoint); all servers up at once, clients interleaved
    try:
        for transport, bind in (("tcp", "tcp://127.0.0.1:*"), ("ipc", f"ipc://{tmp}/{{}}.sock")):
            servers = {"rt": (_bridge_server, 10.0, False), "ls": (_bridge_server, 10.0, True),
                       **{"raw" + mode: (_raw_server, mode) for mode in RAW_MODES}}
            eps, pids = {}, {}
            for name, (server, *server_args) in servers.items():
                proc, eps[name] = _start(server, bind.format(name), *server_args)
                procs.append(proc)
                pids[name] = proc.pid
            runs[f"bridge_{transport}"] = (bench_bridge, eps["rt"], pids["rt"])
            runs[f"bridge_step_{transport}"] = (bench_bridge_step, eps["rt"], pids["rt"])
            runs[f"bridge_step_lockstep_{transport}"] = (bench_bridge_step, eps["ls"], pids["ls"])
            for mode in RAW_MODES:
                srv = "raw" + mode
                runs[f"raw_zmq{mode}_{transport}"] = (bench_raw, eps[srv], pids[srv])
                runs[f"raw_zmq_step{mode}_{transport}"] = (bench_raw_step, eps[srv], pids[srv])
        skipped = {}  # row -> why it was not run
        if (why := openpi_missing()) is None:
            try:
                proc, port = _start(_ws_server)
                procs.append(proc)
                runs["openpi_ws_tcp"] = (bench_openpi, port, proc.pid)
            except (RuntimeError, TimeoutError) as e:
                why = f"its websocket server did not start: {e}"
        if why is not None:
            skipped["openpi_ws_tcp"] = why
            print(f"bench_transport: skipping the openpi baseline: {why}", file=sys.stderr, flush=True)
        # rounds interleave the transports so drifting load on a shared machine biases none of them
        # CPU per step (client process incl. its zmq threads + server process) is the load-independent
        # part of the overhead: on a busy host, latency grows with every microsecond either side computes
        samples: dict[str, list[float]] = {k: [] for k in runs}
        cpu_ns: dict[str, int | None] = dict.fromkeys(runs, 0)
        per_round = max(1, args.iters // args.rounds)
        for _ in range(args.rounds):
            for name, (client, endpoint, pid) in runs.items():
                c0, s0 = time.process_time_ns(), _cpu_ns(pid)
                samples[name] += client(endpoint, per_round, args.warmup)
                c1, s1 = time.process_time_ns(), _cpu_ns(pid)
                if cpu_ns[name] is not None and s0 is not None and s1 is not None:
                    cpu_ns[name] += (c1 - c0) + (s1 - s0)
                else:
                    cpu_ns[name] = None
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    steps = args.rounds * (per_round + args.warmup)
    results = {k: {**_stats(v), **({} if cpu_ns[k] is None else {"cpu_us_per_step": cpu_ns[k] / steps / 1e3})}
               for k, v in samples.items()}
    for k, v in results.items():
        print(k, {m: round(x, 1) for m, x in v.items()}, flush=True)
    for k, why in skipped.items():
        results[k] = {"skipped": True, "reason": why}
    ratios = {}
    for t in ("tcp", "ipc"):
        for shape in ("", "_step"):
            for mode in RAW_MODES:
                raw = results[f"raw_zmq{shape}{mode}_{t}"]
                for q in ("p50_us", "p99_us", "cpu_us_per_step"):
                    if q in raw:
                        ratios[f"bridge{shape}_vs_raw_zmq{shape}{mode}_{t}_{q[:3]}"] = results[f"bridge{shape}_{t}"][q] / raw[q]
    if "p50_us" in results["openpi_ws_tcp"]:
        for q in ("p50_us", "p99_us"):
            ratios[f"bridge_step_vs_openpi_tcp_{q[:3]}"] = results["bridge_step_tcp"][q] / results["openpi_ws_tcp"][q]
    jitter = {f"{hz:g}hz": bench_jitter(hz, args.jitter_s) for hz in (10.0, 50.0)} if args.jitter_s > 0 else {}
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
        "notes": "bridge and raw_zmq: observe + act = 2 round trips; bridge_step and raw_zmq_step: act with the "
                 "observation in the reply = 1 round trip; openpi: infer = 1 round trip (obs up, action down). "
                 "bridge_step_lockstep includes the bridge's safety clamp and robot step (no raw equivalent). "
                 "ratio < 1 means the bridge is faster; *_vs_raw_zmq_* ratios compare with the raw loop that sends "
                 "images zero-copy on every send, *_frame* with the raw loop that shares images made into zmq.Frames "
                 "once (the bridge's strategy for an observation answered many times: the protocol's overhead alone), "
                 "*_copy* with the all-copy loop. "
                 "cpu_us_per_step: CPU of the client process (with its zmq threads) plus the server process per "
                 "step (warm-up steps included), less sensitive to a busy host than latency; *_cpu ratios use it.",
    }
    atomic_write_json(args.out, report)
    print({k: round(v, 3) for k, v in ratios.items()})
    print({k: {m: round(v[m], 3) for m in ("mean_ms", "std_ms", "p99_ms", "err_p99_ms")} for k, v in jitter.items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
