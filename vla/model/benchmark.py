"""Decoding-latency benchmark on one set of weights (used by scripts/bench_policy.py).

    policy, io = random_weight_policy(VLAConfig.load("tiny"))
    result = bench_decoding(policy, io, obs, iters=30)
    result["modes"]["parallel"]["per_action_ms_p50"], result["speedup_vs_generate"]

Modes: `generate` (transformers `generate()` with a logits processor, how OpenVLA's predict_action
runs), `generate_inference_mode` (the same inside `torch.inference_mode()`, which our loops use),
`kv_cache` (our KV-cached greedy loop: the lean layer loop where supported), `kv_cache_lm_call` (the
same cache, but the whole causal LM called per token: what the layer loop saves), `no_cache`
(recompute the whole sequence per token), `parallel` (all action slots in one forward pass). Each mode
times prepare + decode for batch 1; the modes run round-robin within every iteration, so a load spike
on a shared machine hits all of them alike. Per-action latency is the chunk latency over its H actions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vla.bench import peak_rss_mb
from vla.model.decoding import (
    decode_autoregressive,
    decode_parallel,
    generate_baseline,
    layer_loop_unsupported,
    to_tensors,
)


def _time_interleaved(fns: dict[str, Callable[[], Any]], iters: int, warmup: int, cuda: bool) -> dict[str, list[float]]:
    """ms per call of each fn; one call of every fn per iteration (round-robin), after `warmup` rounds."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()  # the decoded ids are on the host only after the kernels finish
            if i >= warmup:
                out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def random_weight_policy(cfg: Any, instruction: str = "pick up the red cube") -> tuple[Any, Any]:
    """(policy, io) with seeded random weights and random normalizers: timing needs shapes, not training."""
    from vla.model.policy import VLAPolicy
    from vla.normalization import Normalizer, NormStats

    torch.manual_seed(0)
    policy = VLAPolicy.from_config(cfg, instructions=[instruction])
    rng = np.random.default_rng(0)
    action = Normalizer(NormStats.fit(rng.normal(size=(100, cfg.action.dim))))
    norms = {"action": action}
    if cfg.use_state:
        norms["observation.state"] = Normalizer(NormStats.fit(rng.normal(size=(100, cfg.state_dim))),
                                                mask=np.ones(cfg.state_dim, dtype=bool))
    return policy.eval(), policy.make_io(norms)


def _generate_inference_mode(policy: Any, inputs: dict) -> Any:
    with torch.inference_mode():
        return generate_baseline(policy, inputs)


DEFAULT_MODES = ("generate", "generate_inference_mode", "kv_cache", "kv_cache_lm_call", "no_cache", "parallel")


@torch.no_grad()
def bench_decoding(policy: Any, io: Any, obs: dict, iters: int = 30, warmup: int = 3,
                   modes: tuple[str, ...] = DEFAULT_MODES) -> dict[str, Any]:
    policy.eval()
    h = policy.cfg.action.horizon
    def prep(batch: list[dict]) -> dict:
        return to_tensors(io.inputs(batch), policy.action_slots.device)

    fns = {
        "generate": lambda: generate_baseline(policy, prep([obs])),
        "generate_inference_mode": lambda: _generate_inference_mode(policy, prep([obs])),
        "kv_cache": lambda: decode_autoregressive(policy, prep([obs]), use_cache=True),
        "kv_cache_lm_call": lambda: decode_autoregressive(policy, prep([obs]), use_cache=True, layer_loop=False),
        "no_cache": lambda: decode_autoregressive(policy, prep([obs]), use_cache=False),
        "parallel": lambda: decode_parallel(policy, prep([obs])),
    }
    unknown = set(modes) - set(fns)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; available: {sorted(fns)}")
    times = _time_interleaved({m: fns[m] for m in modes}, iters, warmup, policy.action_slots.is_cuda)
    res: dict[str, Any] = {}
    for m, ms in times.items():
        res[m] = {"chunk_ms_p50": float(np.percentile(ms, 50)), "chunk_ms_p99": float(np.percentile(ms, 99)),
                  "per_action_ms_p50": float(np.percentile(ms, 50)) / h,
                  "per_action_ms_p99": float(np.percentile(ms, 99)) / h}
    def speedup_vs(base_mode: str) -> dict[str, float]:
        if base_mode not in res:
            return {}
        base = res[base_mode]["per_action_ms_p50"]
        return {m: base / r["per_action_ms_p50"] for m, r in res.items() if not m.startswith("generate")}
    return {
        "batch_size": 1,
        "horizon": h,
        "action_tokens": policy.num_action_tokens,
        "visual_tokens": policy.num_visual_tokens,
        "prefix_len": policy.prefix_len,
        "params": int(sum(p.numel() for p in policy.parameters())),
        "device": str(policy.action_slots.device),
        "torch_threads": torch.get_num_threads(),
        "layer_loop": layer_loop_unsupported(policy.lm) or "used",
        "timing": "modes interleaved round-robin per iteration",
        "modes": res,
        "speedup_vs_generate": speedup_vs("generate"),
        "speedup_vs_generate_inference_mode": speedup_vs("generate_inference_mode"),
        "peak_rss_mb": peak_rss_mb(),
    }
