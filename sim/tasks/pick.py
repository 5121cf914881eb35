"""PickCube: pick up the <colour> cube (two distractor cubes of other colours; all three
lie in the split's position cells, and `options={"target": k}` names cube k).

Success: the target cube is held by both fingers at least 5 cm above its resting height.

    env = sim.make("PickCube")
"""

from __future__ import annotations

import numpy as np

from sim.env import TabletopEnv, TaskConfig
from sim.expert import Phase, WaypointExpert, close_on, grasp_yaw, lost, straight_up
from sim.registry import register_task
from sim.scene import CUBE_HALF

LIFT = 0.05  # m above resting height
GRASP_Z = CUBE_HALF + 0.01  # tcp height for grasping a cube on the table: fingertips 5 mm above it


def default_config() -> TaskConfig:
    return TaskConfig(horizon=80, n_cubes=3)


class PickCubeEnv(TabletopEnv):
    TARGET_CHOICE = True  # reset(options={"target": k}) names cube k
    TRAIN_TEMPLATES = (
        "pick up the {color} cube",
        "lift the {color} cube",
        "grab the {color} cube and lift it up",
        "pick the {color} block up off the table",
    )
    HELDOUT_TEMPLATES = (
        "raise the {color} block into the air",
        "could you take the {color} cube off the table?",
    )

    def _sample_layout(self, rng: np.random.Generator) -> None:
        # every cube in the split's cells, so options["target"] may name any of them (sim.env module doc);
        # colours are shuffled per episode, so the default target cube0 carries no colour bias
        self.target = self._chosen_target()
        taken = self._cells_xy(rng, self.config.n_cubes, min_dist=0.09)
        for i, xy in enumerate(taken):
            self._set_cube(i, xy, rng.uniform(-np.pi / 4, np.pi / 4))

    def _slots(self) -> dict[str, str]:
        return {"color": self.colours[f"cube{self.target}"]}

    def _success(self) -> bool:
        return bool(self.cube_pos(self.target)[2] > CUBE_HALF + LIFT and self.is_grasped(self.target))


class PickCubeExpert(WaypointExpert):
    def phases(self) -> list[Phase]:
        env = self.env
        t = env.target

        def above(h: float):
            return lambda: env.cube_pos(t) * [1, 1, 0] + [0, 0, h]

        def yaw():
            return grasp_yaw(env.cube_yaw(t))

        return [
            Phase("approach", above(0.12), -1.0, yaw=yaw, tol=0.01),
            Phase("descend", above(GRASP_Z), -1.0, yaw=yaw, tol=0.006, speed=0.6, noise_scale=0.3),
            close_on(env, t, above(GRASP_Z)),
            Phase("lift", straight_up(env, 0.15), 1.0, speed=0.6, max_steps=200, abort=lost(env, t)),
        ]


register_task(
    "PickCube",
    default_config,
    PickCubeEnv,
    PickCubeExpert,
    "target cube held by both fingers >= 5 cm above the table",
)
