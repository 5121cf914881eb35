"""A fair ablation over the fusion design space (issue #16): rows x training seeds, same demos, same number of
optimizer steps, same batch size, everything else the embedded default.

    .venv/bin/python scripts/ablate_fusion.py                       # the whole grid (hours; resumable)
    .venv/bin/python scripts/ablate_fusion.py --rows linear qformer --seeds 0 --steps 2000
    .venv/bin/python scripts/ablate_fusion.py --smoke --out /tmp/abl  # a 1-minute pass over every stage
    .venv/bin/python scripts/ablate_fusion.py --summarize-only        # re-write the summary from finished runs

Rows: each row is a name and a dict of TrainConfig overrides with dotted `model.` keys, exactly what
`vla train --config tiny --set model.projector=...` applies (`TrainConfig.load("tiny", overrides=...)`). The
connector rows change ONLY `model.projector` of the embedded default `tiny` (FiLM, aux head, state token,
decoding... identical): linear, mlp, pixel_shuffle (the default's own connector), resampler, qformer (the
resampler without key positions, the qformer with its config defaults, key positions included). The fusion rows change `model.fusion` (and what the mode
replaces): xattn (cross-attention blocks before both LM layers, the visual tokens out of the sequence),
late (late fusion, and no FiLM: the floor without any cross-modal mixing), vit (a SigLIP tower of the same
grid in place of the conv tower, FiLM kept) and vit_tune (that tower with text-guided encoding in FiLM's
place). A later mode is one more entry in ROWS.
`fused_gelu_mlp` is not a row: it is the connector of converted OpenVLA checkpoints.

Every run trains on the same demos (default: the quickstart's, runs/demos/{ReachCube,PickCube}/part*; when
the default demos are missing they are generated with the quickstart's demo stage and recipe: 3000 ReachCube
+ 400 PickCube rollouts, DART noise 0.01, every target, 5 hold steps; equivalently `vla quickstart --out runs`
stops being needed after its demo stage) for --steps optimizer steps (default: the tiny recipe's 5000) at the
recipe's batch size (32), seeds --seeds (the TrainConfig seed: init, batches, val split). Then per run:
- success over --episodes episodes (seeds 10000...) per task on split "train" (in distribution) and "heldout"
  (`vla eval --heldout`: held-out paraphrases and object positions), through `vla eval` itself;
- visual tokens in the LM context (`policy.num_visual_tokens`; 0 for xattn / late, whose image tokens,
  `num_image_tokens`, are read outside the sequence), parameters;
- training samples/s (the train summary) and the training's peak RSS (each training runs in a child process,
  `--child-train`, so peaks are per run and a crash does not kill the grid);
- per-chunk inference latency p50 on torch and on ONNX Runtime (`deploy.export.export_onnx`), 1 thread each
  (as `vla eval`), over 20 sim observations of the first task;
- grounding (`scripts/probe_grounding.py`): on 40 ReachCube scenes (seeds 200...), each first frame re-asked
  naming every cube's colour: how often the first chunk points at the cube named (chance 1 / cubes).

Resumable: one directory per run, <out>/<row>_s<seed>/: policy/ (the `train()` run dir; `train(...,
resume=True)` when a train_state exists but the training did not finish), train_result.json, one
eval_<task>_<split>.json per evaluation, latency.json, and result.json (a run with it is skipped). All files
are written atomically (temp + os.replace), so running the script again after a kill continues where it
stopped. A run directory remembers its spec (run.json: row overrides, seed, steps, demos); a different spec
in the same --out is refused (pick another --out), so a grid is never mixed.

Across machines: runs/ is not kept, so every finished run's result.json is also written to --record (default
benchmarks/ablate_fusion_runs/<row>_s<seed>.json, committed with the summary). A run whose record exists with the
same spec is skipped, so a grid spread over several sessions (and machines) continues where the last one stopped.
Demo paths in the spec are relative to the repository, so the same demos on another clone are the same spec.

Summary (--summary, default benchmarks/ablate_fusion.json, plus .md and .png next to it): per row and per
(task, split), success pooled over every seed's episodes with a Wilson 95% interval, the per-seed rates and
their spread (std, min, max); other metrics as means over seeds. A row with fewer finished seeds than asked
is marked INCOMPLETE in the table and the JSON (its numbers cover only the finished seeds).

Timing on the 2-core CPU box (2026-12-03, grid started with nice -n 19): linear (128 visual tokens, the
slowest connector class) trains at ~27-37 samples/s while another process competes for the cores and ~105
samples/s (~200 steps/min) alone: ~30 min for 5000 steps; pixel_shuffle ~20-25 min (its quickstart run).
Evaluation (2 tasks x 2 splits x 50 episodes) + export + latency: a few minutes per run; 15 runs: ~8-10 h.
That is within the ~40 min per training budget, so the grid runs at the recipe's full 5000 steps.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla.evaluation import wilson_interval  # noqa: E402
from vla.io import atomic_write_json, atomic_write_text, read_json  # noqa: E402

# a ViT tower the size of the default's conv tower budget: 64 px, 8 px patches (the same 8x8 grid), CoordConv
VIT_TOWER = {"model_type": "siglip_vision_model", "image_size": 64, "coord_channels": True,
             "hf_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "patch_size": 8}}
# name -> TrainConfig overrides (dotted `model.` keys as `vla train --set`); a new fusion mode is one more entry
ROWS: dict[str, dict[str, Any]] = {
    "linear": {"model.projector": {"type": "linear"}},
    "mlp": {"model.projector": {"type": "mlp"}},
    "pixel_shuffle": {"model.projector": {"type": "pixel_shuffle"}},
    # the resampler as it was before key positions became its default: the diagnosis' baseline
    "resampler": {"model.projector": {"type": "resampler", "key_pos_embed": False}},
    "qformer": {"model.projector": {"type": "qformer"}},
    # the resampler with a learned position embedding on its patch keys (the diagnosis' fix, now the default)
    "resampler_pos": {"model.projector": {"type": "resampler", "key_pos_embed": True}},
    # fusion modes (vla.config.FusionConfig) on the default's connector (pixel_shuffle, 16 tokens per camera)
    "xattn": {"model.fusion": {"mode": "cross_attention"}},  # gated blocks before both LM layers
    "late": {"model.fusion": {"mode": "late"}, "model.film": None},  # the floor: no cross-modal mixing at all
    # text-guided encoding needs a ViT: the same-sized SigLIP tower with FiLM (its baseline) and with TUNE
    # in FiLM's place (both are the instruction entering the vision features; TUNE inside every layer)
    "vit": {"model.vision": VIT_TOWER},
    "vit_tune": {"model.vision": VIT_TOWER, "model.fusion": {"text_guided": True}, "model.film": None},
}
BASE_CONFIG = "tiny"
DEFAULT_TASKS = ("ReachCube", "PickCube")
DEFAULT_DEMOS = tuple(f"runs/demos/{t}/part*" for t in DEFAULT_TASKS)
QUICKSTART_DEMOS = {"ReachCube": 3000, "PickCube": 400}  # vla.cli.quickstart.DEFAULT_DEMOS
SPLITS = ("train", "heldout")
EVAL_SEED = 10_000
LATENCY_OBS = 20
GROUNDING_TASK, GROUNDING_SEED, GROUNDING_SCENES = "ReachCube", 200, 40  # probe_grounding.py's defaults


def wilson(k: int, n: int) -> list[float]:
    return [0.0, 1.0] if n == 0 else list(wilson_interval(k, n))


def train_config(row: str, overrides: dict[str, Any], seed: int, steps: int):
    from vla.train import TrainConfig

    if any(k in overrides for k in ("max_steps", "seed", "batch_size")):
        raise ValueError(f"row {row!r}: steps, seed and batch size are the grid's, not a row's")
    return TrainConfig.load(BASE_CONFIG, overrides={**overrides, "max_steps": steps, "seed": seed})


# ----------------------------------------------------------------------------------------------- children


def child_train(run_dir: Path) -> int:
    """Train (or resume) the run of run_dir/run.json; write train_result.json with the peak RSS."""
    from vla.train import train

    spec = read_json(run_dir / "run.json", f"{run_dir}: no run.json")
    cfg = train_config(spec["row"], spec["overrides"], spec["seed"], spec["steps"])
    out = run_dir / "policy"
    resumed_from = None
    if not (out / "summary.json").is_file():
        state = out / "train_state"
        resume = state.is_dir() and (out / "checkpoint" / "config.json").is_file()
        if resume:
            resumed_from = _state_step(state)
        elif out.exists():  # a run killed before its first save: nothing to resume from
            shutil.rmtree(out)
        print(f"train {run_dir.name}: " + (f"resuming from step {resumed_from}" if resume else "from scratch"),
              flush=True)
        train(cfg, spec["demos"], out, resume=resume, progress=False)
    summary = read_json(out / "summary.json", f"{out}: training wrote no summary")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    atomic_write_json(run_dir / "train_result.json", {
        "summary": summary, "peak_rss_mb": peak_kb / 1024, "resumed_from_step": resumed_from,
        "samples_per_s": (summary.get("last_train") or {}).get("samples_per_s"),
        "train_seconds": summary.get("train_seconds"),
        "note": "peak RSS and samples/s of the last training segment (the whole run unless it was resumed)"})
    return 0


def _state_step(state: Path) -> int | None:
    try:
        return int(json.loads((state / "state.json").read_text())["step"])  # vla.train.state's layout
    except (OSError, KeyError, ValueError, TypeError):
        return None


def child_eval(run_dir: Path, tasks: list[str], episodes: int) -> int:
    """`vla eval` per (task, split) not yet written, then the ONNX export and the latency timing."""
    from vla.cli import main as vla_main

    ckpt = run_dir / "policy" / "checkpoint"
    for task in tasks:
        for split in SPLITS:
            report = run_dir / f"eval_{task}_{split}.json"
            if report.is_file() and read_json(report, str(report)).get("episodes") == episodes:
                continue
            t0 = time.perf_counter()
            argv = ["eval", "--checkpoint", str(ckpt), "--task", task, "--episodes", str(episodes),
                    "--seed", str(EVAL_SEED), "--report", str(report), "--no-progress"] + ["--heldout"] * (split == "heldout")
            if vla_main(argv) != 0:
                raise RuntimeError(f"vla {' '.join(argv)} failed")
            print(f"eval {run_dir.name} {task} [{split}] done in {time.perf_counter() - t0:.1f} s", flush=True)
    lat = run_dir / "latency.json"
    if not lat.is_file():
        atomic_write_json(lat, measure_latency(run_dir, tasks[0]))
    ground = run_dir / "grounding.json"
    if not ground.is_file():
        atomic_write_json(ground, measure_grounding(ckpt))


def measure_grounding(ckpt: Path) -> dict[str, Any]:
    """scripts/probe_grounding.py on GROUNDING_TASK: does the policy's first chunk point at the cube the
    instruction names (re-asked with every cube's colour on the same first frame)?"""
    import importlib.util

    import torch

    import sim
    from vla.model.runtime import TorchRuntime

    spec = importlib.util.spec_from_file_location("probe_grounding", ROOT / "scripts" / "probe_grounding.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.set_num_threads(1)
    rt = TorchRuntime.from_checkpoint(ckpt)
    env = sim.make(GROUNDING_TASK, image_size=rt.cfg.vision.image_size)
    try:
        return {"task": GROUNDING_TASK, "seed": GROUNDING_SEED,
                **mod.probe(rt, env, range(GROUNDING_SEED, GROUNDING_SEED + GROUNDING_SCENES))}
    finally:
        env.close()
    return 0


def measure_latency(run_dir: Path, task: str) -> dict[str, Any]:
    """Per-chunk `runtime.infer` p50 (ms) on torch and ONNX Runtime, 1 thread each, on the same sim observations."""
    import numpy as np
    import torch

    import sim
    from deploy.export import export_onnx
    from deploy.runtimes import make_runtime
    from vla.model.policy import VLAPolicy
    from vla.policy_io import PolicyIO

    ckpt, onnx_dir = run_dir / "policy" / "checkpoint", run_dir / "onnx"
    policy = VLAPolicy.from_pretrained(ckpt)
    info = {"visual_tokens": int(policy.num_visual_tokens), "image_tokens": int(policy.num_image_tokens),
            "fusion": policy.cfg.fusion.mode, "params": int(sum(p.numel() for p in policy.parameters())),
            "prefix_len": int(policy.prefix_len)}
    if not (onnx_dir / "manifest.json").is_file():
        t0 = time.perf_counter()
        export_onnx(policy, PolicyIO.load(ckpt), onnx_dir)
        info["export_seconds"] = time.perf_counter() - t0
    del policy
    env = sim.make(task, split="train", image_size=int(PolicyIO.load(ckpt).cfg.vision.image_size))
    try:
        observations = [env.reset(seed=EVAL_SEED + i)[0] for i in range(LATENCY_OBS)]
    finally:
        env.close()
    torch.set_num_threads(1)
    for kind, path in (("torch", ckpt), ("onnx", onnx_dir)):
        rt = make_runtime(kind, path, threads=1 if kind == "onnx" else 0)
        for obs in observations[:2]:  # warm-up (lazy sessions, allocator)
            rt.reset()
            rt.infer(obs)
        ms = []
        for obs in observations:
            rt.reset()
            t0 = time.perf_counter()
            rt.infer(obs)
            ms.append((time.perf_counter() - t0) * 1e3)
        info[f"{kind}_chunk_ms_p50"] = float(np.median(ms))
        info[f"{kind}_chunk_ms_p90"] = float(np.percentile(ms, 90))
    info["observations"] = LATENCY_OBS
    info["task"] = task
    return info


# ----------------------------------------------------------------------------------------------- the grid


def resolve_demos(patterns: list[str], default: bool) -> list[str]:
    """Finished dataset parts (meta/info.json) matching each pattern; the default demos are generated if missing."""
    def parts(pat: str) -> list[str]:
        full = pat if os.path.isabs(pat) else str(ROOT / pat)
        return sorted(d for d in glob.glob(full) if (Path(d) / "meta" / "info.json").is_file())

    missing = [pat for pat in patterns if not parts(pat)]
    if missing and default:
        make_demos(missing)
        missing = [pat for pat in patterns if not parts(pat)]
    if missing:
        raise FileNotFoundError(
            f"--demos {missing}: no finished LeRobot dataset part matches; generate the quickstart's demos by "
            "running this script with the default --demos (it runs the quickstart's demo stage into "
            "runs/demos/<task>/part*), or `vla quickstart --out runs` (its demo stage writes the same)")
    return sorted({d for pat in patterns for d in parts(pat)})


def make_demos(patterns: list[str]) -> None:
    """The quickstart's demo stage (its recipe and seeds) for each default pattern runs/demos/<task>/part*."""
    import sim
    from vla.cli.quickstart import _demo_parts
    from vla.train import TrainConfig

    image_size = TrainConfig.load(BASE_CONFIG).model_config().vision.image_size
    for pat in patterns:
        task = Path(pat).parent.name
        i = list(DEFAULT_TASKS).index(task)
        every = bool(sim.registry.task_entry(task).env_cls.TARGET_CHOICE)
        print(f"demos for {task} missing: writing them with the quickstart's demo stage "
              f"({QUICKSTART_DEMOS[task]} rollouts; this takes a while)", flush=True)
        _demo_parts(task, ROOT / "runs" / "demos" / task, QUICKSTART_DEMOS[task], min(2, os.cpu_count() or 1),
                    100_000 * i, 0.01, image_size, every, 5)


def run_spec(row: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    cfg = train_config(row, ROWS[row], seed, args.steps)
    return {"row": row, "overrides": ROWS[row], "seed": seed, "steps": args.steps, "batch_size": cfg.batch_size,
            "base_config": BASE_CONFIG, "demos": args.demo_roots}


def _portable(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as records compare it: demo paths relative to the repository (another clone, the same demos)."""
    def rel(d: str) -> str:
        try:
            # abspath, not resolve: demos symlinked into runs/demos keep their repository path
            return str(Path(os.path.abspath(d)).relative_to(ROOT))
        except ValueError:
            return d
    return {**spec, "demos": [rel(d) for d in spec.get("demos") or []]}


def recorded(row: str, seed: int, args: argparse.Namespace, spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """The committed record of this run (--record), if any; one with another spec is an error, not a result."""
    if not args.record:
        return None
    path = Path(args.record) / f"{row}_s{seed}.json"
    if not path.is_file():
        return None
    res = read_json(path, str(path))
    if spec is not None and _portable(res.get("spec") or {}) != _portable(spec):
        diff = sorted(k for k in spec if _portable(res.get("spec") or {}).get(k) != _portable(spec).get(k))
        raise ValueError(f"{path} records this run with another spec (differs in {diff}); move it away or use "
                         "another --record")
    return res


def _child(argv: list[str], log: Path) -> int:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    with open(log, "a") as f:
        f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
        f.flush()
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], stdout=f,
                              stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode


def do_run(row: str, seed: int, args: argparse.Namespace, tag: str) -> dict[str, Any] | None:
    run_dir = Path(args.out) / f"{row}_s{seed}"
    result_path = run_dir / "result.json"
    spec = run_spec(row, seed, args)
    rec = recorded(row, seed, args, spec)
    if rec is not None:
        print(f"{tag} {run_dir.name}: recorded in {args.record}: skipped", flush=True)
        return rec
    if result_path.is_file():
        print(f"{tag} {run_dir.name}: finished earlier: skipped", flush=True)
        res = read_json(result_path, str(result_path))
        _record(res, row, seed, args)
        return res
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "run.json").is_file():
        old = read_json(run_dir / "run.json", "")
        if old != spec:
            diff = sorted(k for k in spec if old.get(k) != spec[k])
            raise ValueError(f"{run_dir} was started with another spec (differs in {diff}); use another --out")
    else:
        atomic_write_json(run_dir / "run.json", spec)
    timing: dict[str, float] = {}
    if not (run_dir / "train_result.json").is_file():
        state = run_dir / "policy" / "train_state"
        print(f"{tag} {run_dir.name}: training {args.steps} steps" + (" (resuming)" if state.is_dir() else "")
              + f", log {run_dir / 'train.log'}", flush=True)
        t0 = time.perf_counter()
        rc = _child(["--child-train", str(run_dir)], run_dir / "train.log")
        timing["train_wall_s"] = time.perf_counter() - t0
        if rc != 0:
            print(f"{tag} {run_dir.name}: training FAILED (exit {rc}); see {run_dir / 'train.log'}; next run", flush=True)
            return None
        print(f"{tag} {run_dir.name}: trained in {timing['train_wall_s'] / 60:.1f} min", flush=True)
    print(f"{tag} {run_dir.name}: evaluating {args.episodes} episodes x {len(args.tasks)} tasks x {len(SPLITS)} "
          "splits + latency", flush=True)
    t0 = time.perf_counter()
    rc = _child(["--child-eval", str(run_dir), "--tasks", *args.tasks, "--episodes", str(args.episodes)],
                run_dir / "eval.log")
    timing["eval_wall_s"] = time.perf_counter() - t0
    if rc != 0:
        print(f"{tag} {run_dir.name}: evaluation FAILED (exit {rc}); see {run_dir / 'eval.log'}; next run", flush=True)
        return None
    tr = read_json(run_dir / "train_result.json", "")
    lat = read_json(run_dir / "latency.json", "")
    ground = read_json(run_dir / "grounding.json", "")
    evals = {}
    for task in args.tasks:
        for split in SPLITS:
            r = read_json(run_dir / f"eval_{task}_{split}.json", "")
            evals.setdefault(task, {})[split] = {k: r.get(k) for k in (
                "episodes", "successes", "success_rate", "success_ci95", "mean_length", "inference_ms_p50",
                "invalid_chunks")}
    result = {"spec": spec, "tasks": list(args.tasks), "episodes": args.episodes, "eval_seed": EVAL_SEED,
              "visual_tokens": lat["visual_tokens"], "params": lat["params"], "prefix_len": lat["prefix_len"],
              "train_samples_per_s": tr["samples_per_s"], "train_seconds": tr["train_seconds"],
              "peak_rss_mb": tr["peak_rss_mb"], "resumed_from_step": tr["resumed_from_step"],
              "torch_chunk_ms_p50": lat["torch_chunk_ms_p50"], "onnx_chunk_ms_p50": lat["onnx_chunk_ms_p50"],
              "image_tokens": lat.get("image_tokens"), "fusion": lat.get("fusion"),
              "grounding": {k: ground[k] for k in ("task", "points_at_named", "chance", "asked", "spread")},
              "eval": evals, "wall_s_this_session": timing}
    atomic_write_json(result_path, result)
    _record(result, row, seed, args)
    line = ", ".join(f"{t} {e['train']['successes']}/{e['train']['episodes']} (heldout {e['heldout']['successes']})"
                     for t, e in evals.items())
    print(f"{tag} {run_dir.name}: done: {line}; {result['visual_tokens']} visual tokens, "
          f"ORT {result['onnx_chunk_ms_p50']:.1f} ms/chunk (eval {timing['eval_wall_s'] / 60:.1f} min)", flush=True)
    return result


def _record(result: dict[str, Any], row: str, seed: int, args: argparse.Namespace) -> None:
    if args.record:
        atomic_write_json(Path(args.record) / f"{row}_s{seed}.json", {**result, "spec": _portable(result["spec"])})


# ----------------------------------------------------------------------------------------------- summary


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize_row(row: str, results: dict[int, dict], seeds: list[int], tasks: list[str]) -> dict[str, Any]:
    done = sorted(s for s in seeds if s in results)
    out: dict[str, Any] = {"row": row, "overrides": ROWS.get(row), "seeds_asked": seeds, "seeds_finished": done,
                           "complete": len(done) == len(seeds)}
    for key in ("visual_tokens", "image_tokens", "params", "train_samples_per_s", "train_seconds", "peak_rss_mb",
                "torch_chunk_ms_p50", "onnx_chunk_ms_p50"):
        out[key] = _mean([results[s].get(key) for s in done])
    out["fusion"] = row_fusion(row)
    g = [results[s]["grounding"] for s in done if results[s].get("grounding")]
    out["grounding"] = None if not g else {
        "task": g[0]["task"], "chance": g[0]["chance"], "seeds": len(g),
        "points_at_named": _mean([x["points_at_named"] for x in g]),
        "per_seed": [x["points_at_named"] for x in g], "spread": _mean([x["spread"] for x in g])}
    success: dict[str, dict] = {}
    for task in tasks:
        for split in SPLITS:
            per = {s: results[s]["eval"][task][split] for s in done if task in results[s]["eval"]}
            k = sum(e["successes"] for e in per.values())
            n = sum(e["episodes"] for e in per.values())
            rates = [e["success_rate"] for e in per.values()]
            m = _mean(rates)
            std = math.sqrt(sum((r - m) ** 2 for r in rates) / (len(rates) - 1)) if len(rates) > 1 else None
            success.setdefault(task, {})[split] = {
                "seeds": len(per), "successes": k, "episodes": n, "pooled_rate": k / n if n else None,
                "wilson95": wilson(k, n), "per_seed": {str(s): e["success_rate"] for s, e in per.items()},
                "seed_mean": m, "seed_std": std, "seed_min": min(rates) if rates else None,
                "seed_max": max(rates) if rates else None}
    out["success"] = success
    # one number per row for the plot: pooled over the tasks, per split
    out["success_all_tasks"] = {}
    for split in SPLITS:
        k = sum(success[t][split]["successes"] for t in tasks)
        n = sum(success[t][split]["episodes"] for t in tasks)
        out["success_all_tasks"][split] = {"successes": k, "episodes": n, "rate": k / n if n else None,
                                           "wilson95": wilson(k, n)}
    return out


def row_fusion(row: str) -> str:
    """early | cross_attention | late, + text_guided: the plot's marker of a row."""
    f = (ROWS.get(row) or {}).get("model.fusion") or {}
    return f.get("mode", "early") + (" + text_guided" if f.get("text_guided") else "")


MARKERS = {"early": "o", "cross_attention": "s", "late": "^", "early + text_guided": "D"}


def _fmt(x: float | None, f: str) -> str:
    return "-" if x is None else format(x, f)


def table(rows: list[dict], tasks: list[str]) -> str:
    cols = [f"{t} {s}" for t in tasks for s in SPLITS]
    lines = ["| row | fusion | seeds | visual tokens (in LM / made) | params (M) | train samples/s | peak RSS (GB) | "
             "torch ms/chunk | ORT ms/chunk | " + " | ".join(cols) + " | points at the named cube |",
             "|---" * (10 + len(cols)) + "|"]
    for r in rows:
        name = f"{r['row']}" if r["complete"] else f"{r['row']} **INCOMPLETE**"
        cells = []
        for t in tasks:
            for s in SPLITS:
                c = r["success"][t][s]
                if not c["episodes"]:
                    cells.append("-")
                    continue
                lo, hi = c["wilson95"]
                per = "/".join(f"{v:.2f}" for v in c["per_seed"].values())
                sd = "" if c["seed_std"] is None else f" sd {c['seed_std']:.2f}"
                cells.append(f"{c['pooled_rate']:.2f} [{lo:.2f}-{hi:.2f}] ({per}{sd})")
        rss = None if r["peak_rss_mb"] is None else r["peak_rss_mb"] / 1024
        params = None if r["params"] is None else r["params"] / 1e6
        g = r.get("grounding")
        gcell = "-" if not g else (f"{g['points_at_named']:.2f} (" + "/".join(f"{v:.2f}" for v in g["per_seed"])
                                   + f"; chance {g['chance']:.2f})")
        made = r.get("image_tokens")
        lines.append(f"| {name} | {r.get('fusion', '-')} | {len(r['seeds_finished'])}/{len(r['seeds_asked'])} | "
                     f"{_fmt(r['visual_tokens'], '.0f')} / {_fmt(made, '.0f')} | "
                     f"{_fmt(params, '.2f')} | {_fmt(r['train_samples_per_s'], '.1f')} | {_fmt(rss, '.2f')} | "
                     f"{_fmt(r['torch_chunk_ms_p50'], '.1f')} | {_fmt(r['onnx_chunk_ms_p50'], '.1f')} | "
                     + " | ".join(cells) + f" | {gcell} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vla.io import atomic_write_png

    fig, axes = plt.subplots(len(SPLITS), 2, figsize=(11, 4.2 * len(SPLITS)), squeeze=False)
    for i, split in enumerate(SPLITS):
        for j, (key, label) in enumerate((("visual_tokens", "visual tokens in the LM context"),
                                          ("onnx_chunk_ms_p50", "ONNX Runtime ms per chunk (p50, 1 thread)"))):
            ax = axes[i][j]
            for r in rows:
                s = r["success_all_tasks"][split]
                if r[key] is None or s["rate"] is None:
                    continue
                lo, hi = s["wilson95"]
                ax.errorbar([r[key]], [s["rate"]], yerr=[[s["rate"] - lo], [hi - s["rate"]]],
                            marker=MARKERS.get(r.get("fusion", "early"), "o"), capsize=3,
                            mfc="none" if not r["complete"] else None, label=r["row"] + ("" if r["complete"] else " (incomplete)"))
                ax.annotate(r["row"], (r[key], s["rate"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            ax.set(xlabel=label, ylabel=f"success, split {split} (all tasks pooled, Wilson 95%)", ylim=(-0.05, 1.05))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write_png(path, fig, dpi=110)
    plt.close(fig)


TABLE_BEGIN, TABLE_END = "<!-- ablate_fusion:table -->", "<!-- /ablate_fusion:table -->"


def splice_table(path: Path, md_table: str) -> bool:
    """Replace what lies between the table markers in `path` (e.g. BENCHMARKS.md) with `md_table`, atomically;
    False (and a note) when the file or its markers are missing, so the summary never depends on them."""
    text = path.read_text() if path.is_file() else ""
    i, j = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if i < 0 or j < i:
        print(f"note: {path} has no {TABLE_BEGIN} ... {TABLE_END} markers; its table was not updated", flush=True)
        return False
    atomic_write_text(path, text[: i + len(TABLE_BEGIN)] + "\n\n" + md_table + "\n" + text[j:])
    return True


def write_summary(args: argparse.Namespace, results: dict[str, dict[int, dict]]) -> dict[str, Any]:
    rows = [summarize_row(r, results.get(r, {}), args.seeds, args.tasks) for r in args.rows]
    summary = {"what": "fusion ablation (issue #16): rows x seeds on the same demos, steps and batch size",
               "command": "python scripts/ablate_fusion.py " + " ".join(args.argv),
               "base_config": BASE_CONFIG, "steps": args.steps, "seeds": args.seeds, "episodes": args.episodes,
               "eval_seed": EVAL_SEED, "tasks": args.tasks, "splits": list(SPLITS),
               "demos": _portable({"demos": args.demo_roots})["demos"] if args.demo_roots else None,
               "smoke": args.smoke, "complete": all(r["complete"] for r in rows),
               "interval": "success: Wilson 95% over every finished seed's episodes pooled; per_seed + seed_std: "
                           "the spread across training seeds",
               "rows": rows}
    out = Path(args.summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, summary)
    md = (f"Fusion ablation: base `{BASE_CONFIG}`, {args.steps} steps, seeds {args.seeds}, {args.episodes} episodes "
          f"per task and split from seed {EVAL_SEED}. Cells: pooled success [Wilson 95%] (per-seed rates, sd).\n\n"
          + table(rows, args.tasks))
    atomic_write_text(out.with_suffix(".md"), md)
    if args.benchmarks:
        splice_table(Path(args.benchmarks), table(rows, args.tasks))
    plot(rows, out.with_suffix(".png"))
    print(md + f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=None, help=f"subset of {list(ROWS)} (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default: the {BASE_CONFIG} recipe's)")
    p.add_argument("--episodes", type=int, default=None, help="evaluation episodes per task and split (default 50)")
    p.add_argument("--tasks", nargs="+", default=None, help=f"evaluation tasks (default {' '.join(DEFAULT_TASKS)})")
    p.add_argument("--demos", nargs="+", default=None,
                   help="dataset part dirs or globs (default: the quickstart's, " + " ".join(DEFAULT_DEMOS) + ")")
    p.add_argument("--out", default=None, help="run directories (default runs/ablate; --smoke: runs/ablate_smoke)")
    p.add_argument("--summary", default=None,
                   help="summary JSON, with .md and .png next to it (default benchmarks/ablate_fusion.json; "
                        "--smoke: <out>/ablate_fusion_smoke.json)")
    p.add_argument("--record", default=None,
                   help="finished runs' results, kept across machines (default benchmarks/ablate_fusion_runs; "
                        "--smoke: none; 'none': none)")
    p.add_argument("--benchmarks", default=None,
                   help="Markdown file whose table between the ablate_fusion:table markers is rewritten with every "
                        "summary (default BENCHMARKS.md; --smoke: none; 'none': none)")
    p.add_argument("--smoke", action="store_true",
                   help="20 steps, 2 episodes, seed 0, rows linear + qformer, a scratch --out: checks every stage")
    p.add_argument("--summarize-only", action="store_true", help="write the summary from the finished runs")
    p.add_argument("--child-train", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-eval", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_train:
        return child_train(Path(args.child_train))
    if args.child_eval:
        return child_eval(Path(args.child_eval), args.tasks, args.episodes)
    args.argv = argv
    from vla.train import TrainConfig

    if args.smoke:
        args.steps = args.steps or 20
        args.episodes = args.episodes or 2
        args.seeds = args.seeds or [0]
        args.rows = args.rows or ["linear", "qformer"]
        args.out = args.out or "runs/ablate_smoke"
    args.steps = args.steps or TrainConfig.load(BASE_CONFIG).max_steps
    args.episodes = args.episodes or 50
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    args.rows = args.rows or list(ROWS)
    args.tasks = args.tasks or list(DEFAULT_TASKS)
    args.out = args.out or "runs/ablate"
    args.summary = args.summary or (str(Path(args.out) / "ablate_fusion_smoke.json") if args.smoke
                                    else "benchmarks/ablate_fusion.json")
    if args.record is None:
        args.record = None if args.smoke else str(ROOT / "benchmarks" / "ablate_fusion_runs")
    elif args.record == "none":
        args.record = None
    if args.benchmarks is None:
        args.benchmarks = None if args.smoke else str(ROOT / "BENCHMARKS.md")
    elif args.benchmarks == "none":
        args.benchmarks = None
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; available: {list(ROWS)}")
    if args.steps < 1 or args.episodes < 1 or not args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise SystemExit("--steps and --episodes must be >= 1, --seeds distinct")
    if args.summarize_only:
        args.demo_roots = None
    else:
        args.demo_roots = resolve_demos(args.demos or list(DEFAULT_DEMOS), default=args.demos is None)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    jobs = [(r, s) for s in args.seeds for r in args.rows]  # seed-major: every row gets a first seed early
    print(f"ablate_fusion: {len(args.rows)} rows x {len(args.seeds)} seeds = {len(jobs)} runs, {args.steps} steps, "
          f"{args.episodes} episodes x {args.tasks} x {list(SPLITS)}; out {args.out}; "
          f"{len(args.demo_roots or [])} demo parts", flush=True)
    results: dict[str, dict[int, dict]] = {}
    t_start = time.perf_counter()
    for i, (row, seed) in enumerate(jobs):
        if args.summarize_only:
            path = Path(args.out) / f"{row}_s{seed}" / "result.json"
            res = recorded(row, seed, args, None) or (read_json(path, "") if path.is_file() else None)
        else:
            res = do_run(row, seed, args, f"[{i + 1}/{len(jobs)} {(time.perf_counter() - t_start) / 60:.0f} min]")
        if res is not None:
            results.setdefault(row, {})[seed] = res
            if not args.summarize_only:
                write_summary(args, results)  # a partial summary after every run (rows marked incomplete)
    write_summary(args, results)
    failed = len(jobs) - sum(len(v) for v in results.values())
    if failed and not args.summarize_only:
        print(f"{failed} run(s) did not finish; run the same command again to retry them", flush=True)
    return 1 if failed and not args.summarize_only else 0


if __name__ == "__main__":
    raise SystemExit(main())
