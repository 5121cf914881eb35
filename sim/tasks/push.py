"""PushCube: push the <colour> cube into the <colour> circle (a distractor cube and a distractor circle).

The circle lies 12-16 cm from the cube in a random direction and the cube faces that direction
(+-0.2 rad), so a flat push works; the gripper is not needed (the expert keeps it closed).
Success: the target cube's centre is inside the target circle (>= 1 cm from its rim) on the table.

    env = sim.make("PushCube")
"""

from __future__ import annotations

import numpy as np

from sim.env import REGION_HIGH, REGION_LOW, TabletopEnv, TaskConfig
from sim.expert import Phase, WaypointExpert
from sim.registry import register_task
from sim.scene import CUBE_HALF

ZONE_RADIUS = 0.05
PUSH_Z = 0.04  # tcp height while pushing: fingertips ~1.5 cm above the table
PUSHER_HALF = 0.012  # m: half-depth of the closed fingers along the push direction


def default_config() -> TaskConfig:
    return TaskConfig(horizon=100, n_cubes=2)


class PushCubeEnv(TabletopEnv):
    N_PADS = 2
    PAD_SHAPE = "disc"
    PAD_SIZE = ZONE_RADIUS
    TRAIN_TEMPLATES = (
        "push the {color} cube into the {zone} circle",
        "slide the {color} cube to the {zone} circle",
        "push the {color} block onto the {zone} area",
        "nudge the {color} cube over to the {zone} disc",
    )
    HELDOUT_TEMPLATES = (
        "shove the {color} block until it sits in the {zone} circle",
        "without lifting it, move the {color} cube to the {zone} area",
    )

    def _sample_layout(self, rng: np.random.Generator) -> None:
        self.target, self.target_pad = 0, 0
        lo, hi = REGION_LOW - [0.0, 0.04], REGION_HIGH + [0.04, 0.04]  # zones may sit a little outside
        for _ in range(1000):
            cube = self._cell_xy(rng)
            angle = rng.uniform(-np.pi, np.pi)
            zone = cube + rng.uniform(0.12, 0.16) * np.array([np.cos(angle), np.sin(angle)])
            if np.all(zone >= lo) and np.all(zone <= hi):
                break
        else:
            raise RuntimeError("could not place the push target zone")
        self.push_angle = float(angle)
        pads = [zone]
        for _ in range(1, self.N_PADS):
            pads.append(self._free_xy(rng, [cube, *pads], min_dist=0.14, low=lo, high=hi))
        cubes = [cube]
        for _ in range(1, self.config.n_cubes):
            # distractors keep off the push corridor: away from the cube, the zones and the midpoint
            cubes.append(self._free_xy(rng, [*cubes, *pads, (cube + zone) / 2], min_dist=0.1))
        self._set_cube(0, cube, angle + rng.uniform(-0.2, 0.2))
        for i, xy in enumerate(cubes[1:], start=1):
            self._set_cube(i, xy, rng.uniform(-np.pi / 4, np.pi / 4))
        for i, xy in enumerate(pads):
            self._set_pad(i, xy)

    def goal_pos(self) -> np.ndarray:
        return self.pad_pos(self.target_pad)

    def _slots(self) -> dict[str, str]:
        return {"color": self.colours[f"cube{self.target}"], "zone": self.colours[f"pad{self.target_pad}"]}

    def zone_offset(self) -> float:
        return float(np.linalg.norm(self.cube_pos(self.target)[:2] - self.pad_pos(self.target_pad)[:2]))

    def _success(self) -> bool:
        return bool(self.zone_offset() < ZONE_RADIUS - 0.01 and self.resting_on_table(self.target))


class PushCubeExpert(WaypointExpert):
    def phases(self) -> list[Phase]:
        env = self.env
        t, p = env.target, env.target_pad
        start_dir = np.array([np.cos(env.push_angle), np.sin(env.push_angle)])
        # fingers (tcp y) across the push direction so the closed fingers' flat side faces the cube
        yaw = float((env.push_angle + np.pi / 2) % np.pi - np.pi / 2)

        def behind(h: float):
            return lambda: np.append(env.cube_pos(t)[:2] - start_dir * (CUBE_HALF + PUSHER_HALF + 0.03), h)

        def push_goal() -> np.ndarray:
            cube, zone = env.cube_pos(t)[:2], env.pad_pos(p)[:2]
            d = zone - cube
            d = d / max(float(np.linalg.norm(d)), 1e-6)
            # aim past the zone centre so the push does not stall short of it
            return np.append(zone + 0.01 * d - d * (CUBE_HALF + PUSHER_HALF), PUSH_Z)

        return [
            Phase("approach", behind(0.1), 1.0, yaw=lambda: yaw, tol=0.01),
            Phase("descend", behind(PUSH_Z), 1.0, yaw=lambda: yaw, tol=0.006, speed=0.6, noise_scale=0.3),
            Phase(
                "push",
                push_goal,
                1.0,
                yaw=lambda: yaw,
                speed=0.4,
                max_steps=200,
                done=lambda: env.zone_offset() < 0.01,
                noise_scale=0.3,
            ),
            Phase("retreat", lambda: env.tcp_pose()[0] * [1, 1, 0] + [0, 0, 0.12], 1.0, max_steps=200),
        ]


register_task(
    "PushCube",
    default_config,
    PushCubeEnv,
    PushCubeExpert,
    "target cube centre >= 1 cm inside the target circle (5 cm radius), on the table",
)
