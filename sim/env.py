"""`TabletopEnv`: the gymnasium env every task subclasses (Panda + table + coloured cubes + flat pads).

A task file (sim/tasks/*.py) provides `default_config()`, a subclass that implements
`_sample_layout(rng)` (object poses, which object is the target), `_slots()` (words for the
instruction templates) and `_success()`, plus its scripted expert. Observation/action conventions
(shared with the dataset format and the deploy bridge):

    action  float32 [7] = [dx, dy, dz, drx, dry, drz, gripper]  m / axis-angle rad, base frame; gripper -1 open, +1 closed
    obs     {"agentview": uint8 [H, W, 3], "wrist": uint8 [H, W, 3] (row 0 = top),
             "state": float32 [8] = tcp xyz (m), tcp quaternion wxyz, finger opening (m),
             "instruction": str}
    info    {"success": bool}; reward = 1.0 on success steps; terminated on success (configurable),
            truncated at the horizon.

Tasks with `TARGET_CHOICE` (ReachCube, PickCube) take `reset(seed=s, options={"target": k})`: the same
scene as `reset(seed=s)` (layout, colours, template) with cube k named as the target instead of cube 0. All
their cubes lie in the split's cells, so every choice of k is a valid scene of the split. Recording each
scene once per cube (`vla sim demos --every-target`) gives contrastive demos: identical first images,
different instructions and actions, which a policy can only fit by reading the instruction.

Same seed => same episode, bit-identical observations (MuJoCo is deterministic on one machine and
the layout comes only from `self.np_random`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from sim.controller import ControllerConfig, EEDeltaController
from sim.scene import CUBE_HALF, FINGER_BODIES, FINGER_OPEN, SceneSpec, body_geom_ids, build_model

STATE_NAMES = ("ee_x", "ee_y", "ee_z", "ee_qw", "ee_qx", "ee_qy", "ee_qz", "gripper_opening")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
# privileged task state recorded with demos (`observation.environment_state`): the instructed cube's centre
# and the goal point (pad / zone centre, base cube centre; the cube itself for Reach and Pick), base frame
TASK_STATE_NAMES = ("target_x", "target_y", "target_z", "goal_x", "goal_y", "goal_z")
# Arm posture with the tcp at (0.45, 0, 0.30), fingers pointing down and opening along base y
# (solved once with the DLS IK of sim.controller; joint 7 mid-range leaves +-yaw freedom).
HOME_QPOS = np.array([0.0, -0.2876, 0.0, -2.3924, 0.0, 0.5348, 0.0])
HOME_TCP_MAT = np.diag([1.0, -1.0, -1.0])  # tcp frame at home: x forward, y = -base y (finger axis), z down
# Distinct colours (names used in instructions); a scene never repeats one.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.12, 0.3, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.55, 0.2, 0.75),
    "orange": (1.0, 0.5, 0.05),
}
# Object placement region on the table (base frame, m) and the held-out position split: a 4x4 grid of
# cells coloured like a checkerboard; the manipulated object lies in even cells for "train" and odd
# cells for "heldout" (interpolation between seen positions, not extrapolation off the table).
REGION_LOW = np.array([0.36, -0.2])
REGION_HIGH = np.array([0.62, 0.2])
GRID = 4
# bounds of the state vector: positions (m) stay well inside +-2 m, a unit quaternion in [-1, 1],
# finger opening in [-0.01, 0.1] m (0..0.08 up to contact penetration)
STATE_LOW = np.array([-2.0, -2.0, -2.0, -1.0, -1.0, -1.0, -1.0, -0.01], dtype=np.float32)
STATE_HIGH = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.1], dtype=np.float32)
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'?!-"
SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class TaskConfig:
    horizon: int = 100  # policy steps before truncation
    control_hz: float = 10.0  # policy rate
    physics_dt: float = 0.002  # s per MuJoCo step (the controller runs at this rate)
    image_size: int = 128  # square camera images
    split: str = "train"  # "train" | "heldout": instruction paraphrases and target positions
    # one half of the split on its own (None: `split`): which checkerboard cells the cubes lie in, and which
    # instruction templates are drawn; e.g. held-out positions with the training phrasings
    position_split: str | None = None
    instruction_split: str | None = None
    n_cubes: int = 3  # target(s) + distractors
    shadows: bool = False  # ~4x slower on CPU Mesa when on
    reflections: bool = False
    robot_meshes: str = "collision"  # "collision" (fast low-poly arm) | "visual" (detailed meshes)
    terminate_on_success: bool = True
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon={self.horizon}: must be >= 1 step")
        if not 0 < self.control_hz <= 100:
            raise ValueError(f"control_hz={self.control_hz}: must be in (0, 100]")
        if not 0 < self.physics_dt <= 0.01:
            raise ValueError(f"physics_dt={self.physics_dt}: must be in (0, 0.01] s")
        ratio = 1.0 / (self.control_hz * self.physics_dt)
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"control_hz={self.control_hz}, physics_dt={self.physics_dt}: 1/(control_hz*physics_dt)={ratio:.4g} "
                "must be a positive integer (whole physics steps per policy step)"
            )
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size={self.image_size}: must be in [16, 1024] pixels")
        for name in ("split", "position_split", "instruction_split"):
            v = getattr(self, name)
            if v is not None and v not in SPLITS or name == "split" and v is None:
                raise ValueError(f"{name}={v!r}: must be one of {SPLITS}")
        if self.robot_meshes not in ("collision", "visual"):
            raise ValueError(f"robot_meshes={self.robot_meshes!r}: must be 'collision' or 'visual'")
        if not 1 <= self.n_cubes <= len(PALETTE):
            raise ValueError(f"n_cubes={self.n_cubes}: must be in [1, {len(PALETTE)}]")

    @property
    def positions_from(self) -> str:
        return self.position_split or self.split

    @property
    def instructions_from(self) -> str:
        return self.instruction_split or self.split

    @property
    def n_substeps(self) -> int:
        return round(1.0 / (self.control_hz * self.physics_dt))


def _use_egl_if_unchosen() -> None:
    """Honour the MUJOCO_GL=egl that `import sim` sets even when mujoco was imported first.

    mujoco picks its GL backend at import time; if it was imported before `sim` with MUJOCO_GL unset,
    it chose GLFW, which needs a display. When the user never chose a backend (empty at mujoco's
    import) and the variable now says egl, swap the EGL context class in, as MUJOCO_GL=egl would have.
    """
    import os

    from mujoco.rendering.classic import gl_context

    chosen_at_import = getattr(gl_context, "_MUJOCO_GL", None)
    if chosen_at_import == "" and os.environ.get("MUJOCO_GL", "").lower() == "egl":
        from mujoco.egl import GLContext

        gl_context.GLContext = GLContext


class TabletopEnv(gym.Env):
    """Base class; see the module docstring. Subclasses set the class attributes below."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    TRAIN_TEMPLATES: ClassVar[tuple[str, ...]] = ()
    HELDOUT_TEMPLATES: ClassVar[tuple[str, ...]] = ()
    N_PADS: ClassVar[int] = 0
    PAD_SHAPE: ClassVar[str] = "square"
    PAD_SIZE: ClassVar[float] = 0.05
    MIN_TARGET_CUBES: ClassVar[int] = 1  # cubes the task needs besides distractors
    TARGET_CHOICE: ClassVar[bool] = False  # reset(options={"target": k}) names cube k (see module doc)

    def __init__(self, config: TaskConfig, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: only 'rgb_array' (or None) is supported")
        if config.n_cubes < self.MIN_TARGET_CUBES:
            raise ValueError(
                f"n_cubes={config.n_cubes}: {type(self).__name__} needs >= {self.MIN_TARGET_CUBES}"
            )
        if config.n_cubes + self.N_PADS > len(PALETTE):
            raise ValueError(f"n_cubes={config.n_cubes} + {self.N_PADS} pads exceeds {len(PALETTE)} colours")
        self.config = config
        self.render_mode = render_mode
        self.control_hz = config.control_hz
        self.metadata = {**type(self).metadata, "render_fps": config.control_hz}
        self.model = build_model(
            SceneSpec(
                n_cubes=config.n_cubes,
                n_pads=self.N_PADS,
                pad_shape=self.PAD_SHAPE,
                pad_size=self.PAD_SIZE,
                physics_dt=config.physics_dt,
                offscreen_size=config.image_size,
                robot_meshes=config.robot_meshes,
            )
        )
        self.data = mujoco.MjData(self.model)
        self.controller = EEDeltaController(self.model, config.controller, HOME_QPOS)
        m = self.model
        self._cube_qadr = [m.jnt_qposadr[m.body(f"cube{i}").jntadr[0]] for i in range(config.n_cubes)]
        self._cube_geoms = [body_geom_ids(m, f"cube{i}") for i in range(config.n_cubes)]
        self._pad_mocap = [m.body(f"pad{i}").mocapid[0] for i in range(self.N_PADS)]
        # geom id -> bit code for fast contact queries: left finger 1, right finger 2, cube i 4 << i
        # (distinct bits, so the sum of a contact's two codes names the pair)
        self._geom_owner = np.zeros(m.ngeom, dtype=np.int64)
        for k, b in enumerate(FINGER_BODIES):
            self._geom_owner[body_geom_ids(m, b)] = k + 1
        self._cube_code = [4 << i for i in range(config.n_cubes)]
        for i, geoms in enumerate(self._cube_geoms):
            self._geom_owner[geoms] = self._cube_code[i]
        self._table_geom = m.geom("table").id
        self._renderer: mujoco.Renderer | None = None
        size = config.image_size
        img = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "agentview": img,
                "wrist": img,
                "state": gym.spaces.Box(STATE_LOW, STATE_HIGH, (8,), np.float32),
                "instruction": gym.spaces.Text(max_length=256, charset=INSTRUCTION_CHARSET),
            }
        )
        c = config.controller
        high = np.array([c.max_dpos] * 3 + [c.max_drot] * 3 + [1.0], dtype=np.float32)
        self.action_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.colours: dict[str, str] = {}  # object name ("cube0", "pad1") -> colour name, set per episode
        self._target_option: int | None = None  # reset(options={"target": k}), TARGET_CHOICE tasks only
        self.instruction = ""
        self._t = 0

    # ------------------------------------------------------------------ task hooks
    def _sample_layout(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _slots(self) -> dict[str, str]:
        raise NotImplementedError

    def _success(self) -> bool:
        raise NotImplementedError

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._target_option = self._parse_target_option(options)
        rng = self.np_random
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:7] = HOME_QPOS
        d.qpos[7:9] = FINGER_OPEN
        d.ctrl[:7] = HOME_QPOS
        d.ctrl[7:9] = FINGER_OPEN
        names = list(PALETTE)
        order = rng.permutation(len(names))
        objects = [f"cube{i}" for i in range(self.config.n_cubes)] + [f"pad{i}" for i in range(self.N_PADS)]
        self.colours = {}
        for obj, k in zip(objects, order[: len(objects)], strict=True):
            self.colours[obj] = names[k]
            m.geom(f"{obj}_geom").rgba[:3] = PALETTE[names[k]]
        self._sample_layout(rng)
        templates = self.TRAIN_TEMPLATES if self.config.instructions_from == "train" else self.HELDOUT_TEMPLATES
        self.instruction = templates[int(rng.integers(len(templates)))].format(**self._slots())
        mujoco.mj_forward(m, d)
        self.controller.hold(d)
        self._t = 0
        return self._obs(), {"success": bool(self._success())}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (7,):
            raise ValueError(f"action shape {a.shape}: expected (7,) = {ACTION_NAMES}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action {a.tolist()} has NaN/inf")
        m, d = self.model, self.data
        self.controller.set_action(d, a)
        for _ in range(self.config.n_substeps):
            self.controller.apply(d)
            mujoco.mj_step(m, d)
        self._t += 1
        success = bool(self._success())
        terminated = success and self.config.terminate_on_success
        truncated = self._t >= self.config.horizon and not terminated
        return self._obs(), float(success), terminated, truncated, {"success": success}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._render("agentview")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ observations
    def _render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            size = self.config.image_size
            _use_egl_if_unchosen()
            try:
                self._renderer = mujoco.Renderer(self.model, size, size)
            except Exception as e:  # the GL backend is fixed when mujoco is first imported
                raise RuntimeError(
                    "could not create an offscreen renderer; `import sim` before `mujoco` (it sets "
                    "MUJOCO_GL=egl) or export MUJOCO_GL=egl / osmesa"
                ) from e
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.config.shadows
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.config.reflections
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def state(self) -> np.ndarray:
        pos, mat = self.controller.tcp_pose(self.data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, mat.reshape(-1))  # wxyz
        if quat[0] < 0:  # canonical hemisphere so the 4 numbers are a function of the pose
            quat = -quat
        opening = self.data.qpos[7] + self.data.qpos[8]
        return np.concatenate([pos, quat, [opening]]).astype(np.float32)

    def _obs(self) -> dict[str, Any]:
        return {
            "agentview": self._render("agentview"),
            "wrist": self._render("wrist"),
            "state": self.state(),
            "instruction": self.instruction,
        }

    # ------------------------------------------------------------------ privileged state (experts, success)
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.controller.tcp_pose(self.data)

    def cube_pos(self, i: int) -> np.ndarray:
        return self.data.qpos[self._cube_qadr[i] : self._cube_qadr[i] + 3].copy()

    def cube_yaw(self, i: int) -> float:
        w, x, y, z = self.data.qpos[self._cube_qadr[i] + 3 : self._cube_qadr[i] + 7]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def pad_pos(self, i: int) -> np.ndarray:
        return self.data.mocap_pos[self._pad_mocap[i]].copy()

    def goal_pos(self) -> np.ndarray:
        """Where the instructed cube should end up (tasks with a pad or base cube override this)."""
        return self.cube_pos(self.target)

    def task_state(self) -> np.ndarray:
        """float32 [6] = TASK_STATE_NAMES: privileged, never in the policy's observation. Demos record it so
        training can add an auxiliary "where is the instructed cube" loss (it grounds the colour word)."""
        return np.concatenate([self.cube_pos(self.target), self.goal_pos()]).astype(np.float32)

    def _set_cube(self, i: int, xy: np.ndarray, yaw: float) -> None:
        a = self._cube_qadr[i]
        self.data.qpos[a : a + 3] = [xy[0], xy[1], CUBE_HALF]
        self.data.qpos[a + 3 : a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    def _set_pad(self, i: int, xy: np.ndarray) -> None:
        self.data.mocap_pos[self._pad_mocap[i]] = [xy[0], xy[1], 0.001]

    def _finger_contacts(self, i: int) -> tuple[bool, bool]:
        """(left finger touches cube i, right finger touches cube i) in the current contacts."""
        n = self.data.ncon
        if n == 0:
            return False, False
        owner = self._geom_owner[self.data.contact.geom[:n]]  # [ncon, 2] bit codes (0 = anything else)
        pair = owner[:, 0] + owner[:, 1]  # distinct bits: the sum names the pair
        cube = self._cube_code[i]
        return bool(np.any(pair == 1 + cube)), bool(np.any(pair == 2 + cube))

    def is_grasped(self, i: int) -> bool:
        """Both fingers touch cube i."""
        return all(self._finger_contacts(i))

    def finger_touches(self, i: int) -> bool:
        return any(self._finger_contacts(i))

    def resting_on_table(self, i: int, tol: float = 0.005) -> bool:
        return bool(self.cube_pos(i)[2] < CUBE_HALF + tol)

    # ------------------------------------------------------------------ layout sampling
    def _parse_target_option(self, options: dict | None) -> int | None:
        unknown = sorted(set(options or {}) - {"target"})
        if unknown:
            raise ValueError(f"reset options {unknown}: the only option is 'target'")
        k = (options or {}).get("target")
        if k is None:
            return None
        name = type(self).__name__
        if not self.TARGET_CHOICE:
            raise ValueError(f"options['target']: {name} does not take a target choice (its target is fixed)")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.config.n_cubes:
            raise ValueError(f"options['target']={k!r}: must be a cube index in [0, {self.config.n_cubes})")
        return int(k)

    def _chosen_target(self) -> int:
        """The cube the instruction names: options['target'] of this reset, else cube 0."""
        return 0 if self._target_option is None else self._target_option

    def _cells_xy(self, rng: np.random.Generator, n: int, min_dist: float) -> list[np.ndarray]:
        """n points, each uniform in a random cell of the split's checkerboard colour, min_dist apart."""
        taken: list[np.ndarray] = []
        for _ in range(n):
            taken.append(self._free_xy(rng, taken, min_dist, in_cells=True))
        return taken

    def _cell_xy(self, rng: np.random.Generator) -> np.ndarray:
        """A uniform point in a random grid cell of the split's checkerboard colour."""
        parity = 0 if self.config.positions_from == "train" else 1
        cells = [(i, j) for i in range(GRID) for j in range(GRID) if (i + j) % 2 == parity]
        i, j = cells[int(rng.integers(len(cells)))]
        size = (REGION_HIGH - REGION_LOW) / GRID
        return REGION_LOW + size * (np.array([i, j]) + rng.uniform(0.0, 1.0, 2))

    def _free_xy(
        self,
        rng: np.random.Generator,
        taken: list[np.ndarray],
        min_dist: float,
        low: np.ndarray = REGION_LOW,
        high: np.ndarray = REGION_HIGH,
        in_cells: bool = False,
    ) -> np.ndarray:
        """Rejection-sample a point at least min_dist from every point in `taken`: uniform in low..high, or
        with in_cells uniform in the split's checkerboard cells (`_cell_xy`)."""
        for _ in range(1000):
            xy = self._cell_xy(rng) if in_cells else rng.uniform(low, high)
            if all(np.linalg.norm(xy - t) >= min_dist for t in taken):
                return xy
        where = f"the {self.config.positions_from} cells" if in_cells else f"{low}..{high}"
        raise RuntimeError(f"could not place an object {min_dist} m from {len(taken)} others in {where}")
