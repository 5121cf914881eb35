"""The `Robot` interface the bridge serves, and its implementations.

    robot = SimRobot("PickCube", image_size=224)     # any sim task (sim.make)
    robot = RealArmRobot(MyVendorDriver(...), instruction="pick up the red cube", control_hz=10)
    robot = KinematicRobot()                          # numpy point-mass tcp, synthetic images (tests, benches)

    obs = robot.reset(seed=0); obs = robot.apply_action(a); obs = robot.hold(); obs = robot.observe()

Conventions (DESIGN.md): action float [7] = `[dx, dy, dz, drx, dry, drz, gripper]`, metres and
axis-angle radians in the robot base frame, gripper in [-1, 1] (-1 open, +1 closed); one call to
`apply_action` / `hold` covers one control period. Observation: uint8 HxWx3 images (row 0 at the
top), float32 state [8] = tcp xyz (m, base frame), tcp quaternion wxyz, gripper opening (m).

`SimExpertPolicy` runs a sim task's scripted expert on the *control* side of a bridge: the expert
needs privileged scene state, so it keeps a local mirror env that it resets with the episode seed
the bridge reports and syncs to the bridge's MuJoCo state (`sim_state` array) on every observation.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATE_NAMES = ("ee_x", "ee_y", "ee_z", "ee_qw", "ee_qx", "ee_qy", "ee_qz", "gripper_opening")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")


@dataclass
class Observation:
    images: dict[str, np.ndarray]  # camera name -> uint8 [H, W, 3]
    state: np.ndarray  # float32 [8]
    instruction: str
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    seed: int | None = None  # episode seed, when the robot has one (sim)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # privileged arrays, sent on request only

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def freeze(self) -> Observation:
        """Make every array an immutable private copy: the bridge sends them zero-copy later."""
        def own(a: np.ndarray) -> np.ndarray:
            a = np.array(a, copy=True, order="C")
            a.flags.writeable = False
            return a

        self.images = {k: own(v) for k, v in self.images.items()}
        self.state = own(np.asarray(self.state, dtype=np.float32))
        self.extras = {k: own(v) for k, v in self.extras.items()}
        return self


class Robot(abc.ABC):
    """What the bridge drives. Implementations are used from one thread (the bridge's)."""

    control_hz: float = 10.0
    state_names: tuple[str, ...] = STATE_NAMES
    action_names: tuple[str, ...] = ACTION_NAMES

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Observation:
        """Start an episode (sim: new layout; real arm: move home). Blocking."""

    @abc.abstractmethod
    def observe(self) -> Observation:
        """The latest observation; cheap (no physics step)."""

    @abc.abstractmethod
    def apply_action(self, action: np.ndarray) -> Observation:
        """Execute one safety-checked action (float64 [7]) for one control period; the next observation."""

    @abc.abstractmethod
    def hold(self) -> Observation:
        """Hold the tcp pose and the last gripper command for one control period."""

    def ee_position(self) -> np.ndarray:
        """tcp xyz (m, base frame) for the workspace box."""
        return np.asarray(self.observe().state[:3], dtype=np.float64)

    def info(self) -> dict[str, Any]:
        """JSON/msgpack-able description sent in the hello reply."""
        return {"robot": type(self).__name__, "control_hz": self.control_hz,
                "state_names": list(self.state_names), "action_names": list(self.action_names)}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


# ------------------------------------------------------------------------- real arm


class EEDeltaDriver(abc.ABC):
    """Adapter contract for a real arm's end-effector-delta driver (implement it for your arm).

    Frames and units: the robot *base* frame (x forward, y left, z up), metres and radians; the tcp
    is the point between the fingertips. Orientation quaternions are wxyz (MuJoCo / DESIGN.md order).
    Timing: `send_ee_delta` must return immediately (< 1 ms) and have the arm's own servo loop move
    the tcp by the delta over the next control period (1 / control_hz s); it is called at most once
    per period, and `hold` is called whenever the bridge has no valid action for a period, so the arm
    must stop at the current pose (zero velocity) when told, not coast. Thread-safety: the bridge
    calls these from one thread only.
    """

    @abc.abstractmethod
    def read_state(self) -> np.ndarray:
        """float32 [8]: tcp xyz (m), tcp quaternion wxyz, gripper finger opening (m)."""

    @abc.abstractmethod
    def read_images(self) -> dict[str, np.ndarray]:
        """Latest camera frames: name -> uint8 [H, W, 3] RGB, row 0 at the top (e.g. "agentview", "wrist")."""

    @abc.abstractmethod
    def send_ee_delta(self, delta: np.ndarray, gripper: float) -> None:
        """Command a tcp displacement `delta` float64 [6] = (dx, dy, dz, drx, dry, drz), metres and an
        axis-angle rotation (radians) about base-frame axes applied on the left (R' = exp(dr) R), to be
        reached over one control period; `gripper` in [-1, 1], -1 fully open, +1 closed (force-limited)."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Stop at the current tcp pose and keep the current gripper command."""

    @abc.abstractmethod
    def home(self) -> None:
        """Move (blocking, slowly) to the start pose of an episode."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection to the arm (brakes on if the vendor supports it)."""


class RealArmRobot(Robot):
    """`Robot` over an `EEDeltaDriver`; the instruction comes from the operator (CLI/teleop)."""

    def __init__(self, driver: EEDeltaDriver, instruction: str, control_hz: float = 10.0) -> None:
        if not instruction:
            raise ValueError("RealArmRobot needs a non-empty instruction (it is recorded with every frame)")
        self.driver = driver
        self.instruction = instruction
        self.control_hz = float(control_hz)

    def _obs(self) -> Observation:
        return Observation(self.driver.read_images(), self.driver.read_state(), self.instruction).freeze()

    def reset(self, seed: int | None = None) -> Observation:
        self.driver.home()
        return self._obs()

    def observe(self) -> Observation:
        return self._obs()

    def apply_action(self, action: np.ndarray) -> Observation:
        self.driver.send_ee_delta(np.asarray(action[:6], dtype=np.float64), float(action[6]))
        return self._obs()

    def hold(self) -> Observation:
        self.driver.hold()
        return self._obs()

    def close(self) -> None:
        self.driver.close()


# ------------------------------------------------------------------------- kinematic stand-in


class KinematicRobot(Robot):
    """Not a simulator: a tcp point that moves exactly by each (clamped) delta, with synthetic
    constant camera images. For transport benchmarks and protocol/bridge tests that must not pay
    for physics or rendering. Task: bring the tcp within `tol` m of a random goal (`extras["goal"]`)."""

    def __init__(self, image_size: int = 224, cameras: tuple[str, ...] = ("agentview", "wrist"),
                 horizon: int = 100, tol: float = 0.01, control_hz: float = 10.0) -> None:
        self.image_size, self.cameras, self.horizon, self.tol = image_size, cameras, horizon, tol
        self.control_hz = float(control_hz)
        self._obs: Observation | None = None
        self.reset(seed=0)

    def reset(self, seed: int | None = None) -> Observation:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.pos = np.array([0.45, 0.0, 0.3])
        self.goal = self.pos + rng.uniform(-0.1, 0.1, 3)
        self.gripper = -1.0
        self.t = 0
        s = self.image_size
        self._images = {c: rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for c in self.cameras}
        for img in self._images.values():
            img.flags.writeable = False
        return self._make_obs()

    def _make_obs(self) -> Observation:
        state = np.zeros(8, dtype=np.float32)
        state[:3] = self.pos
        state[3] = 1.0  # identity orientation, wxyz
        state[7] = 0.08 if self.gripper < 0 else 0.0
        success = bool(np.linalg.norm(self.pos - self.goal) < self.tol)
        self._obs = Observation(
            dict(self._images), state, "move to the goal", success=success, terminated=success,
            truncated=self.t >= self.horizon and not success, seed=self.seed,
            extras={"goal": self.goal.astype(np.float32)},
        )
        self._obs.state.flags.writeable = False
        return self._obs

    def observe(self) -> Observation:
        return self._obs

    def apply_action(self, action: np.ndarray) -> Observation:
        self.pos = self.pos + np.asarray(action[:3], dtype=np.float64)
        self.gripper = float(action[6])
        self.t += 1
        return self._make_obs()

    def hold(self) -> Observation:
        self.t += 1
        return self._make_obs()


def goal_expert(obs: dict) -> np.ndarray:
    """KinematicRobot's expert: a proportional step to the goal, as a [1, 7] chunk."""
    a = np.zeros((1, 7), dtype=np.float32)
    a[0, :3] = np.clip(obs["goal"] - obs["state"][:3], -0.03, 0.03)
    a[0, 6] = -1.0
    return a


# ------------------------------------------------------------------------- sim


def _physics_state(env) -> np.ndarray:
    import mujoco

    u = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    out = np.empty(mujoco.mj_stateSize(u.model, spec), dtype=np.float64)
    mujoco.mj_getState(u.model, u.data, out, spec)
    return out


class SimRobot(Robot):
    """A `sim` task as a robot: `apply_action` is one env step, `hold` a step with a zero delta and
    the last gripper command. Episodes end at the task's horizon (or on success when the task
    terminates); the bridge stops stepping until the next reset.

    The env is built on first use, in the thread that uses it: an EGL rendering context is bound to
    the thread that made it current, so a robot constructed in one thread and served from another
    must not have rendered yet."""

    def __init__(self, task: str, seed: int | None = None, **overrides: Any) -> None:
        import sim

        self.task = task
        self.overrides = dict(overrides)
        self.control_hz = float(sim.make_config(task, **overrides).control_hz)  # validates name + overrides
        self._seeds = np.random.default_rng(seed)
        self._env = None
        self._obs: Observation | None = None
        self._gripper = -1.0
        self.seed: int | None = None

    @property
    def env(self):
        if self._env is None:
            import sim

            self._env = sim.make(self.task, **self.overrides)
        return self._env

    def _wrap(self, obs: dict, info: dict, terminated: bool, truncated: bool) -> Observation:
        images = {k: v for k, v in obs.items() if isinstance(v, np.ndarray) and v.ndim == 3}
        self._obs = Observation(
            images, obs["state"], obs["instruction"], success=bool(info.get("success", False)),
            terminated=bool(terminated), truncated=bool(truncated), seed=self.seed,
            extras={"sim_state": _physics_state(self.env)},
        ).freeze()
        return self._obs

    def reset(self, seed: int | None = None) -> Observation:
        self.seed = int(self._seeds.integers(2**31)) if seed is None else int(seed)
        obs, info = self.env.reset(seed=self.seed)
        self._gripper = -1.0
        return self._wrap(obs, info, False, False)

    def observe(self) -> Observation:
        return self._obs if self._obs is not None else self.reset()

    def apply_action(self, action: np.ndarray) -> Observation:
        self._gripper = float(action[6])
        obs, _, term, trunc, info = self.env.step(np.asarray(action, dtype=np.float32))
        return self._wrap(obs, info, term, trunc)

    def hold(self) -> Observation:
        a = np.zeros(7, dtype=np.float32)
        a[6] = self._gripper
        obs, _, term, trunc, info = self.env.step(a)
        return self._wrap(obs, info, term, trunc)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "task": self.task, "overrides": self.overrides}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()


class SimExpertPolicy:
    """A sim task's scripted expert, usable across a bridge (module docstring). Callable obs -> [1, 7]."""

    def __init__(self, task: str, **overrides: Any) -> None:
        import sim

        self.task = task
        self.overrides = dict(overrides)
        sim.make_config(task, **overrides)  # fail now on a bad name/override, build the env on first use
        self.env = self.expert = None
        self._seed: int | None = None

    def prepare(self) -> None:
        """Build the mirror env now (seconds) instead of inside the first control tick; call it from
        the thread that will call the policy (the env's GL context binds to it)."""
        if self.env is None:
            import sim

            self.env = sim.make(self.task, **self.overrides)
            self.expert = sim.make_expert(self.task, self.env)
            self.env.reset(seed=0)  # first render creates the GL context

    def reset(self) -> None:
        self._seed = None

    def __call__(self, obs: dict) -> np.ndarray:
        import mujoco

        if "sim_state" not in obs or obs.get("episode_seed") is None:
            raise ValueError("SimExpertPolicy needs obs['sim_state'] and obs['episode_seed'] (a SimRobot bridge, "
                             "observed with privileged=True)")
        seed = int(obs["episode_seed"])
        self.prepare()
        if seed != self._seed:  # a new episode: same seed => same layout, colours, target
            self.env.reset(seed=seed)
            self.expert.reset()
            self._seed = seed
        u = self.env.unwrapped
        mujoco.mj_setState(u.model, u.data, np.asarray(obs["sim_state"], dtype=np.float64),
                           mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(u.model, u.data)
        return np.asarray(self.expert(obs), dtype=np.float32)[None]  # [1, 7]
