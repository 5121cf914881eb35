"""The decoding benchmark runs every mode on one policy and reports ratios (no timing assertions)."""

from __future__ import annotations

import pytest

from tests.vla.model.conftest import io_of, make_obs
from vla.model.benchmark import DEFAULT_MODES, bench_decoding


def test_bench_decoding_reports_every_mode_and_ratio(ar_policy) -> None:
    res = bench_decoding(ar_policy, io_of(ar_policy), make_obs(0), iters=2, warmup=0)
    assert set(res["modes"]) == set(DEFAULT_MODES)
    for stats in res["modes"].values():
        assert 0 < stats["per_action_ms_p50"] <= stats["per_action_ms_p99"]
    assert set(res["speedup_vs_generate"]) == set(DEFAULT_MODES) - {"generate", "generate_inference_mode"}
    assert res["layer_loop"] == "used" and res["action_tokens"] == ar_policy.num_action_tokens
    with pytest.raises(ValueError, match="unknown modes"):
        bench_decoding(ar_policy, io_of(ar_policy), make_obs(0), iters=1, modes=("beam",))
