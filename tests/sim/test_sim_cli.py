"""`vla sim demos` / `vla sim render`: dataset written through vla.data matches a replay exactly."""

from __future__ import annotations

import numpy as np

import sim
from vla.cli import main


def test_demos_roundtrip_exact(tmp_path):
    from vla.data import LeRobotDataset

    out = tmp_path / "ds"
    rc = main(
        [
            "sim",
            "demos",
            "--task",
            "ReachCube",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--image-size",
            "32",
            "--seed",
            "5",
            "--noise",
            "0.002",
        ]
    )
    assert rc == 0
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 2 and ds.fps == 10
    assert ds.features["observation.state"]["names"] == list(sim.STATE_NAMES)
    assert ds.features["action"]["names"] == list(sim.ACTION_NAMES)
    # replay: same seeds, same expert seed -> the dataset holds exactly these frames
    env = sim.make("ReachCube", image_size=32)
    expert = sim.make_expert("ReachCube", env, noise=0.002, seed=5)
    i = differs = 0
    for ep, seed in enumerate((5, 6)):  # the expert succeeds on both, so attempts = episodes
        expert.reset()
        obs, _ = env.reset(seed=seed)
        start, stop = ds.episode_bounds(ep)
        assert start == i
        done = False
        while not done:
            action = expert(obs)  # executed: noisy
            row = ds[i]
            np.testing.assert_array_equal(row["observation.images.agentview"], obs["agentview"])
            np.testing.assert_array_equal(row["observation.images.wrist"], obs["wrist"])
            np.testing.assert_array_equal(row["observation.state"], obs["state"])
            np.testing.assert_array_equal(row["observation.environment_state"], env.unwrapped.task_state())
            # default --label clean: the label is the expert's command before the noise (DART)
            np.testing.assert_array_equal(row["action"], expert.clean_action)
            differs += not np.array_equal(action, expert.clean_action)
            assert row["task"] == obs["instruction"] and row["episode_index"] == ep
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
            i += 1
        assert info["success"] and i == stop
    assert len(ds) == i
    assert differs > 0  # the executed actions really were perturbed


def test_demos_existing_dataset_is_an_error(tmp_path):
    out = tmp_path / "ds"
    assert (
        main(
            [
                "sim",
                "demos",
                "--task",
                "ReachCube",
                "--episodes",
                "1",
                "--out",
                str(out),
                "--image-size",
                "16",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "sim",
                "demos",
                "--task",
                "ReachCube",
                "--episodes",
                "1",
                "--out",
                str(out),
                "--image-size",
                "16",
            ]
        )
        == 2
    )


def test_render_gif(tmp_path, capsys):
    out = tmp_path / "reach.gif"
    assert main(["sim", "render", "--task", "ReachCube", "--out", str(out), "--image-size", "32"]) == 0
    assert out.exists() and out.stat().st_size > 0
    assert "success=True" in capsys.readouterr().out


def test_unknown_task_lists_names(capsys):
    assert main(["sim", "render", "--task", "Nope", "--out", "x.gif"]) == 2
    assert "PickCube" in capsys.readouterr().err


def test_list_tasks(capsys):
    assert main(["sim", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in sim.list_tasks())


def test_demos_label_executed_records_the_noisy_action(tmp_path):
    from vla.data import LeRobotDataset

    out = tmp_path / "ds"
    argv = ["sim", "demos", "--task", "ReachCube", "--episodes", "1", "--out", str(out), "--image-size", "16",
            "--seed", "3", "--noise", "0.004", "--label", "executed", "--file-mb", "1"]
    assert main(argv) == 0
    ds = LeRobotDataset(out)
    env = sim.make("ReachCube", image_size=16)
    expert = sim.make_expert("ReachCube", env, noise=0.004, seed=3)
    obs, _ = env.reset(seed=3)
    for i in range(len(ds)):
        action = expert(obs)
        np.testing.assert_array_equal(ds[i]["action"], action)
        obs, *_ = env.step(action)


def test_demos_every_target_records_each_cube_of_a_scene(tmp_path, capsys):
    """--every-target: consecutive episodes share a scene (identical first frames) and name different cubes."""
    from vla.data import LeRobotDataset

    out = tmp_path / "ds"
    argv = ["sim", "demos", "--task", "ReachCube", "--episodes", "4", "--out", str(out), "--image-size", "32",
            "--seed", "7", "--every-target"]
    assert main(argv) == 0
    ds = LeRobotDataset(out)
    assert ds.num_episodes == 4
    firsts = [ds[ds.episode_bounds(ep)[0]] for ep in range(4)]
    env = sim.make("ReachCube", image_size=32)
    for ep, (seed, k) in enumerate([(7, 0), (7, 1), (7, 2), (8, 0)]):  # 3 cubes per scene, then the next seed
        obs, _ = env.reset(seed=seed, options={"target": k})
        np.testing.assert_array_equal(firsts[ep]["observation.images.agentview"], obs["agentview"])
        assert firsts[ep]["task"] == obs["instruction"]
    assert len({f["task"] for f in firsts[:3]}) == 3
    with_stack = ["sim", "demos", "--task", "StackCube", "--episodes", "1", "--out", str(tmp_path / "s"),
                  "--image-size", "32", "--every-target"]
    assert main(with_stack) != 0
    assert "StackCube does not take a target choice" in capsys.readouterr().err


def test_demos_hold_steps_extend_each_episode_past_its_first_success(tmp_path, capsys):
    """--hold-steps K: the same rollout as without it, plus exactly K expert steps after the first success,
    every one of them still successful (the expert settles on its goal instead of the episode ending)."""
    from vla.data import LeRobotDataset

    base = ["sim", "demos", "--task", "ReachCube", "--episodes", "2", "--image-size", "32", "--seed", "3",
            "--noise", "0.005"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "held"), "--hold-steps", "4"]) == 0
    plain, held = LeRobotDataset(tmp_path / "plain"), LeRobotDataset(tmp_path / "held")
    assert plain.num_episodes == held.num_episodes == 2
    from sim.tasks.reach import HOVER, RADIUS

    # episode 0 is the same rollout frame for frame, then 4 more (episode 1 differs: the expert's noise stream
    # has moved on by the 4 extra draws)
    a, b = plain.episode_bounds(0)
    c, d = held.episode_bounds(0)
    assert d - c == b - a + 4
    for k in range(b - a):
        np.testing.assert_array_equal(plain[a + k]["observation.images.agentview"],
                                      held[c + k]["observation.images.agentview"])
        np.testing.assert_array_equal(plain[a + k]["action"], held[c + k]["action"])
    # the 4 hold frames of every episode (the first successful observation and 3 more) have the tcp inside
    # ReachCube's success region: within RADIUS of the point HOVER above the cube centre
    for ep in range(2):
        c, d = held.episode_bounds(ep)
        for i in range(d - 4, d):
            tcp = held[i]["observation.state"][:3]
            cube = held[i]["observation.environment_state"][:3]
            assert np.linalg.norm(tcp - cube - [0.0, 0.0, HOVER]) < RADIUS
    bad = ["sim", "demos", "--task", "ReachCube", "--episodes", "1", "--out", str(tmp_path / "bad"),
           "--hold-steps", "-1"]
    assert main(bad) == 2
    assert "--hold-steps -1: must be >= 0" in capsys.readouterr().err
