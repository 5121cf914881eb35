"""Per-action decoding latency of the VLA policy at batch 1: our KV-cached loop and parallel decoding
vs transformers `generate()` on the same weights; parameter count; peak RSS.

    python scripts/bench_policy.py --out benchmarks/policy.json [--config tiny]
        [--checkpoint runs/tiny/checkpoint] [--iters 30] [--threads 2] [--projectors] [--modes kv_cache,generate]

Modes (see `vla.model.benchmark`) run interleaved, one call each per iteration, so ratios are fair on
a shared machine.

`--projectors` adds the projector ablation's cost side: visual tokens and latency per projector type
(same model otherwise, random weights: latency does not depend on the weights for fixed-length bins).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla.model import PROJECTORS, VLAConfig, VLAPolicy  # noqa: E402
from vla.model.benchmark import DEFAULT_MODES, bench_decoding, random_weight_policy  # noqa: E402
from vla.policy_io import PolicyIO  # noqa: E402


def _obs(size: int = 128) -> dict:
    rng = np.random.default_rng(0)
    return {"agentview": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            "state": rng.normal(size=8).astype(np.float32), "instruction": "pick up the red cube"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/policy.json")
    ap.add_argument("--config", default="tiny", help="named model config or YAML path (default tiny)")
    ap.add_argument("--checkpoint", default=None, help="trained policy (default: random weights of --config)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--projectors", action="store_true", help="also time every projector type")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES), help="comma-separated, from: " + ", ".join(DEFAULT_MODES))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        policy, io = VLAPolicy.from_pretrained(args.checkpoint), PolicyIO.load(args.checkpoint)
    else:
        policy, io = random_weight_policy(VLAConfig.load(args.config))
    policy.to(args.device)
    result = {"config": args.checkpoint or args.config, "host": platform.node(), "cpu_count": os.cpu_count(),
              "torch": torch.__version__, **bench_decoding(policy, io, _obs(), iters=args.iters, modes=tuple(args.modes.split(",")))}
    if args.projectors:
        base = policy.cfg
        result["projectors"] = {}
        for name in sorted(PROJECTORS):
            cfg = dataclasses.replace(base, projector=dataclasses.replace(base.projector, type=name))
            p, p_io = random_weight_policy(cfg)
            r = bench_decoding(p.to(args.device), p_io, _obs(), iters=args.iters, modes=("kv_cache", "parallel"))
            result["projectors"][name] = {"visual_tokens": r["visual_tokens"], "params": r["params"],
                                          "kv_cache_per_action_ms_p50": r["modes"]["kv_cache"]["per_action_ms_p50"],
                                          "parallel_per_action_ms_p50": r["modes"]["parallel"]["per_action_ms_p50"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print("per-action ms p50 / p99: " + ", ".join(
        f"{k} {v['per_action_ms_p50']:.2f} / {v['per_action_ms_p99']:.2f}" for k, v in result["modes"].items()))
    for base in ("generate", "generate_inference_mode"):
        if result[f"speedup_vs_{base}"]:
            print(f"speedup vs {base}: " + ", ".join(f"{k} {v:.2f}x" for k, v in result[f"speedup_vs_{base}"].items()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
