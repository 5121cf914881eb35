"""Teleoperation: drive the arm through a bridge (which records the demo) from keys or any device.

    vla bridge --task PickCube --record runs/demos          # terminal 1: the bridge records
    vla teleop --connect tcp://127.0.0.1:5555               # terminal 2: drive with the keys below

Keys (terminal, no Enter needed): w/s = +x/-x, a/d = +y/-y, r/f = +z/-z (base frame, `step_m` each
tick a key is pressed), j/l = -yaw/+yaw, i/k = -pitch/+pitch, u/o = -roll/+roll (`step_rad`),
space = toggle gripper, n = end episode (the bridge saves it) and start the next, q = quit.

Any other device plugs in as a `TeleopSource` (`poll() -> TeleopCommand`, called once per tick):
a SpaceMouse or a leader arm maps its reading to the same end-effector delta, and `run_teleop`
sends it through the same `BridgeClient` protocol the policy uses.
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from deploy.bridge import BridgeClient


@dataclass(frozen=True)
class TeleopCommand:
    delta: np.ndarray = field(default_factory=lambda: np.zeros(6))  # float [6] m / rad this tick, base frame
    gripper: float | None = None  # None: keep the last command; else in [-1, 1]
    end_episode: bool = False
    quit: bool = False


class TeleopSource:
    def poll(self) -> TeleopCommand:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


KEYMAP = {  # key -> (axis index into the 6-D delta, sign)
    "w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "f": (2, -1),
    "u": (3, -1), "o": (3, 1), "i": (4, -1), "k": (4, 1), "j": (5, -1), "l": (5, 1),
}


class KeyboardTeleop(TeleopSource):
    """Raw-mode terminal keys (see module docstring); every key press since the last tick counts."""

    def __init__(self, step_m: float = 0.01, step_rad: float = 0.05, stream=None) -> None:
        if not step_m > 0 or not step_rad > 0:
            raise ValueError(f"step_m={step_m}, step_rad={step_rad}: must be > 0")
        self.step_m, self.step_rad = step_m, step_rad
        self.stream = stream or sys.stdin
        self.fd = self.stream.fileno()
        self.gripper = -1.0
        self._saved = None
        if os.isatty(self.fd):
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)  # keys arrive one by one, unechoed; Ctrl-C still works

    def poll(self) -> TeleopCommand:
        keys = ""
        while select.select([self.fd], [], [], 0)[0]:
            ch = os.read(self.fd, 64).decode(errors="ignore")
            if not ch:
                break
            keys += ch
        return self.command(keys)

    def command(self, keys: str) -> TeleopCommand:
        delta = np.zeros(6)
        for ch in keys.lower():
            if ch in KEYMAP:
                axis, sign = KEYMAP[ch]
                delta[axis] += sign * (self.step_m if axis < 3 else self.step_rad)
            elif ch == " ":
                self.gripper = -self.gripper
        return TeleopCommand(delta, self.gripper, end_episode="n" in keys.lower(), quit="q" in keys.lower())

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


class ScriptedTeleop(TeleopSource):
    """Replays a sequence of commands (tests, scripted demos); quits when they run out."""

    def __init__(self, commands: Iterable[TeleopCommand]) -> None:
        self._it: Iterator[TeleopCommand] = iter(commands)

    def poll(self) -> TeleopCommand:
        return next(self._it, TeleopCommand(quit=True))


def run_teleop(client: BridgeClient, source: TeleopSource, hz: float = 10.0, max_latency_s: float = 0.2,
               episodes: int | None = None, log=None) -> dict[str, int]:
    """Drive the bridge from `source` until it quits (or `episodes` episodes ended); returns counts."""
    import time

    period = 1.0 / hz
    counts: dict[str, int] = {"ticks": 0, "episodes": 0}
    gripper = -1.0
    next_t = time.monotonic()
    while True:
        cmd = source.poll()
        if cmd.quit:
            break
        if cmd.end_episode:
            o = client.reset()
            counts["episodes"] += 1
            if log:
                log(f"episode ended; new episode {o.episode}: {o.obs['instruction']!r}")
            if episodes is not None and counts["episodes"] >= episodes:
                break
        else:
            o = client.observe()
            if cmd.gripper is not None:
                gripper = float(cmd.gripper)
            action = np.concatenate([np.asarray(cmd.delta, dtype=np.float64), [gripper]])
            r = client.act(action, obs_seq=o.obs_seq, deadline_ns=o.t_bridge + int(max_latency_s * 1e9))
            counts[r.status] = counts.get(r.status, 0) + 1
        counts["ticks"] += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    return counts
