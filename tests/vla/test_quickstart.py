"""The README's main command, end to end at smoke size (about a minute on 2 cores)."""

import json

from vla.cli import main


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
    # a re-run resumes: every stage's output exists, nothing is recomputed but eval, which is deterministic
    weights = (out / "policy" / "checkpoint" / "model.safetensors").read_bytes()
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "ReachCube"]) == 0
    again = json.loads((out / "eval_ReachCube.json").read_text())["per_episode"]
    assert [(e["seed"], e["success"], e["length"]) for e in again] == first
    assert (out / "policy" / "checkpoint" / "model.safetensors").read_bytes() == weights  # not retrained


def test_quickstart_rejects_unknown_task(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--tasks", "FlyToMoon"]) == 2
    assert "FlyToMoon" in capsys.readouterr().err
