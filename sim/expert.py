"""Scripted-expert machinery: waypoint phases tracked through the same EE-delta action interface.

A task's expert subclasses `WaypointExpert` and implements `phases()`, a list of `Phase`s whose
targets are functions of the (privileged) scene state, re-evaluated every step so the expert stays
closed-loop (a nudged cube is re-tracked). Motions are smooth: the translation command is a
proportional step toward the waypoint, capped in speed and in change per step (acceleration), so
demonstrations ramp up and down instead of jumping. Optional Gaussian noise perturbs the returned
(executed) translation, at a reduced scale in contact phases (final descent, grasp, push) where a 5 mm
kick decides the outcome; the closed loop corrects it next step. `clean_action` keeps the command before
the noise: recording it as the label while executing the noisy one (DART, Laskey et al. 2017) shows a
learner how to recover from states off the expert's path without teaching it the noise.

    expert = sim.make_expert("PickCube", env, noise=0.005, seed=0)
    obs, _ = env.reset(seed=0); expert.reset()
    action = expert(obs)          # float32 [7]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.controller import rotation_error
from sim.env import HOME_TCP_MAT, TabletopEnv


@dataclass(frozen=True)
class Phase:
    """Move the tcp to `pos()` with yaw `yaw()` and hold the gripper at `gripper`.

    The phase ends when within `tol` m (and 0.05 rad) of the target for a step and at least
    `min_steps` steps have passed, or when `done()` says so; `max_steps` bounds waiting phases.
    Recovery: `abort()` or a timeout with `timeout_restart` sends the expert back to the first phase
    (re-approach with the gripper open), so demonstrations include regrasps instead of failures.
    """

    name: str
    pos: Callable[[], np.ndarray]
    gripper: float
    yaw: Callable[[], float] | None = None
    tol: float = 0.008
    min_steps: int = 0
    max_steps: int = 60
    speed: float = 1.0  # fraction of the max translation per step
    done: Callable[[], bool] | None = None
    noise_scale: float = 1.0  # contact phases (grasp, push) use less of the expert's noise
    timeout_restart: bool = False  # running out of max_steps restarts the plan (a missed grasp)
    abort: Callable[[], bool] | None = None  # when true, restart the plan (e.g. the cube slipped out)


def grasp_yaw(cube_yaw: float) -> float:
    """Gripper yaw in [-pi/4, pi/4] that lines the fingers up with a pair of cube faces."""
    return float((cube_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def carry_target(env: TabletopEnv, cube: int, goal: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """tcp target that brings the *held* cube's centre to `goal()`, whatever the grasp offset."""
    return lambda: goal() + (env.tcp_pose()[0] - env.cube_pos(cube))


def straight_up(env: TabletopEnv, height: float) -> Callable[[], np.ndarray]:
    """tcp target right above the tcp (a vertical lift that does not chase a held object)."""
    return lambda: np.append(env.tcp_pose()[0][:2], height)


def close_on(env: TabletopEnv, cube: int, pos: Callable[[], np.ndarray]) -> Phase:
    """Close the gripper until both fingers hold `cube` (4-8 steps: the finger servos are slow)."""
    # tol=0: ends on the grasp (or max_steps), never on position alone
    return Phase(
        "close",
        pos,
        1.0,
        tol=0.0,
        min_steps=4,
        max_steps=8,
        noise_scale=0.3,
        done=lambda: env.is_grasped(cube),
        timeout_restart=True,
    )


def lost(env: TabletopEnv, cube: int) -> Callable[[], bool]:
    """The held cube is no longer between the fingers (> 3 cm from the tcp)."""
    return lambda: bool(np.linalg.norm(env.cube_pos(cube) - env.tcp_pose()[0]) > 0.03)


def yaw_mat(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ HOME_TCP_MAT


class WaypointExpert:
    """Callable obs -> action with `reset()`; see the module docstring."""

    P_GAIN = 0.7  # fraction of the remaining distance commanded per step (the controller lags slightly)
    ACCEL = 0.01  # m per step^2: max change of the translation command between steps
    ROT_GAIN = 0.6
    ROT_ACCEL = 0.08  # rad per step^2
    Z_AUTHORITY = 0.01  # m per step of height correction that the speed cap never scales away

    def __init__(self, env, noise: float = 0.0, seed: int | None = None) -> None:
        if noise < 0:
            raise ValueError(f"noise={noise}: must be >= 0 (std of the translation perturbation, m)")
        self.env: TabletopEnv = env.unwrapped
        self.noise = float(noise)
        self._rng = np.random.default_rng(seed)
        cfg = self.env.config.controller
        self.max_dpos, self.max_drot = cfg.max_dpos, cfg.max_drot
        self.reset()

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def reset(self) -> None:
        self._phases: list[Phase] | None = None
        self._k = 0
        self._steps_in_phase = 0
        self._prev = np.zeros(3)
        self._prev_rot = np.zeros(3)
        self._yaw = 0.0
        self.restarts = 0
        self.clean_action: np.ndarray | None = None  # the last command before noise (a DART-style label)

    @property
    def phase(self) -> str:
        if self._phases is None:
            return "start"
        return self._phases[self._k].name if self._k < len(self._phases) else "done"

    def __call__(self, obs: dict) -> np.ndarray:
        if self._phases is None:  # built lazily: the env must be reset before the first call
            self._phases = self.phases()
        pos, mat = self.env.tcp_pose()
        # advance through finished phases (at most one per step keeps commands continuous)
        if self._k < len(self._phases):
            ph = self._phases[self._k]
            if ph.yaw is not None:
                self._yaw = ph.yaw()
            dist = float(np.linalg.norm(ph.pos() - pos))
            ang = float(np.linalg.norm(rotation_error(yaw_mat(self._yaw), mat)))
            reached = dist < ph.tol and ang < 0.05 and self._steps_in_phase >= ph.min_steps
            if ph.done is not None:
                reached = reached or (ph.done() and self._steps_in_phase >= ph.min_steps)
            timed_out = not reached and self._steps_in_phase >= ph.max_steps
            if (ph.abort is not None and ph.abort()) or (timed_out and ph.timeout_restart):
                self._k = 0
                self._steps_in_phase = 0
                self.restarts += 1
            elif reached or timed_out:
                self._k += 1
                self._steps_in_phase = 0
        ph = self._phases[min(self._k, len(self._phases) - 1)]
        if ph.yaw is not None:
            self._yaw = ph.yaw()
        self._steps_in_phase += 1
        goal = ph.pos()
        err = self.P_GAIN * (goal - pos)
        want = _clip_norm(err, self.max_dpos * ph.speed)
        # keep height corrections alive during long horizontal moves (a push that sags into the table jams)
        z_min = float(np.clip(err[2], -self.Z_AUTHORITY, self.Z_AUTHORITY))
        if abs(want[2]) < abs(z_min):
            want[2] = z_min
        dpos = self._prev + _clip_norm(want - self._prev, self.ACCEL)
        self._prev = dpos
        want_rot = _clip_norm(self.ROT_GAIN * rotation_error(yaw_mat(self._yaw), mat), self.max_drot)
        drot = self._prev_rot + _clip_norm(want_rot - self._prev_rot, self.ROT_ACCEL)
        self._prev_rot = drot
        lim = np.array([self.max_dpos] * 3 + [self.max_drot] * 3 + [1.0])
        self.clean_action = np.clip(np.concatenate([dpos, drot, [ph.gripper]]), -lim, lim).astype(np.float32)
        if self.noise > 0:
            dpos = dpos + self._rng.normal(0.0, self.noise * ph.noise_scale, 3)
        action = np.concatenate([dpos, drot, [ph.gripper]])
        return np.clip(action, -lim, lim).astype(np.float32)


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v * (limit / n) if n > limit else v


__all__ = [
    "Phase",
    "WaypointExpert",
    "carry_target",
    "close_on",
    "grasp_yaw",
    "lost",
    "straight_up",
    "yaw_mat",
]
