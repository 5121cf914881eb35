"""scripts/bench_async.py: the cell summary (pooled seam jerk, Wilson interval, time to success) by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_async", ROOT / "scripts" / "bench_async.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _ep(success, duration, seams, jerk, counts=None, delays=None, p50=5.0):
    return {"success": success, "duration_s": duration, "seams": seams, "seam_jerk": jerk, "counts": counts or {},
            "delay_ticks": delays or {}, "inference_ms": {"p50_ms": p50}}


def test_summary_pools_seams_and_counts():
    eps = [_ep(True, 2.0, 3, 0.1, {"holds": 1}, {"2": 3}), _ep(False, 5.0, 1, 0.5, {"holds": 2}, {"2": 1, "3": 1}),
           _ep(True, 4.0, 0, None)]
    c = bench.summarize("ReachCube", 2, "switch", 190.0, 10.0, eps)
    assert c["successes"] == 2 and c["success_rate"] == pytest.approx(2 / 3)
    assert c["time_to_success_s"] == pytest.approx(3.0)  # successes only
    assert c["seam_jerk"] == pytest.approx((3 * 0.1 + 1 * 0.5) / 4)  # every seam weighs the same
    assert c["seams"] == 4 and c["counts"] == {"holds": 3} and c["delay_ticks"] == {"2": 4, "3": 1}
    lo, hi = bench.wilson(2, 3)
    assert c["success_ci95"] == [lo, hi] and 0 < lo < 2 / 3 < hi < 1
