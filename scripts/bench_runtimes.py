"""Per-action latency (p50/p99) and peak memory of every runtime against transformers `generate()`.

    python scripts/bench_runtimes.py --out benchmarks/runtimes.json [--config tiny]
        [--checkpoint runs/tiny/checkpoint] [--iters 30] [--threads 2] [--engines engines/tiny]

Exports the policy to ONNX in a temporary directory, then times torch (HF generate, KV-cached loop,
no-cache eager, parallel) and ONNX Runtime (autoregressive, parallel) at batch 1 on the same weights;
TensorRT too with --engines (a `vla export tensorrt` dir built from the same checkpoint, GPU only).
Random weights by default: latency does not depend on them for fixed-length bins.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.bench import bench_runtimes  # noqa: E402
from deploy.export import export_onnx  # noqa: E402
from vla.io import atomic_write_json  # noqa: E402
from vla.model import VLAConfig, VLAPolicy  # noqa: E402
from vla.model.benchmark import random_weight_policy  # noqa: E402
from vla.policy_io import PolicyIO  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/runtimes.json")
    ap.add_argument("--config", default="tiny", help="named model config or YAML path (default tiny)")
    ap.add_argument("--checkpoint", default=None, help="trained policy (default: random weights of --config)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch and ORT intra-op threads (0 = their defaults)")
    ap.add_argument("--engines", default=None, help="TensorRT engine dir (GPU only)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        policy, io = VLAPolicy.from_pretrained(args.checkpoint), PolicyIO.load(args.checkpoint)
    else:
        policy, io = random_weight_policy(VLAConfig.load(args.config))
    rng = np.random.default_rng(0)
    obs = {c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in policy.cfg.cameras}
    obs.update(state=rng.normal(size=policy.cfg.state_dim or 8).astype(np.float32), instruction="pick up the red cube")
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(policy, io, Path(tmp) / "onnx")
        result = bench_runtimes(policy, io, Path(tmp) / "onnx", obs, iters=args.iters, ort_threads=args.threads,
                                engine_dir=args.engines)
    import onnxruntime

    result.update(config=args.checkpoint or args.config, machine=platform.machine(), python=platform.python_version(),
                  torch=torch.__version__, onnxruntime=onnxruntime.__version__, cpu_count=__import__("os").cpu_count())
    atomic_write_json(args.out, result)
    print(json.dumps({k: round(v, 2) for k, v in result["speedup_vs_generate"].items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
