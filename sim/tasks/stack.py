"""StackCube: stack the <colour> cube on the <colour> cube (one distractor cube).

Success: the top cube rests on the base cube (centres within 1.5 cm horizontally, one cube height
apart vertically), the base cube is on the table, and no finger touches the top cube (released).

    env = sim.make("StackCube")
"""

from __future__ import annotations

import numpy as np

from sim.env import TabletopEnv, TaskConfig
from sim.expert import Phase, WaypointExpert, carry_target, close_on, grasp_yaw, lost, straight_up
from sim.registry import register_task
from sim.scene import CUBE_HALF
from sim.tasks.pick import GRASP_Z


def default_config() -> TaskConfig:
    return TaskConfig(horizon=120, n_cubes=3)


class StackCubeEnv(TabletopEnv):
    MIN_TARGET_CUBES = 2
    TRAIN_TEMPLATES = (
        "stack the {color} cube on the {base} cube",
        "put the {color} cube on top of the {base} cube",
        "place the {color} block onto the {base} block",
        "pick up the {color} cube and stack it on the {base} one",
    )
    HELDOUT_TEMPLATES = (
        "build a tower with the {color} block above the {base} block",
        "set the {color} cube down on the {base} cube",
    )

    def _sample_layout(self, rng: np.random.Generator) -> None:
        self.target, self.base = 0, 1
        taken = [self._cell_xy(rng)]
        for _ in range(1, self.config.n_cubes):
            taken.append(self._free_xy(rng, taken, min_dist=0.1))
        for i, xy in enumerate(taken):
            self._set_cube(i, xy, rng.uniform(-np.pi / 4, np.pi / 4))

    def goal_pos(self) -> np.ndarray:
        return self.cube_pos(self.base)

    def _slots(self) -> dict[str, str]:
        return {"color": self.colours[f"cube{self.target}"], "base": self.colours[f"cube{self.base}"]}

    def _success(self) -> bool:
        top, base = self.cube_pos(self.target), self.cube_pos(self.base)
        dz = top[2] - base[2]
        return bool(
            np.linalg.norm(top[:2] - base[:2]) < 0.015
            and abs(dz - 2 * CUBE_HALF) < 0.005
            and self.resting_on_table(self.base)
            and not self.finger_touches(self.target)
        )


class StackCubeExpert(WaypointExpert):
    def phases(self) -> list[Phase]:
        env = self.env
        t, b = env.target, env.base

        def above(i: int, h: float):
            return lambda: env.cube_pos(i) * [1, 1, 0] + [0, 0, h]

        return [
            Phase("approach", above(t, 0.12), -1.0, yaw=lambda: grasp_yaw(env.cube_yaw(t)), tol=0.01),
            Phase(
                "descend",
                above(t, GRASP_Z),
                -1.0,
                yaw=lambda: grasp_yaw(env.cube_yaw(t)),
                tol=0.006,
                speed=0.6,
                noise_scale=0.3,
            ),
            close_on(env, t, above(t, GRASP_Z)),
            Phase("lift", straight_up(env, 0.14), 1.0, speed=0.6, tol=0.015, abort=lost(env, t)),
            # align the held cube's faces with the base cube's while carrying
            Phase(
                "carry",
                carry_target(env, t, above(b, 0.12)),
                1.0,
                yaw=lambda: grasp_yaw(env.cube_yaw(b)),
                tol=0.008,
                abort=lost(env, t),
            ),
            # held cube's bottom 8 mm above the base cube's top, then let go
            Phase(
                "lower",
                carry_target(env, t, above(b, 3 * CUBE_HALF + 0.008)),
                1.0,
                tol=0.005,
                speed=0.4,
                noise_scale=0.3,
                abort=lost(env, t),
            ),
            Phase("release", lambda: env.tcp_pose()[0], -1.0, min_steps=4, max_steps=4, noise_scale=0.3),
            Phase("retreat", above(b, 0.16), -1.0, speed=0.6, max_steps=200),
        ]


register_task(
    "StackCube",
    default_config,
    StackCubeEnv,
    StackCubeExpert,
    "top cube released on the base cube (centres < 1.5 cm apart horizontally, one cube height up)",
)
