"""The README's main command, end to end at smoke size (about a minute on 2 cores)."""

import json

import pytest

import sim
from vla.cli import main
from vla.cli.quickstart import task_table
from vla.configs import names
from vla.train import TrainConfig


def test_quickstart_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "ReachCube"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]) == {"ReachCube"}
    r = summary["eval"]["ReachCube"]
    full = json.loads((out / "eval_ReachCube.json").read_text())  # the whole `vla eval` report
    assert r["episodes"] == 2 and len(full["per_episode"]) == 2
    assert full["successes"] == sum(e["success"] for e in full["per_episode"]) and r["success_rate"] == full["successes"] / 2
    first = [(e["seed"], e["success"], e["length"]) for e in full["per_episode"]]
    assert (out / "policy" / "checkpoint" / "model.safetensors").is_file()
    assert summary["tokenizer"]["valid_fraction"] == 1.0
    # eval renders the cameras at the size the demos were recorded at (the policy's 64 px input)
    assert json.loads((out / "eval_ReachCube.json").read_text())["image_size"] == 64
    # the expert on the same seeds (the score the policy is judged against) and the held-out split
    assert full["expert_success_rate"] == 1.0 and r["relative_to_expert"] == r["success_rate"]
    h = json.loads((out / "eval_heldout_ReachCube.json").read_text())
    assert h["split"] == "heldout" and h["episodes"] == 2 and summary["eval_heldout"]["ReachCube"]["episodes"] == 2
    assert summary["onnx_same_episodes"] == {"ReachCube": True}
    assert (out / "summary.md").read_text().strip() == task_table(summary)
    assert {"demos ReachCube", "train", "eval ReachCube", "export"} <= set(summary["stage_seconds"])
    # the exported graphs run the same episodes through ONNX Runtime (the same tokens: the same outcomes)
    assert (out / "onnx" / "manifest.json").is_file()
    o = summary["eval_onnx"]["ReachCube"]
    assert o["episodes"] == 2 and o["success_rate"] == r["success_rate"]
    assert o["execute_steps"] == r["execute_steps"] == 2  # the checkpoint's re-planning default, both runtimes
    # ... and drive the sim over ZeroMQ in real time (a bridge child process, stopped afterwards)
    c = summary["control"]["ReachCube"]
    assert c["episodes"] == 1 and c["hz"] == 10.0 and c["counts"]["plans"] >= 1
    assert json.loads((out / "control_ReachCube.json").read_text())["summary"]["episodes"] == 1
    assert "bridge serving ReachCube" in (out / "control_ReachCube.bridge.log").read_text()
    # a re-run resumes: every stage's output exists and is newer than its inputs, so nothing is recomputed
    weights = (out / "policy" / "checkpoint" / "model.safetensors").read_bytes()
    report_mtime = (out / "eval_ReachCube.json").stat().st_mtime_ns
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "ReachCube"]) == 0
    again = json.loads((out / "eval_ReachCube.json").read_text())["per_episode"]
    assert [(e["seed"], e["success"], e["length"]) for e in again] == first
    assert (out / "policy" / "checkpoint" / "model.safetensors").read_bytes() == weights  # not retrained
    assert (out / "eval_ReachCube.json").stat().st_mtime_ns == report_mtime  # not re-evaluated
    # ... and the summary keeps the first invocation's stage times (what the whole recipe cost); only the
    # control stage, which always runs, is timed anew
    times = json.loads((out / "summary.json").read_text())["stage_seconds"]
    assert set(times) == set(summary["stage_seconds"])
    assert {k: v for k, v in times.items() if k != "control ReachCube"} == \
        {k: v for k, v in summary["stage_seconds"].items() if k != "control ReachCube"}


def test_task_table_hand_computed():
    r = {"successes": 45, "episodes": 50, "success_rate": 0.9, "success_ci95": [0.79, 0.96],
         "expert_success_rate": 1.0, "relative_to_expert": 0.9}
    h = {**r, "successes": 36, "success_rate": 0.72, "success_ci95": [0.58, 0.83], "expert_success_rate": 0.98}
    summary = {"tasks": ["PushCube"], "eval": {"PushCube": r}, "eval_heldout": {"PushCube": h},
               "eval_onnx": {"PushCube": r}, "onnx_same_episodes": {"PushCube": True}}
    row = task_table(summary).splitlines()[2]
    assert row == ("| PushCube | 50/50 | 45/50 (0.79-0.96) | 45/50 (0.79-0.96) | yes | 0.90 | 49/50 "
                   "| 36/50 (0.58-0.83) | 0.80 |")


def test_five_task_config_is_the_tiny_recipe_with_more_steps():
    assert "five_tasks" in names("train")
    five, tiny = TrainConfig.load("five_tasks"), TrainConfig.load("tiny")
    assert five.max_steps == 2 * tiny.max_steps
    assert {**vars(five), "max_steps": None} == {**vars(tiny), "max_steps": None}


@pytest.mark.slow
def test_quickstart_all_tasks_toy_size(tmp_path):
    """The five-task recipe at toy size: one checkpoint on every task's demos, evaluated on every task (torch,
    held out, ONNX Runtime) and driven over ZeroMQ on each."""
    out = tmp_path / "five"
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "all", "--max-steps", "20"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["tasks"]) == sim.list_tasks() and len(summary["tasks"]) == 5
    assert summary["tasks"][:2] == ["ReachCube", "PickCube"]  # the two-task quickstart's demos (same seeds)
    for key in ("eval", "eval_heldout", "eval_onnx", "control"):
        assert set(summary[key]) == set(sim.list_tasks()), key
    assert all(summary["onnx_same_episodes"].values())
    assert json.loads((out / "policy" / "train_config.json").read_text())["train"]["max_steps"] == 20
    assert len((out / "summary.md").read_text().splitlines()) == 2 + 5


def test_quickstart_rejects_unknown_task(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--tasks", "FlyToMoon"]) == 2
    assert "FlyToMoon" in capsys.readouterr().err
