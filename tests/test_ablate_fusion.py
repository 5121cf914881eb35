"""scripts/ablate_fusion.py --smoke end to end on a synthetic dataset: two rows train (child processes), are
evaluated in ReachCube (train + heldout splits), exported and timed; a second invocation skips finished runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.vla.train.helpers import write_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ablate_fusion", ROOT / "scripts" / "ablate_fusion.py")
ablate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablate)


def test_rows_change_only_what_they_name():
    from vla.train import TrainConfig

    base = TrainConfig.load("tiny")
    assert "fused_gelu_mlp" not in ablate.ROWS
    connectors = {"linear", "mlp", "pixel_shuffle", "resampler", "qformer"}
    assert connectors <= set(ablate.ROWS)
    for row, overrides in ablate.ROWS.items():
        cfg = ablate.train_config(row, overrides, seed=1, steps=7)
        m = cfg.model_config()
        assert cfg.max_steps == 7 and cfg.seed == 1 and cfg.batch_size == base.batch_size
        a, b = m.to_dict(), base.model_config().to_dict()
        named = {k.split(".")[1] for k in overrides}
        assert {k for k in a if a[k] != b[k]} == (named - {"projector"} if row == "pixel_shuffle" else named), row
        if row in connectors:
            assert named == {"projector"} and m.projector.type == row
    assert ablate.ROWS["xattn"] == {"model.fusion": {"mode": "cross_attention"}}
    vit = ablate.train_config("vit_tune", ablate.ROWS["vit_tune"], 0, 7).model_config()
    assert vit.fusion.text_guided and vit.film is None and vit.vision.model_type == "siglip_vision_model"
    assert ablate.train_config("pixel_shuffle", ablate.ROWS["pixel_shuffle"], 0, base.max_steps).model_config() == \
        base.model_config()


def test_summary_pools_seeds_and_marks_incomplete():
    def res(k):
        ev = {"ReachCube": {s: {"episodes": 10, "successes": k, "success_rate": k / 10} for s in ablate.SPLITS}}
        return {"visual_tokens": 32, "params": 1000, "train_samples_per_s": 100.0, "train_seconds": 1.0,
                "peak_rss_mb": 500.0, "torch_chunk_ms_p50": 5.0, "onnx_chunk_ms_p50": 3.0, "eval": ev}

    r = ablate.summarize_row("linear", {0: res(2), 1: res(6)}, [0, 1, 2], ["ReachCube"])
    assert not r["complete"] and r["seeds_finished"] == [0, 1]
    c = r["success"]["ReachCube"]["train"]
    assert c["successes"] == 8 and c["episodes"] == 20 and c["pooled_rate"] == pytest.approx(0.4)
    assert c["wilson95"] == pytest.approx(list(ablate.wilson_interval(8, 20)))
    assert c["per_seed"] == {"0": 0.2, "1": 0.6} and c["seed_std"] == pytest.approx(0.2828, abs=1e-3)
    assert "INCOMPLETE" in ablate.table([r], ["ReachCube"])


@pytest.mark.slow  # ~100 s on the 2-core box (two child trainings, 8 sim episodes, two ONNX exports)
def test_smoke_grid_runs_and_resumes(tmp_path, capsys):
    data = write_synthetic_dataset(tmp_path / "data", episodes=4, length=8, size=64, env_state=True)
    out, summary = tmp_path / "ablate", tmp_path / "bench" / "ablate.json"
    # --smoke (2 episodes, seed 0, rows linear + qformer) with 5 steps instead of its 20: the test checks the plumbing
    argv = ["--smoke", "--steps", "5", "--tasks", "ReachCube", "--demos", str(data), "--out", str(out), "--summary", str(summary)]
    assert ablate.main(argv) == 0
    s = json.loads(summary.read_text())
    assert [r["row"] for r in s["rows"]] == ["linear", "qformer"] and s["complete"] and s["steps"] == 5
    for r in s["rows"]:
        assert r["complete"] and r["seeds_finished"] == [0]
        for split in ("train", "heldout"):
            c = r["success"]["ReachCube"][split]
            assert c["episodes"] == 2 and 0 <= c["pooled_rate"] <= 1 and len(c["wilson95"]) == 2
        assert r["visual_tokens"] > 0 and r["params"] > 0 and r["peak_rss_mb"] > 0
        assert r["train_samples_per_s"] > 0 and r["onnx_chunk_ms_p50"] > 0 and r["torch_chunk_ms_p50"] > 0
    assert summary.with_suffix(".md").is_file() and "qformer" in summary.with_suffix(".md").read_text()
    assert summary.with_suffix(".png").is_file()
    files = sorted(p for p in out.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert ablate.main(argv) == 0
    log = capsys.readouterr().out
    assert log.count("skipped") == 2 and "training" not in log
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes


def test_the_benchmarks_table_is_spliced_between_its_markers_only(tmp_path, capsys):
    md = tmp_path / "B.md"
    md.write_text(f"# B\nbefore\n{ablate.TABLE_BEGIN}\n\n| old |\n{ablate.TABLE_END}\nafter\n")
    assert ablate.splice_table(md, "| new |\n|---|\n")
    assert md.read_text() == f"# B\nbefore\n{ablate.TABLE_BEGIN}\n\n| new |\n|---|\n\n{ablate.TABLE_END}\nafter\n"
    assert ablate.splice_table(md, "| newer |\n")  # idempotent layout: a second splice replaces the first
    assert "| new |" not in md.read_text() and md.read_text().count(ablate.TABLE_BEGIN) == 1
    plain = tmp_path / "C.md"
    plain.write_text("no markers\n")
    assert not ablate.splice_table(plain, "| t |\n") and plain.read_text() == "no markers\n"
    assert "no <!-- ablate_fusion:table -->" in capsys.readouterr().out
