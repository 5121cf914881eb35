"""PlaceCube: put the <colour> cube on the <colour> pad (a distractor cube and a distractor pad).

Success: the target cube rests on the table with its centre inside the target pad (1 cm margin) and
no finger touches it (released).

    env = sim.make("PlaceCube")
"""

from __future__ import annotations

import numpy as np

from sim.env import TabletopEnv, TaskConfig
from sim.expert import Phase, WaypointExpert, carry_target, close_on, grasp_yaw, lost, straight_up
from sim.registry import register_task
from sim.scene import CUBE_HALF
from sim.tasks.pick import GRASP_Z

PAD_HALF = 0.05


def default_config() -> TaskConfig:
    return TaskConfig(horizon=120, n_cubes=2)


class PlaceCubeEnv(TabletopEnv):
    N_PADS = 2
    PAD_SHAPE = "square"
    PAD_SIZE = PAD_HALF
    TRAIN_TEMPLATES = (
        "put the {color} cube on the {pad} pad",
        "place the {color} cube onto the {pad} square",
        "move the {color} block to the {pad} pad",
        "pick up the {color} cube and set it down on the {pad} pad",
    )
    HELDOUT_TEMPLATES = (
        "drop the {color} block onto the {pad} mat",
        "the {color} cube belongs on the {pad} square, put it there",
    )

    def _sample_layout(self, rng: np.random.Generator) -> None:
        self.target, self.target_pad = 0, 0
        cube = self._cell_xy(rng)
        # pads first (large), then the remaining cubes away from pads and cubes
        pads = [self._free_xy(rng, [cube], min_dist=0.13)]
        for _ in range(1, self.N_PADS):
            pads.append(self._free_xy(rng, [cube, *pads], min_dist=0.13))
        cubes = [cube]
        for _ in range(1, self.config.n_cubes):
            cubes.append(self._free_xy(rng, [*cubes, *pads], min_dist=0.1))
        for i, xy in enumerate(cubes):
            self._set_cube(i, xy, rng.uniform(-np.pi / 4, np.pi / 4))
        for i, xy in enumerate(pads):
            self._set_pad(i, xy)

    def goal_pos(self) -> np.ndarray:
        return self.pad_pos(self.target_pad)

    def _slots(self) -> dict[str, str]:
        return {"color": self.colours[f"cube{self.target}"], "pad": self.colours[f"pad{self.target_pad}"]}

    def _success(self) -> bool:
        off = np.abs(self.cube_pos(self.target)[:2] - self.pad_pos(self.target_pad)[:2])
        return bool(
            np.all(off < PAD_HALF - 0.01)
            and self.resting_on_table(self.target)
            and not self.finger_touches(self.target)
        )


class PlaceCubeExpert(WaypointExpert):
    def phases(self) -> list[Phase]:
        env = self.env
        t, p = env.target, env.target_pad

        def above_cube(h: float):
            return lambda: env.cube_pos(t) * [1, 1, 0] + [0, 0, h]

        def above_pad(h: float):
            return lambda: env.pad_pos(p) * [1, 1, 0] + [0, 0, h]

        def yaw():
            return grasp_yaw(env.cube_yaw(t))

        return [
            Phase("approach", above_cube(0.12), -1.0, yaw=yaw, tol=0.01),
            Phase("descend", above_cube(GRASP_Z), -1.0, yaw=yaw, tol=0.006, speed=0.6, noise_scale=0.3),
            close_on(env, t, above_cube(GRASP_Z)),
            Phase("lift", straight_up(env, 0.12), 1.0, speed=0.6, tol=0.015, abort=lost(env, t)),
            Phase("carry", carry_target(env, t, above_pad(0.1)), 1.0, tol=0.01, abort=lost(env, t)),
            # held cube's bottom 8 mm above the table, then let go
            Phase(
                "lower",
                carry_target(env, t, above_pad(CUBE_HALF + 0.008)),
                1.0,
                tol=0.006,
                speed=0.5,
                noise_scale=0.3,
                abort=lost(env, t),
            ),
            Phase("release", lambda: env.tcp_pose()[0], -1.0, min_steps=4, max_steps=4, noise_scale=0.3),
            Phase("retreat", above_pad(0.15), -1.0, speed=0.6, max_steps=200),
        ]


register_task(
    "PlaceCube",
    default_config,
    PlaceCubeEnv,
    PlaceCubeExpert,
    "target cube released, resting on the table with its centre >= 1 cm inside the target pad",
)
