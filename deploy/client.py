"""`BridgeClient`: the DEALER client of a robot bridge (deploy.bridge.BridgeServer), and its replies.

    with BridgeClient("tcp://127.0.0.1:5555") as c:
        o = c.observe(); r = c.act(action, deadline_ns=o.t_obs + 200_000_000); c.reset(seed=0)
        r = c.act(action, observe=True); o = r.obs   # one round trip: the reply carries the next observation

Every request has a seq, replies are matched by reply_to, stale replies from timed-out requests are
discarded, and every wait is bounded (BridgeTimeout). Protocol: deploy.protocol / docs/protocol.md.
Also importable from deploy.bridge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from deploy.protocol import (
    DEFAULT_LIMITS,
    Message,
    ProtocolError,
    ProtocolLimits,
    decode,
    encode,
    now_ns,
    recv_frames,
    send_frames,
)

NOBLOCK = int(zmq.NOBLOCK)  # plain ints: zmq's flag enums cost an enum call per use
RCVTIMEO = int(zmq.RCVTIMEO)


class BridgeError(RuntimeError):
    """The bridge answered with an error reply (`code` from deploy.protocol.ERROR_CODES)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"bridge error {code}: {message}")
        self.code = code


class BridgeTimeout(TimeoutError):
    """No reply within the timeout (bridge down, unreachable, or refusing us, e.g. CURVE auth)."""


@dataclass(slots=True)
class ObsReply:
    """An observation as the control loop sees it. `obs` is the policy's observation dict."""

    obs: dict[str, Any]  # camera name -> uint8 [H, W, 3], "state" float32 [8], "instruction", extras
    obs_seq: int
    t_obs: int  # bridge monotonic ns when the observation was taken
    t_bridge: int  # bridge monotonic ns when the reply left
    success: bool
    terminated: bool
    truncated: bool
    episode: int
    watchdog: bool
    t_next_tick: int | None = None  # real-time bridges: when the robot's next tick is due (bridge clock)
    t_received: int = 0  # this host's monotonic ns when the reply arrived

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    @property
    def age_s(self) -> float:
        return (self.t_bridge - self.t_obs) / 1e9


@dataclass(slots=True)
class ActReply:
    status: str  # queued | executed | late | old | rejected | done
    reason: str
    executed: np.ndarray | None  # float64 [7] after clamps (lock-step only)
    watchdog: bool
    t_bridge: int
    obs: ObsReply | None = None  # act(observe=True): the newest observation, in the same reply


class BridgeClient:
    """DEALER client: every request has a seq, replies are matched by reply_to, stale replies from
    timed-out requests are discarded, every wait is bounded (BridgeTimeout)."""

    def __init__(self, endpoint: str, timeout_s: float = 2.0, reset_timeout_s: float = 60.0,
                 curve_keys: str | None = None, limits: ProtocolLimits = DEFAULT_LIMITS) -> None:
        self.endpoint, self.timeout_s, self.reset_timeout_s, self.limits = endpoint, timeout_s, reset_timeout_s, limits
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue requests for a bridge we are not connected to
        self.sock.sndtimeo = int(1000 * timeout_s)  # a send can block if the peer vanishes after the check
        if curve_keys:
            from deploy.keys import configure_client

            configure_client(self.sock, curve_keys)
        self.sock.connect(endpoint)
        self._out = zmq.Poller()  # built once: Socket.poll builds one per call
        self._out.register(self.sock, zmq.POLLOUT)
        self._rcvtimeo = -1  # libzmq's default: set before the first wait
        self.session = uuid.uuid4().hex
        self._seq = 0
        self._action_seq = 0
        self.last_obs_seq = 0

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close(linger=0)
            self.ctx.term()

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, type: str, arrays: dict | None = None, meta: dict | None = None,
                timeout_s: float | None = None) -> Message:
        timeout_ms = max(0, int(1000 * (self.timeout_s if timeout_s is None else timeout_s)))
        self._seq += 1
        seq = self._seq
        frames = encode(Message(type, seq, arrays or {}, meta or {}))
        try:  # non-blocking first: the common case costs one call and no poll
            send_frames(self.sock, frames, NOBLOCK)
        except zmq.Again:  # not connected yet (IMMEDIATE) or the queue is full: wait for room, bounded
            if not self._out.poll(timeout_ms):
                raise BridgeTimeout(f"no connection to the bridge at {self.endpoint} within {timeout_ms} ms") from None
            try:
                send_frames(self.sock, frames)
            except zmq.Again:
                raise BridgeTimeout(f"could not send {type!r} to the bridge at {self.endpoint}") from None
        deadline = now_ns() + timeout_ms * 1_000_000
        wait_ms = timeout_ms
        while True:
            if wait_ms != self._rcvtimeo:  # blocking recv with a timeout: one libzmq call, no poller
                self.sock.setsockopt(RCVTIMEO, wait_ms)
                self._rcvtimeo = wait_ms
            try:
                frames = recv_frames(self.sock)
            except zmq.Again:
                raise BridgeTimeout(f"bridge at {self.endpoint} did not answer {type!r} within {timeout_ms} ms") from None
            try:
                reply = decode(frames, self.limits)
            except ProtocolError as e:
                raise BridgeError(e.code, f"malformed reply: {e.message}") from None
            if reply.reply_to != seq:  # a late reply to an earlier, timed-out request: wait out the rest
                wait_ms = (deadline - now_ns()) // 1_000_000
                if wait_ms <= 0:
                    raise BridgeTimeout(f"bridge at {self.endpoint} did not answer {type!r} within {timeout_ms} ms")
                continue
            if reply.type == "error":
                raise BridgeError(str(reply.meta.get("code")), str(reply.meta.get("message")))
            return reply

    def hello(self) -> dict[str, Any]:
        return self.request("hello").meta

    def heartbeat(self) -> bool:
        """True if the bridge's watchdog is tripped (it holds)."""
        return bool(self.request("heartbeat").meta["watchdog"])

    def stats(self) -> dict[str, Any]:
        return self.request("stats").meta["stats"]

    def _obs(self, r: Message) -> ObsReply:
        m = r.meta
        obs = r.arrays  # decode's own dict, not shared: extended in place
        obs["instruction"] = m["instruction"]
        obs["episode_seed"] = m.get("episode_seed")
        self.last_obs_seq = m["obs_seq"]
        return ObsReply(obs, m["obs_seq"], m["t_obs"], m["t_bridge"], m["success"], m["terminated"],
                        m["truncated"], m["episode"], m["watchdog"], m.get("t_next_tick"), now_ns())

    def observe(self, privileged: bool = False) -> ObsReply:
        return self._obs(self.request("observe", meta={"privileged": privileged}))

    def reset(self, seed: int | None = None, privileged: bool = False) -> ObsReply:
        return self._obs(self.request("reset", meta={"seed": seed, "privileged": privileged},
                                      timeout_s=self.reset_timeout_s))

    def act(self, action: np.ndarray, seq: int | None = None, obs_seq: int | None = None,
            deadline_ns: int | None = None, observe: bool = False, privileged: bool = False) -> ActReply:
        """Send one action (float [7]); `seq` defaults to this client's next action_seq, `obs_seq` to
        the last observation received, `deadline_ns` (bridge clock) to receipt + the watchdog timeout.

        observe=True: the reply also carries the bridge's newest observation (`ActReply.obs`, with
        privileged arrays if asked), so a step costs one round trip instead of observe + act. In
        lock-step mode that observation is the one this action produced (or, if the action was not
        executed, the unchanged current one). In real-time mode it is the newest at receipt, i.e.
        *before* the queued action runs at the next tick, so a real-time loop still observes after
        the tick instead (deploy.control does)."""
        if seq is None:
            self._action_seq += 1
            seq = self._action_seq
        else:
            self._action_seq = max(self._action_seq, seq)
        meta = {"session": self.session, "action_seq": int(seq),
                "obs_seq": int(self.last_obs_seq if obs_seq is None else obs_seq),
                "deadline_ns": None if deadline_ns is None else int(deadline_ns)}
        if observe:
            meta["observe"] = True
            meta["privileged"] = bool(privileged)
        r = self.request("act", arrays={"action": np.asarray(action)}, meta=meta)
        m = r.meta
        ex = m.get("executed")
        return ActReply(m["status"], m["reason"], None if ex is None else np.asarray(ex), m["watchdog"],
                        m["t_bridge"], self._obs(r) if observe and "obs_seq" in m else None)  # older bridges: no obs
