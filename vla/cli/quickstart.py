"""`vla quickstart`: the whole path on the embedded default, in one command.

    vla quickstart --out runs/quickstart                 # demos -> tokenizer fit -> train -> eval -> export -> control
    vla quickstart --out runs/qs --smoke                 # a 2-minute pass over every stage (tiny numbers)
    vla quickstart --out runs/five --tasks all           # the five-task recipe (configs/train/five_tasks.yaml)

Stages (each writes under --out and is skipped when its output already exists, so a re-run resumes):
1. demos:     scripted-expert rollouts per task with DART noise, LeRobot v3.0 (`vla sim demos`), written by
              --workers processes in parallel as dataset parts; each scene once per cube where the task takes
              a target choice (`--every-target`: contrastive demos, so the policy must read the colour word),
              and 5 expert steps past the first success (`--hold-steps`: the demos show staying at the goal)
2. tokenizer: normalization + action-token round-trip report on those demos (`vla tokenizer fit`)
3. train:     the tiny default policy on all tasks' demos (`vla train --config tiny`)
4. eval:      closed-loop success and latency per task (`vla eval`), the scripted expert on the same seeds
              (`--expert`: the score the policy is measured against), and the held-out split (unseen cube
              positions and instruction paraphrases, `vla eval --heldout`)
5. export:    ONNX graphs of the checkpoint (`vla export onnx`), evaluated again on the same episodes through
              ONNX Runtime (`vla eval --runtime onnx`): the deployable artefact, measured
6. control:   the exported policy drives each task's sim over ZeroMQ in real time (`vla bridge` at the sim's
              control rate in a child process, `vla control --runtime onnx`: deadlines, watchdog, safety limits)
All of it is summarized in summary.json (per-stage seconds included) and as a per-task table in summary.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

DEFAULT_TASKS = ("ReachCube", "PickCube")
# rollouts per task (ReachCube/PickCube: each scene once per cube): the measured recipes (BENCHMARKS.md)
DEFAULT_DEMOS = {"ReachCube": 3000, "PickCube": 400}
OTHER_DEMOS = 1000
ALL_TASKS_CONFIG = "five_tasks"  # the training config `--tasks all` uses unless --train-config names one


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="run demos -> train -> eval -> export -> control on the embedded default",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/quickstart", help="run directory (default runs/quickstart)")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS),
                   help=f"sim tasks (default {' '.join(DEFAULT_TASKS)}); 'all': every registered task, trained with "
                        f"the {ALL_TASKS_CONFIG} config unless --train-config is given")
    p.add_argument("--demos", type=int, nargs="+", default=None,
                   help="expert episodes: one number for every task or one per task (default "
                        + ", ".join(f"{t} {n}" for t, n in DEFAULT_DEMOS.items()) + f", any other task {OTHER_DEMOS}; "
                        "with a few hundred scenes the policy memorizes them instead of finding the named cube)")
    p.add_argument("--demo-noise", type=float, default=0.01,
                   help="std (m) of the expert's executed-action noise; labels stay clean (DART; default 0.01)")
    p.add_argument("--demo-targets", choices=("every", "one"), default="every",
                   help="'every': record each scene once per cube as the named target where the task allows it "
                        "(ReachCube, PickCube; default); 'one': one rollout per scene")
    p.add_argument("--demo-hold", type=int, default=5,
                   help="expert steps recorded after each demo first succeeds (the expert settling on its goal, so "
                        "the policy learns to stay there; `vla sim demos --hold-steps`; default 5)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel demo-writing processes per task, one dataset part each (default: up to 2)")
    p.add_argument("--train-config", default=None,
                   help=f"named training config or YAML path (default tiny; {ALL_TASKS_CONFIG} with --tasks all)")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (default: the config's)")
    p.add_argument("--eval-episodes", type=int, default=50, help="evaluation episodes per task (default 50)")
    p.add_argument("--no-heldout", action="store_true", help="skip the held-out split's evaluation")
    p.add_argument("--control-episodes", type=int, default=5,
                   help="episodes per task of the real-time ZeroMQ control stage (default 5; 0 skips the stage)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true",
                   help="tiny numbers (4 demos, 30 steps, 2 eval episodes): checks every stage runs, not success")
    p.set_defaults(func=run)


class StageTimes:
    """Seconds per stage, kept in out/stage_seconds.json as each stage finishes: a resumed run keeps the times of
    the stages an earlier invocation ran, so summary.json reports what the whole recipe cost."""

    path: Path | None = None
    seconds: dict[str, float] = {}

    @classmethod
    def open(cls, out: Path) -> None:
        cls.path = out / "stage_seconds.json"
        cls.seconds = json.loads(cls.path.read_text()) if cls.path.is_file() else {}

    @classmethod
    def record(cls, name: str, seconds: float) -> None:
        cls.seconds[name] = seconds
        if cls.path is not None:
            from vla.io import atomic_write_json

            atomic_write_json(cls.path, cls.seconds)


def _stage(name: str, argv: list[str]) -> None:
    from vla.cli import main

    print(f"\n=== {name}: vla {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"quickstart stage {name!r} failed with exit code {rc}")
    StageTimes.record(name, time.perf_counter() - t0)
    print(f"=== {name} done in {StageTimes.seconds[name]:.1f} s", flush=True)


def _fresh(report: Path, *inputs: Path) -> bool:
    """True when `report` exists and is newer than every input (a re-run reuses it; a retrained or re-exported
    policy is evaluated again)."""
    return report.is_file() and all(report.stat().st_mtime >= i.stat().st_mtime for i in inputs if i.exists())


def _demo_parts(task: str, root: Path, episodes: int, workers: int, seed: int, noise: float,
                image_size: int, every_target: bool = False, hold_steps: int = 0) -> list[Path]:
    """Write `episodes` expert demos as `workers` dataset parts (root/part{k}) in parallel processes.

    Part k starts at seed + k * 10_000, so parts never share a scene; finished parts are kept on a re-run.
    """
    workers = max(1, min(workers, episodes))
    parts = [root / f"part{k}" for k in range(workers)]
    counts = [episodes // workers + (k < episodes % workers) for k in range(workers)]
    todo = [k for k, p in enumerate(parts) if not (p / "meta" / "info.json").is_file()]
    if not todo:
        print(f"demos for {task} exist at {root}: skipped")
        return parts
    for k in todo:  # a part interrupted mid-write is redone from scratch
        if parts[k].exists():
            shutil.rmtree(parts[k])
    argvs = [["sim", "demos", "--task", task, "--episodes", str(counts[k]), "--out", str(parts[k]),
              "--seed", str(seed + 10_000 * k), "--noise", str(noise), "--image-size", str(image_size), "--hold-steps", str(hold_steps)]
             + ["--every-target"] * every_target
             for k in todo]
    print(f"\n=== demos {task}: {len(todo)} process(es): " + " | ".join("vla " + " ".join(a) for a in argvs), flush=True)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "vla.cli", *a]) for a in argvs]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"quickstart stage 'demos {task}' failed with exit codes {codes}")
    StageTimes.record(f"demos {task}", time.perf_counter() - t0)
    print(f"=== demos {task} done in {StageTimes.seconds[f'demos {task}']:.1f} s", flush=True)
    return parts


def _control_stage(task: str, policy_dir: Path, report: Path, episodes: int, seed: int,
                   image_size: int) -> dict:
    """`vla bridge --task` (real time, the sim's control rate) in a child process + `vla control` here."""
    import numpy as np

    log = report.with_suffix(".bridge.log")
    argv = ["bridge", "--task", task, "--bind", "tcp://127.0.0.1:*", "--image-size", str(image_size)]
    print(f"\n=== bridge {task}: vla {' '.join(argv)} (log {log})", flush=True)
    with open(log, "w") as f:
        bridge = subprocess.Popen([sys.executable, "-m", "vla.cli", *argv], stdout=f, stderr=subprocess.STDOUT)
    try:
        endpoint = _wait_for_endpoint(bridge, log)
        _stage(f"control {task}", ["control", "--runtime", "onnx", "--checkpoint", str(policy_dir),
                                   "--connect", endpoint, "--episodes", str(episodes), "--seed", str(seed),
                                   "--timeout", "5", "--out", str(report)])
    finally:
        bridge.terminate()  # SIGTERM: the bridge stops serving and exits
        try:
            bridge.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bridge.kill()
    eps = json.loads(report.read_text())["episodes"]
    periods = [e["period"] for e in eps if e["period"]]
    counts = dict(sum((Counter(e["counts"]) for e in eps), Counter()))
    # the report keeps per-episode period stats only: the median episode's p50 and the worst episode's p99
    return {"episodes": len(eps), "successes": sum(e["success"] for e in eps), "hz": _bridge_hz(task),
            "steps": [e["steps"] for e in eps], "counts": counts,
            "late": sum(counts.get(k, 0) for k in ("late", "old", "rejected", "timeouts")),
            "period_ms_p50": float(np.median([p["p50_ms"] for p in periods])) if periods else float("nan"),
            "period_ms_p99": float(max(p["p99_ms"] for p in periods)) if periods else float("nan")}


def _bridge_hz(task: str) -> float:
    import sim

    return float(sim.registry.task_entry(task).default_config().control_hz)


def _wait_for_endpoint(proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> str:
    """The endpoint from the bridge's 'bridge serving <task> on tcp://host:port' line."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("bridge serving") and " on " in line:
                return line.split(" on ", 1)[1].split()[0]
        if proc.poll() is not None:
            raise RuntimeError(f"vla bridge exited with code {proc.returncode} before serving; see {log}")
        time.sleep(0.2)
    raise RuntimeError(f"vla bridge did not start serving within {timeout_s:g} s; see {log}")


def run(args: argparse.Namespace) -> int:
    import sim

    if args.tasks == ["all"]:  # the default two first, so their demos (seeded by task position) stay the same
        args.tasks = [*DEFAULT_TASKS, *(t for t in sim.list_tasks() if t not in DEFAULT_TASKS)]
        args.train_config = args.train_config or ALL_TASKS_CONFIG
    args.train_config = args.train_config or "tiny"
    unknown = [t for t in args.tasks if t not in sim.list_tasks()]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {sim.list_tasks()}")
    if args.smoke:
        args.demos, args.eval_episodes, args.control_episodes = [4], 2, min(args.control_episodes, 1)
        args.max_steps = args.max_steps or 30
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    StageTimes.open(out)
    t_start = time.perf_counter()

    if args.demos is None:
        args.demos = [DEFAULT_DEMOS.get(t, OTHER_DEMOS) for t in args.tasks]
    if len(args.demos) == 1:
        args.demos = args.demos * len(args.tasks)
    if len(args.demos) != len(args.tasks) or min(args.demos) < 1:
        raise ValueError(f"--demos {args.demos}: give one count >= 1, or one per task ({len(args.tasks)})")
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be >= 1")
    if args.control_episodes < 0:
        raise ValueError(f"--control-episodes {args.control_episodes}: must be >= 0")
    from vla.train import TrainConfig

    image_size = TrainConfig.load(args.train_config).model_config().vision.image_size  # record at train size
    datasets = []
    for i, task in enumerate(args.tasks):
        every = args.demo_targets == "every" and sim.registry.task_entry(task).env_cls.TARGET_CHOICE
        parts = _demo_parts(task, out / "demos" / task, args.demos[i], args.workers, args.seed + 100_000 * i,
                            args.demo_noise, image_size, every, args.demo_hold)
        datasets += [str(p) for p in parts]

    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer_report.json").is_file():
        _stage("tokenizer", ["tokenizer", "fit", "--dataset", datasets[0], "--out", str(tok_dir)])

    run_dir = out / "policy"
    ckpt = run_dir / "checkpoint"
    # train/summary.json is written when training ends; the checkpoint itself is also saved every save_every
    # steps, so its presence alone does not mean the run finished (an interrupted run resumes from train_state)
    if not (run_dir / "summary.json").is_file():
        argv = ["train", "--config", args.train_config, "--dataset", *datasets, "--out", str(run_dir),
                "--seed", str(args.seed)]
        if args.max_steps:
            argv += ["--max-steps", str(args.max_steps)]
        if (run_dir / "train_state").exists():
            argv.append("--resume")
        _stage("train", argv)

    weights = ckpt / "model.safetensors"
    results, heldout = {}, {}
    for task in args.tasks:
        report = out / f"eval_{task}.json"
        if not _fresh(report, weights):
            _stage(f"eval {task}", ["eval", "--checkpoint", str(ckpt), "--task", task, "--expert",
                                    "--episodes", str(args.eval_episodes), "--seed", str(10_000 + args.seed),
                                    "--report", str(report), "--video", str(out / f"eval_{task}.mp4")])
        results[task] = json.loads(report.read_text())
        report = out / f"eval_heldout_{task}.json"
        if not args.no_heldout:
            if not _fresh(report, weights):
                _stage(f"eval {task} (held out)", ["eval", "--checkpoint", str(ckpt), "--task", task, "--heldout",
                                                   "--expert", "--episodes", str(args.eval_episodes),
                                                   "--seed", str(10_000 + args.seed), "--report", str(report)])
            heldout[task] = json.loads(report.read_text())

    onnx_dir = out / "onnx"
    if not _fresh(onnx_dir / "manifest.json", weights):
        _stage("export", ["export", "onnx", "--checkpoint", str(ckpt), "--out", str(onnx_dir)])
    onnx_results = {}
    for task in args.tasks:
        report = out / f"eval_onnx_{task}.json"
        if not _fresh(report, onnx_dir / "manifest.json"):
            _stage(f"eval {task} (ONNX Runtime)", ["eval", "--runtime", "onnx", "--checkpoint", str(onnx_dir),
                                                   "--task", task, "--episodes", str(args.eval_episodes),
                                                   "--seed", str(10_000 + args.seed), "--report", str(report)])
        onnx_results[task] = json.loads(report.read_text())

    control = {}
    if args.control_episodes:
        for task in args.tasks:
            control[task] = _control_stage(task, onnx_dir, out / f"control_{task}.json", args.control_episodes,
                                           20_000 + args.seed, image_size)

    keys = ("success_rate", "success_ci95", "successes", "episodes", "mean_length", "latency_ms_p50", "latency_ms_p99",
            "inference_ms_p50", "execute_steps", "expert_success_rate", "relative_to_expert")
    summary = {
        "tasks": args.tasks,
        "smoke": bool(args.smoke),
        "wall_seconds": time.perf_counter() - t_start,
        "tokenizer": json.loads((tok_dir / "tokenizer_report.json").read_text()),
        "eval": {t: {k: r.get(k) for k in keys} for t, r in results.items()},
        "eval_heldout": {t: {k: r.get(k) for k in keys} for t, r in heldout.items()},
        "eval_onnx": {t: {k: r.get(k) for k in keys} for t, r in onnx_results.items()},
        "onnx_same_episodes": {t: _same_episodes(results[t], onnx_results[t]) for t in args.tasks},
        "control": control,
        "stage_seconds": dict(StageTimes.seconds),
        "recipe_seconds": sum(StageTimes.seconds.values()),
    }
    from vla.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    table = task_table(summary)
    from vla.io import atomic_write_text

    atomic_write_text(out / "summary.md", table + "\n")
    print("\n" + table)
    print("\n=== quickstart summary")
    for t, r in summary["eval"].items():
        print(f"{t:>16}: success {r['success_rate']:.2f} over {r['episodes']} episodes, "
              f"policy inference p50 {r['inference_ms_p50']:.1f} ms (one chunk), per step p50 {r['latency_ms_p50']:.2f} ms")
    for t, r in summary["eval_onnx"].items():
        print(f"{t:>16}: ONNX Runtime: success {r['success_rate']:.2f} over {r['episodes']} episodes, "
              f"inference p50 {r['inference_ms_p50']:.1f} ms (one chunk)")
    for t, r in control.items():
        print(f"{t:>16}: ZeroMQ control at {r['hz']:g} Hz: success {r['successes']}/{r['episodes']}, tick period "
              f"p50 {r['period_ms_p50']:.1f} ms p99 {r['period_ms_p99']:.1f} ms, {r['counts'].get('queued', 0)} actions "
              f"sent on time, {r['late']} late/dropped, {r['counts'].get('overruns', 0)} overruns")
    print(f"total {summary['wall_seconds'] / 60:.1f} min this invocation; the stages of the whole recipe "
          f"{summary['recipe_seconds'] / 60:.1f} min; details in {out / 'summary.json'}")
    return 0


def _same_episodes(a: dict, b: dict) -> bool:
    """Two eval reports of the same seeds with the same outcome and length in every episode."""
    key = lambda r: [(e["seed"], e["success"], e["length"]) for e in r["per_episode"]]  # noqa: E731
    return key(a) == key(b)


def _cell(r: dict | None) -> str:
    if not r:
        return "-"
    lo, hi = r["success_ci95"]
    return f"{r['successes']}/{r['episodes']} ({lo:.2f}-{hi:.2f})"


def task_table(summary: dict) -> str:
    """The per-task Markdown table: expert, in-distribution (torch, ONNX Runtime), held-out, and the ratios the
    recipe is judged by (policy / expert in distribution; held-out / in-distribution)."""
    rows = ["| task | expert | policy (torch) | ONNX Runtime | same episodes | of expert | expert held out "
            "| policy held out | held out / in dist |", "|" + "---|" * 9]
    for t in summary["tasks"]:
        r, h, o = summary["eval"][t], summary["eval_heldout"].get(t), summary["eval_onnx"].get(t)
        ex = r.get("expert_success_rate")
        ratio = (f"{h['success_rate'] / r['success_rate']:.2f}" if h and r["success_rate"] else "-")
        rows.append(f"| {t} | {ex * r['episodes']:.0f}/{r['episodes']} | {_cell(r)} | {_cell(o)} | "
                    f"{'yes' if summary['onnx_same_episodes'].get(t) else 'no'} | "
                    + (f"{r['relative_to_expert']:.2f}" if r.get("relative_to_expert") is not None else "-") + " | "
                    + (f"{h['expert_success_rate'] * h['episodes']:.0f}/{h['episodes']}" if h else "-")
                    + f" | {_cell(h)} | {ratio} |")
    return "\n".join(rows)
