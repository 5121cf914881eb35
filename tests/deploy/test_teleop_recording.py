"""Teleop through a recording bridge: executed actions land in a LeRobot dataset, one episode per reset."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.bridge import BridgeClient
from deploy.robot import KinematicRobot
from deploy.teleop import KeyboardTeleop, ScriptedTeleop, TeleopCommand, run_teleop
from vla.data import LeRobotDataset


def test_teleop_records_executed_actions(make_bridge, tmp_path):
    root = tmp_path / "demos"
    server = make_bridge(robot=KinematicRobot(image_size=16, tol=0.0, control_hz=50.0), lockstep=True,
                         record_dir=str(root))
    step = np.array([0.01, 0, 0, 0, 0, 0])
    cmds = [TeleopCommand(step, gripper=-1.0)] * 3 + [TeleopCommand(step * 10, gripper=1.0)]  # last one clamped
    cmds += [TeleopCommand(end_episode=True)] + [TeleopCommand(-step)] * 2 + [TeleopCommand(end_episode=True)]
    with BridgeClient(server.endpoint) as c:
        counts = run_teleop(c, ScriptedTeleop(cmds), hz=200)
        assert counts["executed"] == 6 and counts["episodes"] == 2
        assert c.stats()["episodes_saved"] == 2
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and len(ds) == 6
    acts = ds.get_column("action")
    np.testing.assert_allclose(acts[:3, 0], 0.01)
    np.testing.assert_allclose(acts[3], [0.05, 0, 0, 0, 0, 0, 1.0], atol=1e-7)  # clamped, as executed
    np.testing.assert_allclose(acts[4:, 0], -0.01)
    states = ds.get_column("observation.state")
    np.testing.assert_allclose(states[:4, 0], [0.45, 0.46, 0.47, 0.48], atol=1e-6)  # obs *before* each action
    f = ds[0]
    assert f["task"] == "move to the goal" and f["observation.images.agentview"].shape == (16, 16, 3)
    assert ds.episode_bounds(1) == (4, 6)


def test_idle_bridge_records_nothing_and_resume_appends(make_bridge, tmp_path):
    root = tmp_path / "demos"
    server = make_bridge(robot=KinematicRobot(image_size=16, control_hz=50.0), record_dir=str(root))
    with BridgeClient(server.endpoint) as c:
        c.reset()  # only holds so far: nothing to save
        assert c.stats()["episodes_saved"] == 0
    server.stop()
    server = make_bridge(robot=KinematicRobot(image_size=16, control_hz=50.0), lockstep=True, record_dir=str(root))
    with BridgeClient(server.endpoint) as c:
        o = c.observe()
        assert c.act(np.zeros(7), obs_seq=o.obs_seq).status == "executed"
    server.stop()  # closing saves the open episode
    assert LeRobotDataset(root).num_episodes == 1


def test_keyboard_mapping(tmp_path):
    with open(tmp_path / "keys", "w+") as stream:
        kb = KeyboardTeleop(step_m=0.01, step_rad=0.1, stream=stream)
        cmd = kb.command("wwa j ")
        np.testing.assert_allclose(cmd.delta, [0.02, 0.01, 0, 0, 0, -0.1])
        assert cmd.gripper == -1.0  # toggled twice
        assert kb.command(" ").gripper == 1.0
        assert kb.command("n").end_episode and kb.command("q").quit
    with pytest.raises(ValueError, match="step_m"):
        KeyboardTeleop(step_m=0)
