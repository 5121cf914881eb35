"""Control under a policy slower than the tick: synchronous vs asynchronous inference (switch, ensemble,
prefix-forced decoding) over the real-time ZeroMQ bridge, at injected latencies of k control periods.

    .venv/bin/python scripts/bench_async.py --checkpoint runs/quickstart/onnx --runtime onnx \\
        --tasks ReachCube PickCube --latencies 0 1 2 4 --episodes 50 --workers 4 --out benchmarks/async.json

Each cell (task, latency, mode) runs `vla bridge --task T` (real time, the sim's control rate) in a child
process and `vla control --async --splice M --inject-latency-ms L` in another, on the same episode seeds in
every cell (paired). Latency k periods means the chunk is ready at the k-th tick after its observation:
every inference is padded to k * period - margin ms (--margin-ms, default 10: the loop observes ~2 ms after
the robot's tick, so a chunk taking exactly k periods would miss the k-th tick). k = 0 injects nothing.
With --clock step the cells are `vla eval --delay-steps k --splice M` instead: the sim's step clock,
deterministic and unpaced, the chunk delivered exactly k steps after its observation ("sync": the arm holds
k steps, then plays the chunk).
Resumable: a cell's episode reports are written atomically to <out dir>/<out stem>_cells/ and a re-run
skips finished cells. Writes the JSON summary (success with Wilson 95% interval, time to success, seam
jerk, inference latency, holds) and a plot next to it. `prefix` cells need an autoregressive token policy,
or a parallel one trained with `action.prefix_conditioning` (`vla control` refuses them otherwise; the cell
is recorded as skipped with the reason).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla.cli.quickstart import _bridge_hz as control_hz  # noqa: E402
from vla.cli.quickstart import _wait_for_endpoint as wait_endpoint  # noqa: E402
from vla.evaluation import wilson_interval  # noqa: E402
from vla.io import atomic_write_json, read_json  # noqa: E402

MODES = ("sync", "switch", "ensemble", "prefix")


def wilson(k: int, n: int) -> list[float]:
    return [0.0, 1.0] if n == 0 else list(wilson_interval(k, n))


def skipped_cell(out: Path, name: str, task: str, k: int, mode: str, r: subprocess.CompletedProcess) -> dict:
    """A failed child: a prefix cell the policy cannot run is recorded as skipped (with vla's reason), else an error."""
    err = (r.stderr.strip().splitlines() or ["?"])[-1]
    if mode == "prefix" and "splice='prefix'" in err:
        cell = {"task": task, "latency_periods": k, "mode": mode, "skipped": err}
        atomic_write_json(out, cell)
        return cell
    raise RuntimeError(f"cell {name} failed (exit {r.returncode}): {err}")


def run_cell(args: argparse.Namespace, cells: Path, task: str, k: int, mode: str, image_size: int) -> dict:
    name = f"{task}_lat{k}_{mode}"
    out = cells / f"{name}.json"
    if out.is_file():
        return read_json(out, f"{out}: cell report")
    if args.clock == "step":
        return run_step_cell(args, cells, name, task, k, mode, image_size)
    hz = control_hz(task)
    latency_ms = max(0.0, k * 1000.0 / hz - args.margin_ms) if k else 0.0
    log = cells / f"{name}.bridge.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    py = [sys.executable, "-m", "vla.cli"]
    with open(log, "w") as f:
        bridge = subprocess.Popen(py + ["bridge", "--task", task, "--bind", "tcp://127.0.0.1:*", "--image-size",
                                        str(image_size)], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        endpoint = wait_endpoint(bridge, log, timeout_s=180.0)
        argv = py + ["control", "--runtime", args.runtime, "--checkpoint", args.checkpoint, "--connect", endpoint,
                     "--episodes", str(args.episodes), "--seed", str(args.seed), "--timeout", "5",
                     "--threads", "1", "--out", str(cells / f"{name}.episodes.json")]
        if latency_ms:
            argv += ["--inject-latency-ms", f"{latency_ms:g}"]
        if mode != "sync":
            argv += ["--async", "--splice", mode]
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
    finally:
        bridge.terminate()
        try:
            bridge.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bridge.kill()
    if r.returncode != 0:
        return skipped_cell(out, name, task, k, mode, r)
    eps = read_json(cells / f"{name}.episodes.json", f"vla control wrote no report for {name}")["episodes"]
    cell = summarize(task, k, mode, latency_ms, hz, eps)
    cell["wall_s"] = round(wall, 1)
    atomic_write_json(out, cell)
    return cell


def run_step_cell(args: argparse.Namespace, cells: Path, name: str, task: str, k: int, mode: str,
                  image_size: int) -> dict:
    """The same cell on the sim's step clock: `vla eval --delay-steps k --splice mode` (deterministic)."""
    out, report = cells / f"{name}.json", cells / f"{name}.eval.json"
    argv = [sys.executable, "-m", "vla.cli", "eval", "--runtime", args.runtime, "--checkpoint", args.checkpoint,
            "--task", task, "--episodes", str(args.episodes), "--seed", str(args.seed), "--threads", "1",
            "--image-size", str(image_size), "--delay-steps", str(k), "--splice", mode, "--no-progress",
            "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        return skipped_cell(out, name, task, k, mode, r)
    rep = read_json(report, f"vla eval wrote no report for {name}")
    hz = control_hz(task)
    n, s = rep["episodes"], rep["successes"]
    lengths = [e["length"] for e in rep["per_episode"] if e["success"]]
    cell = {"task": task, "latency_periods": k, "mode": mode, "clock": "step", "hz": hz, "episodes": n,
            "successes": s, "success_rate": s / n, "success_ci95": wilson(s, n),
            "time_to_success_s": sum(lengths) / len(lengths) / hz if lengths else None,
            "seam_jerk": rep["seam_jerk"], "seams": rep["seams"], "inference_ms_p50": rep["inference_ms_p50"],
            "invalid_chunks": rep["invalid_chunks"], "wall_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out, cell)
    return cell


def summarize(task: str, k: int, mode: str, latency_ms: float, hz: float, eps: list[dict]) -> dict:
    import numpy as np

    n, s = len(eps), sum(e["success"] for e in eps)
    tts = [e["duration_s"] for e in eps if e["success"]]
    seams = [e["seam_jerk"] for e in eps if e["seam_jerk"] is not None]
    nseams = sum(e["seams"] for e in eps)
    lat = [e["inference_ms"]["p50_ms"] for e in eps if e["inference_ms"]]
    counts: dict[str, int] = {}
    for e in eps:
        for key, v in e["counts"].items():
            counts[key] = counts.get(key, 0) + v
    delays: dict[str, int] = {}
    for e in eps:
        for key, v in e["delay_ticks"].items():
            delays[key] = delays.get(key, 0) + v
    # seam jerk pooled over every seam of every episode (episodes weighted by their number of seams)
    pooled = (sum(e["seam_jerk"] * e["seams"] for e in eps if e["seam_jerk"] is not None) / nseams) if nseams else None
    return {"task": task, "latency_periods": k, "mode": mode, "injected_ms": latency_ms, "hz": hz,
            "episodes": n, "successes": s, "success_rate": s / n if n else 0.0, "success_ci95": wilson(s, n),
            "time_to_success_s": float(np.mean(tts)) if tts else None,
            "seam_jerk": pooled, "seam_jerk_episode_mean": float(np.mean(seams)) if seams else None, "seams": nseams,
            "inference_ms_p50": float(np.median(lat)) if lat else None, "delay_ticks": delays, "counts": counts}


def table(cells: list[dict], tasks: list[str], latencies: list[int], modes: list[str]) -> str:
    """Markdown: one row per (task, latency), per mode 'successes/episodes (seam jerk)'."""
    by = {(c["task"], c["latency_periods"], c["mode"]): c for c in cells}
    lines = ["| task | latency (periods) | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for task in tasks:
        for k in latencies:
            row = []
            for m in modes:
                c = by.get((task, k, m))
                if c is None or "skipped" in c:
                    row.append("n/a")
                    continue
                jerk = "-" if c["seam_jerk"] is None else f"{c['seam_jerk'] * 1e3:.2f}"
                tts = "" if c["time_to_success_s"] is None else f", {c['time_to_success_s']:.1f} s"
                row.append(f"{c['successes']}/{c['episodes']} ({jerk}{tts})")
            lines.append(f"| {task} | {k} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(cells: list[dict], path: Path, tasks: list[str], modes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(5 * len(tasks), 7), squeeze=False)
    for j, task in enumerate(tasks):
        for mode in modes:
            rows = sorted((c for c in cells if c["task"] == task and c["mode"] == mode and "skipped" not in c),
                          key=lambda c: c["latency_periods"])
            if not rows:
                continue
            x = [c["latency_periods"] for c in rows]
            y = [c["success_rate"] for c in rows]
            lo = [c["success_rate"] - c["success_ci95"][0] for c in rows]
            hi = [c["success_ci95"][1] - c["success_rate"] for c in rows]
            axes[0][j].errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=mode)
            jx = [c["latency_periods"] for c in rows if c["seam_jerk"] is not None]
            jy = [c["seam_jerk"] for c in rows if c["seam_jerk"] is not None]
            axes[1][j].plot(jx, jy, marker="o", label=mode)
        axes[0][j].set(title=f"{task}: success (95% CI)", xlabel="inference latency (control periods)",
                       ylim=(-0.05, 1.05))
        axes[1][j].set(title=f"{task}: seam jerk", xlabel="inference latency (control periods)",
                       ylabel="mean squared action change at seams")
        axes[1][j].set_yscale("log")
        for ax in axes[:, j]:
            ax.legend()
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint (torch) or export directory (onnx)")
    p.add_argument("--runtime", default="onnx", choices=["torch", "onnx"])
    p.add_argument("--tasks", nargs="+", default=["ReachCube", "PickCube"])
    p.add_argument("--latencies", type=int, nargs="+", default=[0, 1, 2, 4], help="in control periods")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=20000, help="first episode seed (the same in every cell)")
    p.add_argument("--margin-ms", type=float, default=10.0)
    p.add_argument("--image-size", type=int, default=None, help="camera size (default: the policy's)")
    p.add_argument("--clock", choices=["realtime", "step"], default="realtime",
                   help="realtime: the ZeroMQ bridge at the sim's rate; step: `vla eval --delay-steps` on the sim's "
                        "step clock (deterministic, unpaced; the latency is exactly k steps)")
    p.add_argument("--workers", type=int, default=2, help="cells run at once (each: a bridge + a control process)")
    p.add_argument("--out", default="benchmarks/async.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    cells_dir = out.parent / f"{out.stem}_cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    image_size = args.image_size or _policy_image_size(args)
    jobs = [(t, k, m) for t in args.tasks for k in args.latencies for m in args.modes]
    done = 0

    def one(job):
        nonlocal done
        cell = run_cell(args, cells_dir, *job, image_size)
        done += 1
        tag = cell.get("skipped") or f"{cell['successes']}/{cell['episodes']}, seam jerk {cell['seam_jerk']}"
        print(f"[{done}/{len(jobs)}] {job[0]} latency {job[1]} {job[2]}: {tag}", flush=True)
        return cell

    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        cells = list(pool.map(one, jobs))
    result = {"what": "sync vs async chunk inference over the real-time bridge at injected latencies",
              "command": "python scripts/bench_async.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "clock": args.clock,
              "checkpoint": args.checkpoint, "runtime": args.runtime, "episodes": args.episodes, "seed": args.seed,
              "margin_ms": args.margin_ms, "cells": cells}
    atomic_write_json(out, result)
    plot(cells, out.with_suffix(".png"), args.tasks, args.modes)
    md = table(cells, args.tasks, args.latencies, args.modes)
    out.with_suffix(".md").write_text(md)
    print(md + f"wrote {out}, {out.with_suffix('.png')} and {out.with_suffix('.md')} "
          "(cells: successes/episodes (seam jerk x 1e3, mean time to success))")
    return 0


def _policy_image_size(args: argparse.Namespace) -> int:
    from deploy.manifest import load_manifest, policy_dir
    from vla.policy_io import PolicyIO

    d = Path(args.checkpoint)
    if args.runtime == "onnx":
        d = policy_dir(d, load_manifest(d))
    return PolicyIO.load(d).cfg.vision.image_size


if __name__ == "__main__":
    raise SystemExit(main())
