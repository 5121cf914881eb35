"""scripts/sweep_execute_steps.py: one evaluation per k on the same seeds; policy calls per episode follow k."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.vla.test_evaluation import FakeEnv, FakeVLA

_spec = importlib.util.spec_from_file_location(
    "sweep_execute_steps", Path(__file__).resolve().parents[2] / "scripts" / "sweep_execute_steps.py")
sweep_execute_steps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep_execute_steps)


def test_sweep_counts_plans_per_k_and_plots(tmp_path) -> None:
    rows = sweep_execute_steps.sweep(FakeVLA(horizon=4), FakeEnv, steps=[1, 2, 4], episodes=2, seed=0)
    # FakeEnv: seed 0 succeeds at step 3, seed 1 truncates at step 5 -> ceil(3/k) + ceil(5/k) plans
    assert [r["plans_per_episode"] for r in rows] == [(3 + 5) / 2, (2 + 3) / 2, (1 + 2) / 2]
    assert [r["execute_steps"] for r in rows] == [1, 2, 4]
    assert all(r["successes"] == 1 and r["episodes"] == 2 and r["mean_length"] == 4.0 for r in rows)
    png = tmp_path / "sweep.png"
    sweep_execute_steps.plot({"Fake": rows}, png, "fake")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
