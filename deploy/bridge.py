"""Robot bridge: a ZeroMQ ROUTER server around a `Robot`; its DEALER client is deploy.client.BridgeClient
(importable from here too).

    server = BridgeServer(SimRobot("PickCube"), BridgeConfig(bind="tcp://127.0.0.1:*")).start()
    with BridgeClient(server.endpoint) as c:
        o = c.observe(); r = c.act(action, deadline_ns=o.t_obs + 200_000_000); c.reset(seed=0)
        r = c.act(action, observe=True); o = r.obs   # one round trip: the reply carries the next observation
    server.stop()

    vla bridge --task PickCube --bind tcp://127.0.0.1:5555 [--lockstep] [--record DIR] [--curve-keys DIR]

Modes. Real-time (default): the robot advances on a wall clock at `robot.control_hz`; each tick
executes the newest queued action if its deadline has not passed, else holds (zero delta, last
gripper). Lock-step (`lockstep=True`, sims only): each accepted action is executed at once and time
does not advance without one. One thread serves requests and ticks, so the robot is never touched
concurrently and a slow request delays a tick rather than racing it.

Safety (deploy.safety): actions are validated on receipt (shape, dtype, NaN/inf -> "rejected"),
ordered (an action_seq not above the session's last, or computed from an observation older than
the last executed one -> "old"), checked against their deadline on receipt and again at execution
("late", never executed stale), then clamped (translation/rotation norm, workspace box). The
watchdog reports a trip when no valid action ran for `watchdog_s`; every reply carries it.

Recording: with `record_dir`, every executed step (observation before it, executed action,
instruction) goes to a LeRobot dataset from the first action after a reset; reset saves the episode.
Protocol: deploy.protocol / docs/protocol.md. REQ/REP is not used: a lost reply cannot wedge a DEALER.

Per-request cost: the current observation is laid out for the wire once (`WireArrays`: images as
zmq.Frames shared by reference between sends, its meta fields in a ready dict) and reused by every
reply until the robot steps, so an observe or act(observe=True) reply builds only its few own fields.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from deploy.client import ActReply, BridgeClient, BridgeError, BridgeTimeout, ObsReply  # noqa: F401 - re-exported
from deploy.protocol import (
    DEFAULT_LIMITS,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Message,
    ProtocolError,
    ProtocolLimits,
    WireArrays,
    decode,
    encode,
    error_message,
    now_ns,
    recv_frames,
    send_frames,
)
from deploy.robot import Observation, Robot
from deploy.safety import SafetyConfig, SafetyFilter, Watchdog

log = logging.getLogger(__name__)
NOBLOCK = int(zmq.NOBLOCK)  # plain ints: zmq's flag enums cost an enum call per use
RCVTIMEO = int(zmq.RCVTIMEO)
MAX_SESSIONS = 64  # per-session last action_seq kept for this many recent clients


@dataclass(frozen=True)
class BridgeConfig:
    bind: str = "tcp://127.0.0.1:5555"  # loopback unless told otherwise; "tcp://127.0.0.1:*" picks a port
    lockstep: bool = False
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    limits: ProtocolLimits = DEFAULT_LIMITS
    record_dir: str | None = None
    curve_keys: str | None = None

    def __post_init__(self) -> None:
        if not self.bind.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"bind={self.bind!r}: must be a tcp://, ipc:// or inproc:// endpoint")


@dataclass(slots=True)
class _Pending:
    action: list[float]  # validated, a private copy (the request's array views a zmq frame)
    deadline_ns: int
    obs_seq: int


class BridgeServer:
    def __init__(self, robot: Robot, config: BridgeConfig = BridgeConfig()) -> None:
        self.robot, self.config = robot, config
        self.safety = SafetyFilter(config.safety)
        self.watchdog = Watchdog(config.safety.watchdog_s)
        self.period_ns = int(1e9 / robot.control_hz)
        self.ctx = zmq.Context()  # own context: a ZAP authenticator is per context
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.MAXMSGSIZE, config.limits.max_message_bytes)  # bigger frames drop the peer
        self._auth = None
        if config.curve_keys:
            from deploy.keys import configure_server

            self._auth = configure_server(self.sock, config.curve_keys)
        self.sock.bind(config.bind)
        self.endpoint: str = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.recorder = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sessions: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._pending: _Pending | None = None
        self._gripper = -1.0
        self._recording = False  # armed by the first executed action of an episode
        self._acted_obs_seq = 0  # newest observation an admitted action was computed from
        self.stats: dict[str, Any] = collections.defaultdict(int)
        self.episode = 0
        self._obs_seq = 0
        self._next_tick = 0
        self._wire: list[tuple[WireArrays, dict[str, Any]] | None] = [None, None]  # [privileged]: current obs
        self._handlers = {t: getattr(self, f"_on_{t}") for t in REQUEST_TYPES}

    def _startup(self) -> None:
        """First robot contact, on the serving thread (a sim's GL context binds to the thread that renders)."""
        self._set_obs(self.robot.observe(), now_ns())
        if self.config.record_dir:
            from deploy.recorder import EpisodeRecorder

            self.recorder = EpisodeRecorder(Path(self.config.record_dir), fps=round(self.robot.control_hz),
                                            robot=self.robot)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 120.0) -> BridgeServer:
        """Serve from a daemon thread; returns once the robot answered (re-raises its startup error)."""
        self._thread = threading.Thread(target=self.serve_forever, name="bridge", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"bridge robot did not start within {timeout} s")
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        try:
            try:
                self._startup()
            except BaseException as e:
                self._startup_error = e
                raise
            finally:
                self._ready.set()
            self._loop()
        finally:
            self._close()

    def _close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        if self._auth is not None:
            self._auth.stop()
        self.sock.close(linger=0)
        self.ctx.term()
        self.robot.close()

    def _loop(self) -> None:
        # A blocking recv with a timeout up to the next tick, rather than poll + non-blocking drain:
        # one libzmq call per request on the hot path. Ticks are checked before every recv, so a
        # request flood cannot starve them.
        # The receive timeout is the largest power of two (ms, at most 50) not past the next tick:
        # waking early is harmless (the loop re-checks), waking late would delay the tick, and the
        # socket option then changes a few times per period instead of before every request.
        next_tick = self._next_tick = now_ns() + self.period_ns
        timeout = None
        sock, lockstep, stop = self.sock, self.config.lockstep, self._stop
        while not stop.is_set():
            t = now_ns()
            if lockstep:
                self.watchdog.check(t)  # reported only: lock-step time does not pass without actions
                wait_ms = 50
            elif t >= next_tick:
                self._tick(t)
                next_tick += self.period_ns
                if t - next_tick > self.period_ns:  # fell behind by more than a period: resync, count it
                    self.stats["overruns"] += 1
                    next_tick = t + self.period_ns
                self._next_tick = next_tick
                continue
            else:
                wait_ms = -(-(next_tick - t) // 1_000_000)  # ceil: never spin
                wait_ms = 50 if wait_ms >= 64 else 1 << (wait_ms.bit_length() - 1)
            if wait_ms != timeout:
                sock.setsockopt(RCVTIMEO, wait_ms)
                timeout = wait_ms
            try:
                frames = recv_frames(sock)
            except zmq.Again:  # idle until the tick (or the stop check)
                continue
            self._serve_one(frames)

    # ------------------------------------------------------------------ robot side
    def _set_obs(self, obs: Observation, t: int) -> None:
        self._obs = obs
        self._obs_seq += 1
        self._t_obs = t
        self._wire = [None, None]  # laid out again on the first request that asks for this observation

    def _hold_action(self) -> np.ndarray:
        a = np.zeros(7)
        a[6] = self._gripper
        return a

    def _execute(self, action: list[float] | None, t: int) -> np.ndarray:
        """Run one step (action, or hold when None); returns what was executed."""
        before = self._obs
        if action is None:
            executed = self._hold_action()
            obs = self.robot.hold()
            self.stats["holds"] += 1
        else:
            verdict = self.safety.check(action, self.robot.ee_position())
            executed = verdict.action
            if verdict.status == "clamped":
                self.stats["clamped"] += 1
            self._gripper = float(executed[6])
            obs = self.robot.apply_action(executed)
            self.watchdog.feed(t)
            self.stats["executed"] += 1
            self._recording = self.recorder is not None
        self._set_obs(obs, now_ns())
        if self._recording:
            self.recorder.add(before, executed)
        return executed

    def _tick(self, t: int) -> None:
        self.stats["ticks"] += 1
        if self._obs.done:  # episode over: nothing moves until reset
            self._pending = None
            return
        p, self._pending = self._pending, None
        if p is not None and t > p.deadline_ns:
            self.stats["late_at_tick"] += 1
            p = None
        try:
            self._execute(p.action if p else None, t)
        except Exception:  # a robot fault must not kill the server; the next tick holds again
            log.exception("robot step failed")
            self.stats["robot_errors"] += 1
        self.watchdog.check(now_ns())

    # ------------------------------------------------------------------ request side
    def _serve_one(self, frames: list) -> None:
        if len(frames) < 2:  # only an identity: nothing to answer
            self.stats["errors.bad_header"] += 1
            return
        ident, body = frames[0].bytes, frames[1:]
        msg = None
        try:
            msg = decode(body, self.config.limits)
            handler = self._handlers.get(msg.type)
            if handler is None:
                raise ProtocolError("bad_type", f"{msg.type!r} is not a request", msg.seq)
            self.stats["requests." + msg.type] += 1
            reply = handler(msg)
        except ProtocolError as e:
            self.stats[f"errors.{e.code}"] += 1
            reply = error_message(e.code, e.message, e.seq)
        except Exception as e:  # the robot raised: answer, hold on the next tick, stay up
            log.exception("request failed")
            self.stats["errors.internal"] += 1
            # addressed to the request, like every error whose seq could be read: a DEALER client
            # matches replies by reply_to and would otherwise wait out its timeout
            reply = error_message("internal", f"{type(e).__name__}: {e}", None if msg is None else msg.seq)
        meta = reply.meta
        meta["watchdog"] = self.watchdog.tripped
        meta["obs_seq_now"] = self._obs_seq
        meta["t_bridge"] = now_ns()
        try:
            send_frames(self.sock, [ident, *encode(reply)], NOBLOCK)
        except zmq.Again:  # peer's queue full or peer gone: drop the reply (DEALER clients time out, retry)
            self.stats["replies_dropped"] += 1

    def _obs_reply(self, req: Message, kind: str) -> Message:
        privileged = req.meta.get("privileged") is True
        wire = self._wire[privileged]
        if wire is None:  # first request for this observation: lay it out once, every later reply reuses it
            o = self._obs
            arrays = dict(o.images)
            arrays["state"] = o.state
            if privileged:
                arrays.update(o.extras)
            wire = self._wire[privileged] = (WireArrays(arrays), {
                "obs_seq": self._obs_seq, "t_obs": self._t_obs, "instruction": o.instruction,
                "success": o.success, "terminated": o.terminated, "truncated": o.truncated,
                "episode": self.episode, "episode_seed": o.seed})
        meta = wire[1].copy()  # the reply adds its own fields: never into the shared dict
        if not self.config.lockstep:  # lets clients phase-lock their loop to the robot's ticks
            meta["t_next_tick"] = self._next_tick
        return Message(kind, req.seq, wire[0], meta, req.seq)

    def _on_hello(self, req: Message) -> Message:
        meta = {"protocol": PROTOCOL_VERSION, "robot": self.robot.info(), "lockstep": self.config.lockstep,
                "control_hz": self.robot.control_hz, "safety": asdict(self.config.safety),
                "recording": self.recorder is not None}
        return Message("hello", seq=req.seq, reply_to=req.seq, meta=meta)

    def _on_observe(self, req: Message) -> Message:
        return self._obs_reply(req, "observe")

    def _on_heartbeat(self, req: Message) -> Message:
        return Message("heartbeat", seq=req.seq, reply_to=req.seq)

    def _on_stats(self, req: Message) -> Message:
        stats = {**self.stats, "watchdog_trips": self.watchdog.trips, "episode": self.episode,
                 "episodes_saved": len(self.recorder.episodes_saved) if self.recorder else 0}
        return Message("stats", seq=req.seq, reply_to=req.seq, meta={"stats": stats})

    def _on_reset(self, req: Message) -> Message:
        seed = req.meta.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
            raise ProtocolError("bad_request", f"seed must be nil or an int in [0, 2**32), got {seed!r:.40}", req.seq)
        saved = None
        if self.recorder is not None:
            saved = self.recorder.end_episode()
        self._recording = False
        self._pending = None
        self._gripper = -1.0
        obs = self.robot.reset(seed)
        self.episode += 1
        self._set_obs(obs, now_ns())
        self.watchdog.reset()
        reply = self._obs_reply(req, "reset")
        reply.meta["saved_episode"] = saved
        return reply

    def _on_act(self, req: Message) -> Message:
        t = now_ns()
        m = req.meta
        a = req.arrays.get("action")
        session, aseq, oseq, deadline = m.get("session"), m.get("action_seq"), m.get("obs_seq"), m.get("deadline_ns")
        if a is None or not isinstance(session, str) or len(session) > 64:
            raise ProtocolError("bad_request", "act needs an 'action' array and a meta 'session' str (<= 64 chars)",
                                req.seq)
        if type(aseq) is not int or type(oseq) is not int or (deadline is not None and type(deadline) is not int):
            for name, v in (("action_seq", aseq), ("obs_seq", oseq), ("deadline_ns", deadline)):
                if type(v) is not int and not (name == "deadline_ns" and v is None):  # msgpack: exact types, no bool
                    raise ProtocolError("bad_request", f"act meta {name!r} must be an int, got {v!r:.40}", req.seq)
        deadline = t + self.watchdog.timeout_ns if deadline is None else deadline
        status, reason, executed = self._admit(a, session, aseq, oseq, deadline, t)
        self.stats["act." + status] += 1
        # observe=True: the reply also carries the newest observation (after this action in lock-step
        # mode), saving the next step's `observe` round trip
        reply = self._obs_reply(req, "act") if m.get("observe") is True else Message("act", req.seq, reply_to=req.seq)
        meta = reply.meta
        meta["status"], meta["reason"], meta["action_seq"] = status, reason, aseq
        if executed is not None:
            meta["executed"] = executed.tolist()  # float64 -> python floats
        return reply

    def _admit(self, a: np.ndarray, session: str, aseq: int, oseq: int, deadline: int,
               t: int) -> tuple[str, str, np.ndarray | None]:
        v, why = self.safety.validate(a)  # validity only; clamping happens at execution, at the current pose
        if v is None:
            self._pending = None  # a malformed command cancels the queued one: hold
            return "rejected", why, None
        if self._obs.done:
            return "done", "episode is over; reset first", None
        last = self._sessions.get(session)
        if last is not None and aseq <= last:
            return "old", f"action_seq {aseq} <= last {last} of this session", None
        if oseq > self._obs_seq:
            return "rejected", f"obs_seq {oseq} is in the future (now {self._obs_seq})", None
        if (self.config.lockstep and oseq != self._obs_seq) or oseq < self._acted_obs_seq:
            return "old", f"computed from observation {oseq}, the robot is at {self._obs_seq}", None
        if t > deadline:
            return "late", f"arrived {(t - deadline) / 1e6:.1f} ms after its deadline", None
        self._sessions[session] = aseq
        self._sessions.move_to_end(session)
        self._acted_obs_seq = oseq
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        if self.config.lockstep:
            return "executed", "", self._execute(v, t)
        if self._pending is not None:
            self.stats["superseded"] += 1
        self._pending = _Pending(v, deadline, oseq)
        return "queued", "", None
