"""Package boundaries: sim imports nothing of vla/deploy, locates the Panda in the installed wheel
without importing it, ships no third-party model files, and sets up EGL by itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sim
from sim.scene import SceneSpec, franka_assets_dir


def test_import_boundaries_and_egl():
    code = (
        "import os, sys; os.environ.pop('MUJOCO_GL', None); import sim; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('vla', 'deploy', 'gymnasium_robotics')); "
        "assert not bad, bad; assert os.environ['MUJOCO_GL'] == 'egl'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_render_works_when_mujoco_was_imported_first():
    code = (
        "import os; os.environ.pop('MUJOCO_GL', None); os.environ.pop('DISPLAY', None); import mujoco; import sim; "
        "obs, _ = sim.make('ReachCube', image_size=16).reset(seed=0); assert obs['agentview'].std() > 0"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_panda_comes_from_the_installed_wheel_not_the_repo():
    path = franka_assets_dir()
    assert (path / "chain.xml").is_file() and "gymnasium_robotics" in str(path)
    repo_sim = Path(sim.__file__).parent
    assert not list(repo_sim.rglob("*.stl")), "no third-party meshes may live in the repo"


def test_scene_spec_validation():
    with pytest.raises(ValueError, match="n_cubes"):
        SceneSpec(n_cubes=0)
    with pytest.raises(ValueError, match="robot_meshes"):
        SceneSpec(robot_meshes="pretty")


def test_task_config_validation():
    with pytest.raises(ValueError, match="control_hz"):
        sim.make("PickCube", control_hz=7.0)  # 1 / (7 * 0.002) is not a whole number of physics steps
    with pytest.raises(ValueError, match="image_size"):
        sim.make("PickCube", image_size=8)
    with pytest.raises(ValueError, match="n_cubes"):
        sim.make("StackCube", n_cubes=1)


def test_control_rate_is_configurable():
    env = sim.make("ReachCube", image_size=16, control_hz=20.0)
    assert env.config.n_substeps == 25 and env.metadata["render_fps"] == 20.0
