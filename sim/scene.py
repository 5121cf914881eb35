"""Scene assembly: the Franka Panda of the installed gymnasium-robotics wheel on a table with objects.

The Panda MJCF and meshes are located through the installed package at run time (never copied into
this repository, never downloaded) and included by absolute path into `sim/assets/scene.xml`.
`build_model(SceneSpec(...))` returns a compiled `mujoco.MjModel` with, beyond the wheel's robot:

- gravity compensation on every robot body (the wheel's joint position servos alone sag under gravity),
- robot self-collision off (arm links still collide with the table and objects),
- a `tcp` site between the finger pads (the end-effector point of the action/state convention) whose
  frame has z pointing out of the hand (down at the home pose) and y along the finger opening,
- a `wrist` camera on the hand looking along the fingers,
- `n_cubes` free cubes `cube{i}` and `n_pads` mocap markers `pad{i}` (flat squares or discs, visual only).

    from sim.scene import SceneSpec, build_model
    model = build_model(SceneSpec(n_cubes=3, n_pads=1, pad_shape="square"))
"""

from __future__ import annotations

import functools
import importlib.util
import string
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

_TEMPLATE = Path(__file__).parent / "assets" / "scene.xml"
_FRANKA_SUBDIR = ("envs", "assets", "kitchen_franka", "franka_assets")

# Joint order of the wheel's chain.xml; the arm occupies qpos[0:7], the two fingers qpos[7:9].
ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
FINGER_BODIES = ("panda0_leftfinger", "panda0_rightfinger")
FINGER_OPEN = 0.04  # m, per finger (slide joint range [0, 0.04]); opening = sum of both
TCP_OFFSET = 0.235  # m from link7 along its z: between the finger pads, ~2.5 cm above the fingertips
CUBE_HALF = 0.02  # m: 4 cm cubes fit the 8 cm Panda opening with margin
CUBE_MASS = 0.05  # kg


def franka_assets_dir() -> Path:
    """Directory of the Panda MJCF inside the installed gymnasium-robotics wheel.

    Found with importlib's spec, without importing gymnasium_robotics (its import prints warnings and
    registers environments we do not use).
    """
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "gymnasium-robotics is not installed: the Franka Panda model comes from its wheel "
            "(pip install gymnasium-robotics)"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc).joinpath(*_FRANKA_SUBDIR)
        if (path / "chain.xml").is_file():
            return path
    raise FileNotFoundError(
        f"no kitchen_franka/franka_assets/chain.xml under {list(spec.submodule_search_locations)}: "
        "unexpected gymnasium-robotics layout"
    )


@dataclass(frozen=True)
class SceneSpec:
    """What goes on the table. Colours and positions are set per episode on the compiled model."""

    n_cubes: int = 3
    n_pads: int = 0
    pad_shape: str = "square"  # "square" (a plate to put things on) | "disc" (an area to push to)
    pad_size: float = 0.05  # m: half side (square) or radius (disc)
    physics_dt: float = 0.002
    offscreen_size: int = 256  # largest render size the offscreen buffer must hold
    # "collision": draw the arm with the wheel's low-poly collision hulls (~2.5k triangles, ~5x faster
    # offscreen rendering on CPU Mesa); "visual": the 136k-triangle visual meshes (README renders).
    robot_meshes: str = "collision"

    def __post_init__(self) -> None:
        if not 1 <= self.n_cubes <= 6:
            raise ValueError(f"n_cubes={self.n_cubes}: must be in [1, 6] (the colour palette size)")
        if not 0 <= self.n_pads <= 3:
            raise ValueError(f"n_pads={self.n_pads}: must be in [0, 3]")
        if self.pad_shape not in ("square", "disc"):
            raise ValueError(f"pad_shape={self.pad_shape!r}: must be 'square' or 'disc'")
        if not 0.0 < self.physics_dt <= 0.01:
            raise ValueError(f"physics_dt={self.physics_dt}: must be in (0, 0.01] s for stable contacts")
        if self.robot_meshes not in ("collision", "visual"):
            raise ValueError(f"robot_meshes={self.robot_meshes!r}: must be 'collision' or 'visual'")
        if self.offscreen_size < 16:
            raise ValueError(f"offscreen_size={self.offscreen_size}: must be >= 16 pixels")


def _objects_xml(spec: SceneSpec) -> str:
    parts = []
    for i in range(spec.n_cubes):
        # placed out of view; reset() moves them. Grey until reset() colours them.
        parts.append(
            f'    <body name="cube{i}" pos="{1.5 + 0.1 * i} 0 {CUBE_HALF}">\n'
            f'      <freejoint name="cube{i}_joint"/>\n'
            f'      <geom name="cube{i}_geom" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" '
            f'mass="{CUBE_MASS}" rgba=".5 .5 .5 1" friction="1.0 0.005 0.0001" condim="4"/>\n'
            f"    </body>"
        )
    for i in range(spec.n_pads):
        if spec.pad_shape == "square":
            geom = f'type="box" size="{spec.pad_size} {spec.pad_size} 0.001"'
        else:
            geom = f'type="cylinder" size="{spec.pad_size} 0.001"'
        # 1 mm above the table to avoid z-fighting; visual only so cubes rest on the table itself
        parts.append(
            f'    <body name="pad{i}" mocap="true" pos="{1.5 + 0.1 * i} 0.5 0.001">\n'
            f'      <geom name="pad{i}_geom" {geom} rgba=".5 .5 .5 1" contype="0" conaffinity="0"/>\n'
            f"    </body>"
        )
    return "\n".join(parts)


@functools.lru_cache(maxsize=16)
def build_model(spec: SceneSpec) -> mujoco.MjModel:
    """Compile the scene. Cached per spec: callers get a copy they may modify (colours, body_pos)."""
    return _compile(spec).__copy__()


def _compile(spec: SceneSpec) -> mujoco.MjModel:
    franka = franka_assets_dir()
    size = max(spec.offscreen_size, 640)
    xml = string.Template(_TEMPLATE.read_text()).substitute(
        franka_dir=str(franka),
        objects=_objects_xml(spec),
        physics_dt=repr(float(spec.physics_dt)),
        offwidth=size,
        offheight=size,
    )
    mjs = mujoco.MjSpec.from_string(xml)
    for body in mjs.bodies:
        if body.name.startswith("panda0_"):
            body.gravcomp = 1.0
    for geom in mjs.geoms:
        # Arm collision meshes (class panda_col: contype=conaffinity=1) would also collide with each other
        # and with the table under link0. conaffinity=0 keeps arm-vs-object/table contacts (objects and
        # the table have conaffinity=1) and drops robot self-contacts; link0 collides with nothing.
        body_name = geom.parent.name if geom.parent is not None else ""
        if body_name.startswith("panda0_") and geom.contype == 1:
            geom.conaffinity = 0
            if body_name == "panda0_link0":
                geom.contype = 0
    if spec.robot_meshes == "collision":
        for geom in mjs.geoms:
            parent = geom.parent.name if geom.parent is not None else ""
            if not parent.startswith("panda0_") or geom.type != mujoco.mjtGeom.mjGEOM_MESH:
                continue
            if geom.meshname.endswith("_viz") and geom.meshname != "finger_viz":
                geom.group = 5  # hidden (default visible groups are 0-2)
            elif geom.meshname.endswith("_col") and geom.meshname != "finger_col":
                geom.group = 0
                geom.rgba = [0.95, 0.97, 0.92, 1.0]  # the wheel's visual colour
    for site in mjs.sites:
        site.group = 5  # the wheel's end_effector site is a visible sphere between the fingers
    link7 = mjs.body("panda0_link7")
    # same orientation as the wheel's end_effector site: y along the finger slide axis
    link7.add_site(
        name="tcp",
        pos=[0, 0, TCP_OFFSET],
        euler=[0, 0, -0.785398],
        size=[0.005, 0, 0],
        rgba=[1, 0, 0, 1],
        group=5,
    )
    # wrist camera on the hand, looking along the fingers (tcp z); image up = away from the fingers' palm
    link7.add_camera(name="wrist", pos=[0.055, -0.055, 0.09], fovy=70.0, quat=_wrist_camera_quat())
    return mjs.compile()


def _wrist_camera_quat() -> list[float]:
    """Camera frame in link7 coordinates: looks along +z of link7 (toward the fingers), tilted in."""
    # camera -z (view direction) = link7 +z tilted toward the hand axis; camera x = finger axis.
    yaw = -0.785398  # finger axis in link7 frame is rotated -45 deg about z
    finger = np.array([np.cos(yaw + np.pi / 2), np.sin(yaw + np.pi / 2), 0.0])  # y of the tcp frame
    fwd = np.array([-0.03, 0.03, 0.14])
    fwd = fwd / np.linalg.norm(fwd)
    x = finger - fwd * (finger @ fwd)
    x = x / np.linalg.norm(x)
    z = -fwd
    y = np.cross(z, x)
    mat = np.stack([x, y, z], axis=1)  # columns = camera axes in link7 frame
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat.tolist()


def body_geom_ids(model: mujoco.MjModel, body_name: str) -> np.ndarray:
    """Geom ids attached to one body (for contact queries)."""
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_name)
    if bid < 0:
        raise ValueError(f"no body named {body_name!r} in the model")
    return np.flatnonzero(model.geom_bodyid == bid)
