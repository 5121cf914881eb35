"""ReachCube: move the gripper to the <colour> cube (two distractor cubes of other colours; all three
lie in the split's position cells, and `options={"target": k}` names cube k).

Success: the tcp (between the finger pads) is within 2 cm of the point 3 cm above the target cube's
top face, i.e. the open gripper hovers right over the cube.

    env = sim.make("ReachCube")
"""

from __future__ import annotations

import numpy as np

from sim.env import TabletopEnv, TaskConfig
from sim.expert import Phase, WaypointExpert, grasp_yaw
from sim.registry import register_task
from sim.scene import CUBE_HALF

HOVER = CUBE_HALF + 0.03  # m: reach point above the cube centre (3 cm above its top face)
RADIUS = 0.02


def default_config() -> TaskConfig:
    return TaskConfig(horizon=50, n_cubes=3)


class ReachCubeEnv(TabletopEnv):
    TARGET_CHOICE = True  # reset(options={"target": k}) names cube k
    TRAIN_TEMPLATES = (
        "reach the {color} cube",
        "move the gripper to the {color} cube",
        "go to the {color} cube",
        "put your hand right above the {color} block",
    )
    HELDOUT_TEMPLATES = (
        "hover over the {color} block",
        "bring the gripper close to the {color} cube",
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

    def reach_point(self) -> np.ndarray:
        return self.cube_pos(self.target) + [0.0, 0.0, HOVER]

    def _success(self) -> bool:
        return bool(np.linalg.norm(self.tcp_pose()[0] - self.reach_point()) < RADIUS)


class ReachCubeExpert(WaypointExpert):
    def phases(self) -> list[Phase]:
        env = self.env
        t = env.target
        return [
            Phase(
                "approach",
                lambda: env.reach_point() + [0, 0, 0.05],
                -1.0,
                yaw=lambda: grasp_yaw(env.cube_yaw(t)),
                tol=0.015,
            ),
            Phase(
                "reach",
                env.reach_point,
                -1.0,
                yaw=lambda: grasp_yaw(env.cube_yaw(t)),
                tol=0.005,
                speed=0.5,
                max_steps=200,
                noise_scale=0.3,
            ),
        ]


register_task(
    "ReachCube",
    default_config,
    ReachCubeEnv,
    ReachCubeExpert,
    "tcp within 2 cm of the point 3 cm above the target cube's top face",
)
