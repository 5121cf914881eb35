"""The README's main command, end to end at smoke size (~30 s on 2 cores)."""

import json

from vla.cli import main


def test_quickstart_smoke_runs_every_stage(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "ReachCube"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval"]) == {"ReachCube"}
    r = summary["eval"]["ReachCube"]
    assert r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0
    assert (out / "policy" / "checkpoint" / "model.safetensors").is_file()
    assert summary["tokenizer"]["valid_fraction"] == 1.0
    # eval renders the cameras at the size the demos were recorded at (the policy's 64 px input)
    assert json.loads((out / "eval_ReachCube.json").read_text())["image_size"] == 64
    # a re-run resumes: every stage's output exists, nothing is recomputed but eval
    assert main(["quickstart", "--out", str(out), "--smoke", "--tasks", "ReachCube"]) == 0


def test_quickstart_rejects_unknown_task(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--tasks", "FlyToMoon"]) == 2
    assert "FlyToMoon" in capsys.readouterr().err
