"""Decoding-latency benchmark on one set of weights (used by scripts/bench_policy.py).

    policy = random_weight_policy(VLAConfig.from_yaml("configs/model/tiny.yaml"))
    result = bench_decoding(policy, obs, iters=30)
    result["modes"]["parallel"]["per_action_ms_p50"], result["speedup_vs_generate"]

Modes: `generate` (transformers `generate()` with a logits processor, how OpenVLA's predict_action
runs), `kv_cache` (our KV-cached greedy loop), `no_cache` (recompute the whole sequence per token),
`parallel` (all action slots in one forward pass). Each mode times prepare + decode for batch 1;
per-action latency is the chunk latency divided by the H actions it yields.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vla.bench import peak_rss_mb
from vla.model.decoding import decode_autoregressive, decode_parallel, generate_baseline


def _time(fn: Callable[[], Any], iters: int, warmup: int, cuda: bool) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()  # the decoded ids are on the host only after the kernels finish
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def random_weight_policy(cfg: Any, instruction: str = "pick up the red cube") -> Any:
    """A policy with seeded random weights and random normalizers: timing needs shapes, not training."""
    from vla.model.policy import VLAPolicy
    from vla.normalization import Normalizer, NormStats

    torch.manual_seed(0)
    policy = VLAPolicy.from_config(cfg, instructions=[instruction])
    rng = np.random.default_rng(0)
    action = Normalizer(NormStats.fit(rng.normal(size=(100, cfg.action.dim))))
    state = Normalizer(NormStats.fit(rng.normal(size=(100, cfg.state_dim))), mask=np.ones(cfg.state_dim, dtype=bool))
    policy.set_normalizers(action, state if cfg.use_state else None)
    return policy.eval()


@torch.no_grad()
def bench_decoding(policy: Any, obs: dict, iters: int = 30, warmup: int = 3,
                   modes: tuple[str, ...] = ("generate", "kv_cache", "no_cache", "parallel")) -> dict[str, Any]:
    policy.eval()
    h = policy.cfg.action.horizon
    fns = {
        "generate": lambda: generate_baseline(policy, policy.prepare_observations([obs])),
        "kv_cache": lambda: decode_autoregressive(policy, policy.prepare_observations([obs]), use_cache=True),
        "no_cache": lambda: decode_autoregressive(policy, policy.prepare_observations([obs]), use_cache=False),
        "parallel": lambda: decode_parallel(policy, policy.prepare_observations([obs])),
    }
    unknown = set(modes) - set(fns)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; available: {sorted(fns)}")
    res: dict[str, Any] = {}
    for m in modes:
        ms = _time(fns[m], iters, warmup, policy.action_slots.is_cuda)
        res[m] = {"chunk_ms_p50": float(np.percentile(ms, 50)), "chunk_ms_p99": float(np.percentile(ms, 99)),
                  "per_action_ms_p50": float(np.percentile(ms, 50)) / h,
                  "per_action_ms_p99": float(np.percentile(ms, 99)) / h}
    speedup = {}
    if "generate" in res:
        base = res["generate"]["per_action_ms_p50"]
        speedup = {m: base / r["per_action_ms_p50"] for m, r in res.items() if m != "generate"}
    return {
        "batch_size": 1,
        "horizon": h,
        "action_tokens": policy.num_action_tokens,
        "visual_tokens": policy.num_visual_tokens,
        "prefix_len": policy.prefix_len,
        "params": int(sum(p.numel() for p in policy.parameters())),
        "device": str(policy.action_slots.device),
        "torch_threads": torch.get_num_threads(),
        "modes": res,
        "speedup_vs_generate": speedup,
        "peak_rss_mb": peak_rss_mb(),
    }
