"""EE-delta controller: clamps, tracking, workspace box, joint limits, gripper mapping."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

import sim
from sim.controller import ControllerConfig, clamp_action, rotation_error, rotvec_to_mat


def test_clamp_action_per_axis_then_norm():
    a = clamp_action(np.array([1.0, -1.0, 0.0, 0.0, 0.0, 5.0, 3.0]), max_dpos=0.03, max_drot=0.25)
    assert np.isclose(np.linalg.norm(a[:3]), 0.03) and a[0] > 0 > a[1]
    assert np.isclose(a[5], 0.25) and a[6] == 1.0
    small = np.array([0.01, 0.0, -0.01, 0.1, 0.0, 0.0, -0.5])
    np.testing.assert_allclose(clamp_action(small, 0.03, 0.25), small)


def test_rotation_helpers_roundtrip():
    v = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(rotation_error(rotvec_to_mat(v), np.eye(3)), v, atol=1e-9)


def test_config_validation_names_field():
    with pytest.raises(ValueError, match="max_dpos"):
        ControllerConfig(max_dpos=0)
    with pytest.raises(ValueError, match="workspace_low"):
        ControllerConfig(workspace_low=(1, 0, 0), workspace_high=(0, 1, 1))


@pytest.fixture(scope="module")
def env():
    return sim.make("ReachCube", image_size=16)


def test_tracks_commanded_translation(env):
    env.reset(seed=0)
    p0 = env.unwrapped.tcp_pose()[0]
    for _ in range(10):
        env.step(np.array([0.02, 0.0, -0.01, 0, 0, 0, -1], np.float32))
    for _ in range(5):  # let the servos settle on the last target
        env.step(np.array([0, 0, 0, 0, 0, 0, -1], np.float32))
    moved = env.unwrapped.tcp_pose()[0] - p0
    np.testing.assert_allclose(moved, [0.2, 0.0, -0.1], atol=0.01)


def test_rotation_about_base_z(env):
    env.reset(seed=0)
    _, r0 = env.unwrapped.tcp_pose()
    for _ in range(4):
        env.step(np.array([0, 0, 0, 0, 0, 0.2, -1], np.float32))
    for _ in range(5):
        env.step(np.zeros(7, np.float32))
    _, r1 = env.unwrapped.tcp_pose()
    err = rotation_error(r1, r0)  # rotation taking r0 to r1, base frame
    np.testing.assert_allclose(err, [0, 0, 0.8], atol=0.03)


def test_oversized_action_is_clamped(env):
    env.reset(seed=0)
    p0 = env.unwrapped.tcp_pose()[0]
    env.step(np.array([1.0, 0, 0, 0, 0, 0, -1], np.float32))
    for _ in range(5):
        env.step(np.zeros(7, np.float32))
    assert np.linalg.norm(env.unwrapped.tcp_pose()[0] - p0) < env.unwrapped.config.controller.max_dpos + 0.005


def test_workspace_box_and_joint_limits(env):
    u = env.unwrapped
    env.reset(seed=0)
    cfg = u.config.controller
    for _ in range(40):  # drive down and sideways, far past the box
        env.step(np.array([0.03, 0.03, -0.03, 0, 0, 0, -1], np.float32))
        assert np.all(u.controller.target_pos >= np.array(cfg.workspace_low) - 1e-9)
        assert np.all(u.controller.target_pos <= np.array(cfg.workspace_high) + 1e-9)
    tcp = u.tcp_pose()[0]
    assert tcp[2] > cfg.workspace_low[2] - 0.01 and tcp[1] < cfg.workspace_high[1] + 0.01
    ranges = u.model.jnt_range[:7]
    q = u.data.qpos[:7]
    assert np.all(q >= ranges[:, 0] - 1e-3) and np.all(q <= ranges[:, 1] + 1e-3)
    assert np.all(u.data.ctrl[:7] >= ranges[:, 0]) and np.all(u.data.ctrl[:7] <= ranges[:, 1])


def test_gripper_closes_and_opens(env):
    env.reset(seed=0)
    for _ in range(8):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32))
    assert obs["state"][7] < 0.005, "closed on nothing: fingers meet"
    for _ in range(8):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0], np.float32))
    assert obs["state"][7] > 0.075


def test_rejects_bad_actions(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 0]))


def test_state_matches_site_pose(env):
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    pos, mat = u.tcp_pose()
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    np.testing.assert_allclose(obs["state"][:3], pos, atol=1e-6)
    np.testing.assert_allclose(np.abs(obs["state"][3:7]), np.abs(quat), atol=1e-6)  # wxyz
    np.testing.assert_allclose(obs["state"][:3], [0.45, 0.0, 0.3], atol=0.002)  # home pose
