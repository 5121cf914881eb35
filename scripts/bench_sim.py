"""Benchmark the sim: physics steps/s, env steps/s (both cameras) at 128 and 224 px, overhead vs raw MuJoCo
doing the same stepping + rendering, and scripted-expert success over 50 seeds per task.

    .venv/bin/python scripts/bench_sim.py --out benchmarks/sim.json            # ~5 min on 2 CPU cores
    .venv/bin/python scripts/bench_sim.py --seeds 10 --skip-hq --out /tmp/sim.json   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import sim
from sim import bench


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/sim.json")
    p.add_argument("--task", default="PickCube", help="task for the rate measurements")
    p.add_argument("--steps", type=int, default=60, help="env steps per rate measurement")
    p.add_argument("--repeats", type=int, default=3, help="best of N (the machine is shared)")
    p.add_argument("--seeds", type=int, default=50, help="expert seeds per task (0 skips the expert runs)")
    p.add_argument(
        "--noise", type=float, default=0.005, help="also measure the expert with this noise (m); 0 skips"
    )
    p.add_argument("--skip-hq", action="store_true", help="skip the visual-meshes + shadows rate")
    args = p.parse_args()

    result: dict = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        },
        "task": args.task,
        "physics": bench.physics_rate(args.task),
        "rates": {},
    }
    configs = [("128", 128, {}), ("224", 224, {})]
    if not args.skip_hq:
        configs.append(("128_visual_meshes_shadows", 128, {"robot_meshes": "visual", "shadows": True}))
    for label, size, overrides in configs:
        steps = args.steps if not overrides else max(10, args.steps // 4)
        result["rates"][label] = {
            "image_size": size,
            **overrides,
            **bench.step_rates(args.task, size, steps, repeats=args.repeats, **overrides),
        }
        print(label, json.dumps(result["rates"][label]))
    result["expert"] = {}
    for task in sim.list_tasks() if args.seeds > 0 else []:
        r = {"noise_0": bench.expert_success(task, seeds=args.seeds)}
        if args.noise > 0:
            r[f"noise_{args.noise}"] = bench.expert_success(task, seeds=args.seeds, noise=args.noise)
        r["heldout_noise_0"] = bench.expert_success(task, seeds=args.seeds, split="heldout")
        result["expert"][task] = r
        print(task, {k: (v["success_rate"], v["mean_length"]) for k, v in r.items()})

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
