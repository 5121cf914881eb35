"""scripts/probe_grounding.py: a policy that heads for the named cube always points at it; one that ignores
the instruction points at whichever cube it heads for, whatever is asked (real ReachCube scenes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

import sim

_spec = importlib.util.spec_from_file_location(
    "probe_grounding", Path(__file__).resolve().parents[2] / "scripts" / "probe_grounding.py")
probe_grounding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_grounding)


class HeadFor:
    """Moves 2 cm per step for 4 steps toward the cube whose colour the instruction names (or cube 0)."""

    def __init__(self, env, reads_language: bool) -> None:
        self.u, self.reads = env.unwrapped, reads_language

    def predict_action(self, obs: dict) -> np.ndarray:
        u = self.u
        j = next((k for k in range(u.config.n_cubes) if u.colours[f"cube{k}"] in obs["instruction"].split()), 0) \
            if self.reads else 0
        d = u.cube_pos(j)[:2] - u.tcp_pose()[0][:2]
        a = np.zeros((4, 7))
        a[:, :2] = 0.02 * d / np.linalg.norm(d)
        return a


def test_probe_scores_grounding_and_its_absence() -> None:
    env = sim.make("ReachCube", image_size=16)
    try:
        good = probe_grounding.probe(HeadFor(env, True), env, range(3))
        blind = probe_grounding.probe(HeadFor(env, False), env, range(3))
    finally:
        env.close()
    assert good["points_at_named"] == 1.0 and good["asked"] == 9 and good["spread"] > 0.5
    assert blind["points_at_named"] == blind["chance"] == 1 / 3 and blind["spread"] < 1e-9
