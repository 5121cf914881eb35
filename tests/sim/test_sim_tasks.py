"""Every registered task: gymnasium check_env, spaces, determinism, expert success, upright images.

.venv/bin/pytest tests/sim -q            # default suite (small images, few seeds)
.venv/bin/pytest tests/sim -q -m slow    # 50-seed expert success per task
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.env import PALETTE

TASKS = sim.list_tasks()
SIZE = 32  # small images keep the suite fast; rendering is most of a step's cost


def rollout(env, expert, seed: int, steps: int | None = None):
    expert.reset()
    obs, info = env.reset(seed=seed)
    observations, actions = [obs], []
    for _ in range(steps or env.config.horizon):
        a = expert(obs)
        obs, _, term, trunc, info = env.step(a)
        observations.append(obs)
        actions.append(a)
        if term or trunc:
            break
    return observations, actions, info


def test_at_least_five_tasks():
    assert len(TASKS) >= 5


@pytest.mark.parametrize("name", TASKS)
def test_check_env(name):
    env = gym.make(f"vla_sim/{name}-v0", image_size=SIZE)  # through gymnasium so the env has a spec
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("name", TASKS)
def test_spaces_shapes_dtypes(name):
    env = sim.make(name, image_size=SIZE)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for cam in ("agentview", "wrist"):
        assert obs[cam].shape == (SIZE, SIZE, 3) and obs[cam].dtype == np.uint8
        assert obs[cam].std() > 5, f"{cam} image is blank"
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert np.isclose(np.linalg.norm(obs["state"][3:7]), 1.0, atol=1e-5), "quaternion must be unit"
    assert 0.07 < obs["state"][7] <= 0.081, "gripper starts open (two fingers x 0.04 m)"
    assert isinstance(obs["instruction"], str) and len(obs["instruction"]) > 5
    assert env.action_space.shape == (7,) and env.action_space.dtype == np.float32
    assert env.metadata["render_fps"] == env.unwrapped.control_hz == 10
    assert info["success"] is False
    obs, reward, term, trunc, info = env.step(np.zeros(7, np.float32))
    assert isinstance(info["success"], bool) and isinstance(reward, float)
    assert len(sim.STATE_NAMES) == 8 and len(sim.ACTION_NAMES) == 7


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_bit_identical(name):
    a, b = sim.make(name, image_size=SIZE), sim.make(name, image_size=SIZE)
    obs_a, act_a, _ = rollout(a, sim.make_expert(name, a, noise=0.003, seed=7), seed=3, steps=8)
    obs_b, act_b, _ = rollout(b, sim.make_expert(name, b, noise=0.003, seed=7), seed=3, steps=8)
    assert len(obs_a) == len(obs_b)
    for x, y in zip(obs_a, obs_b, strict=True):
        for key in ("agentview", "wrist", "state"):
            np.testing.assert_array_equal(x[key], y[key])
        assert x["instruction"] == y["instruction"]
    np.testing.assert_array_equal(np.stack(act_a), np.stack(act_b))
    other, _ = a.reset(seed=4)
    assert not np.array_equal(other["agentview"], obs_a[0]["agentview"]), "different seeds, same scene"


@pytest.mark.parametrize("name", TASKS)
def test_expert_succeeds(name):
    env = sim.make(name, image_size=SIZE)
    expert = sim.make_expert(name, env)
    for seed in (0, 1):
        _, actions, info = rollout(env, expert, seed)
        assert info["success"], f"{name} expert failed on seed {seed}"
        assert len(actions) < env.config.horizon
        assert all(env.action_space.contains(a) for a in actions)


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_expert_success_rate_50_seeds(name):
    env = sim.make(name, image_size=SIZE)
    expert = sim.make_expert(name, env)
    wins = sum(bool(rollout(env, expert, seed)[2]["success"]) for seed in range(50))
    assert wins >= 48, f"{name}: expert {wins}/50 < 95%"


def _centroid(img: np.ndarray, rgb) -> np.ndarray:
    """Mean (row, col) of pixels closest to a palette colour (shading changes brightness, not hue)."""
    px = img.astype(np.float32) / 255.0
    target = np.asarray(rgb, np.float32)
    dist = np.linalg.norm(px / (px.sum(-1, keepdims=True) + 1e-3) - target / target.sum(), axis=-1)
    mask = (dist < 0.12) & (px.sum(-1) > 0.3)
    assert mask.sum() >= 3, f"colour {rgb} not visible"
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("name", TASKS)
def test_images_upright(name):
    """Golden layout: in agentview the near cube is low, the far cube high, +y on the right;
    in the wrist view (gripper pointing down) forward (+x) is up and +y is on the left."""
    env = sim.make(name, image_size=64, n_cubes=3)  # the layout below uses cubes 0-2
    env.reset(seed=0)
    env._set_cube(0, np.array([0.62, 0.0]), 0.0)  # near the agentview camera, ahead of the gripper
    env._set_cube(1, np.array([0.36, 0.0]), 0.0)  # far
    env._set_cube(2, np.array([0.50, 0.18]), 0.0)  # +y (robot's left)
    colours = ("red", "green", "blue")
    for i, c in enumerate(colours):
        env.model.geom(f"cube{i}_geom").rgba[:3] = PALETTE[c]
    for i in range(env.N_PADS):
        env._set_pad(i, np.array([1.5, 1.5]))  # out of view
    mujoco.mj_forward(env.model, env.data)
    obs = env._obs()
    near, far, left = (_centroid(obs["agentview"], PALETTE[c]) for c in colours)
    assert near[0] > far[0] + 5, "agentview upside down: the near cube must be lower in the image"
    assert left[1] > near[1] + 5, "agentview mirrored: +y must be on the right"
    top, bottom = obs["agentview"][:8].mean(), obs["agentview"][-8:].mean()
    assert bottom > top, "agentview: the bright table belongs at the bottom, the dark background at the top"
    ahead, _, side = (_centroid(obs["wrist"], PALETTE[c]) for c in colours)
    assert ahead[0] < 32, "wrist view: the cube ahead of the gripper must be in the upper half"
    assert side[1] < ahead[1], "wrist view: +y must be on the left"


@pytest.mark.parametrize("name", TASKS)
def test_heldout_split(name):
    entry = sim.task_entry(name)
    train, held = set(entry.env_cls.TRAIN_TEMPLATES), set(entry.env_cls.HELDOUT_TEMPLATES)
    assert len(train) >= 3 and len(held) >= 2 and not train & held
    env = sim.make(name, image_size=SIZE, split="heldout")
    seen = set()
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        seen.add(obs["instruction"])
        cell = np.floor(
            (env.cube_pos(env.target)[:2] - sim.env.REGION_LOW)
            / (sim.env.REGION_HIGH - sim.env.REGION_LOW)
            * sim.env.GRID
        )
        assert int(cell.sum()) % 2 == 1, "held-out target positions lie in odd checkerboard cells"
    colours = set(PALETTE)
    held_prefixes = {t.split("{")[0] for t in held}
    assert all(any(s.startswith(p) for p in held_prefixes) for s in seen)
    assert all(any(c in s for c in colours) for s in seen)


@pytest.mark.parametrize("halves,parity,phrasing", [({"position_split": "heldout"}, 1, "train"),
                                                     ({"instruction_split": "heldout"}, 0, "heldout")])
def test_one_half_of_the_heldout_split(halves, parity, phrasing):
    """Positions and phrasings can be held out one at a time (which of the two costs the success)."""
    entry = sim.task_entry("PickCube")
    templates = entry.env_cls.TRAIN_TEMPLATES if phrasing == "train" else entry.env_cls.HELDOUT_TEMPLATES
    prefixes = {t.split("{")[0] for t in templates}
    env = sim.make("PickCube", image_size=SIZE, **halves)
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        cell = np.floor((env.cube_pos(env.target)[:2] - sim.env.REGION_LOW)
                        / (sim.env.REGION_HIGH - sim.env.REGION_LOW) * sim.env.GRID)
        assert int(cell.sum()) % 2 == parity
        assert any(obs["instruction"].startswith(p) for p in prefixes)
    with pytest.raises(ValueError, match="position_split"):
        sim.make("PickCube", image_size=SIZE, position_split="test")


def test_distinct_colours_and_random_targets():
    env = sim.make("PickCube", image_size=SIZE)
    targets = set()
    for seed in range(10):
        env.reset(seed=seed)
        assert len(set(env.colours.values())) == len(env.colours), "colours must be distinct per scene"
        targets.add(env.colours["cube0"])
    assert len(targets) >= 3, "the target colour must vary across seeds"


def test_registry_and_gym_ids():
    with pytest.raises(ValueError, match="available: .*PickCube"):
        sim.make("NoSuchTask")
    with pytest.raises(ValueError, match="unknown override"):
        sim.make("PickCube", not_a_field=1)
    with pytest.raises(ValueError, match="split"):
        sim.make("PickCube", split="test")
    env = gym.make("vla_sim/PickCube-v0", image_size=SIZE)
    obs, _ = env.reset(seed=0)
    assert obs["agentview"].shape == (SIZE, SIZE, 3)
    assert isinstance(env.unwrapped, sim.task_entry("PickCube").env_cls)
    with pytest.raises(ValueError, match="expected"):
        sim.make_expert("StackCube", env)


@pytest.mark.parametrize("name", TASKS)
def test_task_state_names_the_instructed_cube_and_goal(name):
    """task_state() = [target cube centre, goal point]; the target is the cube whose colour is in the instruction."""
    env = sim.make(name, image_size=SIZE).unwrapped
    env.reset(seed=3)
    st = env.task_state()
    assert st.shape == (len(sim.TASK_STATE_NAMES),) and st.dtype == np.float32
    colour = env.colours[f"cube{env.target}"]
    assert colour in env.instruction
    np.testing.assert_allclose(st[:3], env.cube_pos(env.target), atol=1e-6)
    np.testing.assert_allclose(st[3:], env.goal_pos(), atol=1e-6)
    if hasattr(env, "target_pad"):  # Place / Push: the goal is the named pad or zone
        np.testing.assert_allclose(st[3:5], env.pad_pos(env.target_pad)[:2], atol=1e-6)
    elif hasattr(env, "base"):  # Stack: the base cube
        np.testing.assert_allclose(st[3:], env.cube_pos(env.base), atol=1e-6)


CHOICE_TASKS = [t for t in TASKS if sim.task_entry(t).env_cls.TARGET_CHOICE]


def test_target_choice_tasks_are_reach_and_pick():
    assert set(CHOICE_TASKS) >= {"ReachCube", "PickCube"}


@pytest.mark.parametrize("name", CHOICE_TASKS)
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_target_option_names_each_cube_of_one_scene(name, split):
    """options={"target": k}: the same scene (pixels, layout) with cube k named, every cube in the split's cells."""
    env = sim.make(name, image_size=SIZE, split=split).unwrapped
    parity = 0 if split == "train" else 1
    for seed in range(4):
        base, _ = env.reset(seed=seed)
        layout = [env.cube_pos(i).copy() for i in range(env.config.n_cubes)]
        named = set()
        for k in range(env.config.n_cubes):
            obs, _ = env.reset(seed=seed, options={"target": k})
            np.testing.assert_array_equal(obs["agentview"], base["agentview"])
            np.testing.assert_array_equal(obs["state"], base["state"])
            assert env.target == k and env.colours[f"cube{k}"] in obs["instruction"]
            np.testing.assert_allclose(env.task_state()[:3], layout[k], atol=1e-9)
            named.add(obs["instruction"])
            cell = np.floor((layout[k][:2] - sim.env.REGION_LOW) / (sim.env.REGION_HIGH - sim.env.REGION_LOW) * sim.env.GRID)
            assert int(cell.sum()) % 2 == parity, f"cube {k} lies outside the {split} cells"
        assert len(named) == env.config.n_cubes  # one instruction per cube, same template
        env.reset(seed=seed)
        assert env.target == 0  # no option: the default target again


def test_target_option_errors():
    env = sim.make("ReachCube", image_size=SIZE)
    for bad in (3, -1, 1.0, True, "0"):
        with pytest.raises(ValueError, match=r"options\['target'\]"):
            env.reset(seed=0, options={"target": bad})
    with pytest.raises(ValueError, match="only option is 'target'"):
        env.reset(seed=0, options={"tgt": 1})
    fixed = next(t for t in TASKS if t not in CHOICE_TASKS)
    with pytest.raises(ValueError, match="does not take a target choice"):
        sim.make(fixed, image_size=SIZE).reset(seed=0, options={"target": 1})
    env.reset(seed=0, options={"target": None})  # None = the default target
