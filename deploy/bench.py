"""Per-action latency of every runtime on the same weights (used by scripts/bench_runtimes.py).

    result = bench_runtimes(policy, io, export_dir, obs, iters=30)
    result["runtimes"]["ort_parallel"]["per_action_ms_p50"], result["speedup_vs_generate"]

Every runtime times the same span at batch 1: the model's transforms (`PolicyIO.inputs`) + decoding to
action ids. Torch modes call `vla.model.decoding` (HF `generate()`, our KV-cached loop, no-cache eager,
parallel); ONNX Runtime and TensorRT call `GraphRuntime.decode_ids`. Iterations are interleaved round-robin
across runtimes so a shared, busy machine slows all of them alike and the ratios stay meaningful.
Memory: `rss_growth_mb` is the resident-set growth when a runtime is created and first run (ORT sessions,
TensorRT engines; the torch model's weights are already resident, reported as `torch_weights_mb`), and
`peak_rss_mb` the whole process's peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vla.bench import peak_rss_mb


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20  # resident pages


def _stats(ms: list[float], horizon: int) -> dict[str, float]:
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    return {"chunk_ms_p50": p50, "chunk_ms_p99": p99, "per_action_ms_p50": p50 / horizon,
            "per_action_ms_p99": p99 / horizon}


def bench_runtimes(policy: Any, io: Any, export_dir: str | Path, obs: dict, iters: int = 30, warmup: int = 3,
                   ort_threads: int = 0, engine_dir: str | Path | None = None) -> dict[str, Any]:
    import torch

    from deploy.runtimes.onnx import OnnxRuntime
    from vla.model.decoding import decode_autoregressive, decode_parallel, generate_baseline, to_tensors

    policy.eval()
    h = policy.cfg.action.horizon
    modes = ("autoregressive",) + (("parallel",) if policy.eos_id is None else ())
    def prep(batch: list[dict]) -> dict:
        return to_tensors(io.inputs(batch), policy.action_slots.device)

    fns: dict[str, Callable[[], Any]] = {
        "hf_generate": lambda: generate_baseline(policy, prep([obs])),
        "torch_kv_cache": lambda: decode_autoregressive(policy, prep([obs]), use_cache=True),
        "torch_eager_no_cache": lambda: decode_autoregressive(policy, prep([obs]), use_cache=False),
    }
    if policy.eos_id is None:
        fns["torch_parallel"] = lambda: decode_parallel(policy, prep([obs]))
    growth: dict[str, float] = {}

    def add_graph_runtime(name: str, rt: Any, mode: str) -> None:
        before = _rss_mb()
        rt.decode_ids(rt.io.inputs([obs]), mode=mode)  # sessions / engines load lazily
        growth[name] = _rss_mb() - before
        fns[name] = lambda: rt.decode_ids(rt.io.inputs([obs]), mode=mode)

    for mode in modes:
        add_graph_runtime(f"ort_{mode}", OnnxRuntime(export_dir, mode=mode, threads=ort_threads), mode)
    if engine_dir is not None:
        from deploy.runtimes.tensorrt import TensorRTRuntime

        for mode in modes:
            add_graph_runtime(f"tensorrt_{mode}", TensorRTRuntime(engine_dir, mode=mode), mode)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for i in range(warmup + iters):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    res = {k: {**_stats(v, h), **({"rss_growth_mb": growth[k]} if k in growth else {})} for k, v in times.items()}
    base = res["hf_generate"]["per_action_ms_p50"]
    return {
        "batch_size": 1, "horizon": h, "action_tokens": int(policy.num_action_tokens),
        "prefix_len": int(policy.prefix_len), "params": int(sum(p.numel() for p in policy.parameters())),
        "torch_weights_mb": sum(p.numel() * p.element_size() for p in policy.parameters()) / 2**20,
        "torch_threads": torch.get_num_threads(), "ort_threads": ort_threads or "default",
        "iters": iters, "runtimes": res, "peak_rss_mb": peak_rss_mb(),
        "speedup_vs_generate": {k: base / v["per_action_ms_p50"] for k, v in res.items() if k != "hf_generate"},
    }
