"""How many actions of each chunk should run before the policy re-plans? Closed-loop success per value.

    .venv/bin/python scripts/sweep_execute_steps.py --checkpoint runs/quickstart/policy/checkpoint \
        --tasks ReachCube PickCube --episodes 50 --seed 10000 --out benchmarks/execute_steps.json

For every task and every k in --steps (default 1..H), `vla eval`'s loop runs the same episodes (seeds
--seed ...) executing the first k actions of each predicted chunk, then re-planning. k = H is open loop over
the chunk; k = 1 re-plans every control step. Writes JSON (success, Wilson 95% CI, mean episode length,
policy calls per episode) and a PNG of success against k next to it. The value to ship goes in the model
config as `action.execute_steps`, which `vla eval` and `vla control` use by default.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def sweep(policy: Any, make_env: Any, steps: list[int], episodes: int, seed: int,
          progress: bool = False) -> list[dict[str, Any]]:
    """One `vla.evaluation.evaluate` per k on the same seeds -> rows {execute_steps, success_rate, ...}."""
    from vla.evaluation import ChunkedPolicy, evaluate

    rows = []
    for k in steps:
        runner = ChunkedPolicy(policy, execute_steps=k)
        rep = evaluate(runner, make_env, episodes=episodes, seed=seed, show_progress=progress)
        rows.append({"execute_steps": k, "success_rate": rep["success_rate"], "successes": rep["successes"],
                     "episodes": rep["episodes"], "success_ci95": rep["success_ci95"],
                     "mean_length": rep["mean_length"],
                     "plans_per_episode": len(runner.inference_ms) / rep["episodes"]})
    return rows


def plot(results: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for task, rows in results.items():
        ks = [r["execute_steps"] for r in rows]
        rate = [r["success_rate"] for r in rows]
        lo = [r["success_rate"] - r["success_ci95"][0] for r in rows]
        hi = [r["success_ci95"][1] - r["success_rate"] for r in rows]
        ax.errorbar(ks, rate, yerr=[lo, hi], marker="o", capsize=3, label=task)
    ax.set_xlabel("actions executed per chunk (execute_steps)")
    ax.set_ylabel("success rate (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(sorted({r["execute_steps"] for rows in results.values() for r in rows}))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from vla.io import atomic_write_png

    try:
        atomic_write_png(path, fig, dpi=120)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a `vla train` checkpoint directory")
    ap.add_argument("--tasks", nargs="+", default=["ReachCube", "PickCube"])
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="values of k (default 1..H)")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=10000, help="episode i uses seed + i (default 10000)")
    ap.add_argument("--heldout", action="store_true", help="held-out paraphrases and object positions")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="JSON report (a PNG plot is written next to it)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    import sim
    from vla.model.runtime import TorchRuntime

    torch.set_num_threads(args.threads)
    unknown = [t for t in args.tasks if t not in sim.list_tasks()]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; available: {sim.list_tasks()}")
    policy = TorchRuntime.from_checkpoint(args.checkpoint)  # any vla.runtime.Runtime works here
    h = policy.cfg.action.horizon
    steps = args.steps or list(range(1, h + 1))
    bad = [k for k in steps if not 1 <= k <= h]
    if bad:
        raise SystemExit(f"--steps {bad}: each must be in [1, horizon={h}]")
    split = "heldout" if args.heldout else "train"
    size = int(policy.cfg.vision.image_size)
    results = {}
    for task in args.tasks:
        results[task] = sweep(policy, lambda task=task: sim.make(task, split=split, image_size=size), steps,
                              args.episodes, args.seed, progress=not args.no_progress)
        for r in results[task]:
            print(f"{task} [{split}] execute_steps={r['execute_steps']}: {r['successes']}/{r['episodes']} "
                  f"mean length {r['mean_length']:.1f}, {r['plans_per_episode']:.1f} plans/episode", flush=True)
    report = {"checkpoint": str(args.checkpoint), "horizon": h, "configured": policy.cfg.action.execute_steps,
              "split": split, "seed": args.seed, "episodes": args.episodes, "results": results}
    print(json.dumps({t: {r["execute_steps"]: r["success_rate"] for r in rows} for t, rows in results.items()}))
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(args.out, report)
        plot(results, Path(args.out).with_suffix(".png"), f"{Path(args.checkpoint).name} [{split}], "
             f"{args.episodes} episodes from seed {args.seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
