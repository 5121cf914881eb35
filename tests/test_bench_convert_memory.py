"""scripts/bench_convert_memory.py end to end at a tiny size: the synthetic source is generated and converted in
fresh child processes, the JSON / markdown report carry the measured fields, the converted checkpoint exists."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_convert_memory.py"
TINY = ["--llm-hidden", "64", "--llm-layers", "1", "--llm-intermediate", "128", "--llm-heads", "4",
        "--tower-width", "64", "--tower-depth", "3", "--dino-mlp", "256", "--siglip-mlp", "200",
        "--shard-gb", "0.005", "--out-shard-gb", "0.01"]


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_convert_memory", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_convert_memory_tiny(tmp_path):
    bench = _load_script()
    out, work = tmp_path / "convert_memory.json", tmp_path / "work"
    bench.main(["--out", str(out), "--work", str(work), "--keep", "--dtypes", "bf16", *TINY])

    res = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().count("| bf16 |") == 1
    src = res["checkpoint"]
    assert src["shards"] >= 3 and src["total_bytes"] > src["largest_shard_bytes"] >= src["largest_tensor_bytes"] > 0
    assert src["largest_tensor"] == "language_model.model.embed_tokens.weight"
    assert res["generation"]["peak_rss_bytes"] >= res["generation"]["baseline_rss_bytes"] > 0
    r = res["conversions"]["bf16"]
    for key in ("peak_rss_bytes", "baseline_rss_bytes", "over_baseline_per_largest_shard", "peak_per_checkpoint",
                "wall_seconds", "throughput_gb_per_s", "within_goal", "ready_rss_bytes", "peak_sources_bytes"):
        assert key in r, key
    assert r["peak_rss_bytes"] >= r["ready_rss_bytes"] >= r["baseline_rss_bytes"] > 0
    assert r["peak_rss_bytes"] == max(v for k, v in r["peak_sources_bytes"].items() if "cumulative" not in k)
    assert r["over_baseline_per_largest_shard"] == (r["peak_rss_bytes"] - r["baseline_rss_bytes"]) / \
        src["largest_shard_bytes"]
    assert r["wall_seconds"] > 0 and r["throughput_gb_per_s"] > 0
    check = r["output"]
    assert check["read_meta"] == "ok" and check["tensor_count_matches"] and check["all_dtype"] == "bf16"
    assert (work / "converted_bf16" / "config.json").is_file()
    assert (work / "openvla_synthetic" / "config.json").is_file()
    assert res["machine"]["cpu_count"] >= 1 and res["machine"]["MemTotal_bytes"] > 0
    assert res["versions"]["torch"] and res["command"].startswith(".venv/bin/python scripts/bench_convert_memory.py")


def test_bench_convert_memory_refuses_without_disk_space(tmp_path, monkeypatch):
    bench = _load_script()
    usage = type("Usage", (), {"total": 10, "used": 10, "free": 1000})()
    monkeypatch.setattr(bench.shutil, "disk_usage", lambda p: usage)
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match="GB free.*--work"):
        bench.main(["--out", str(tmp_path / "x.json"), "--work", str(work), *TINY])
    assert not work.exists() and not (tmp_path / "x.json").exists()
