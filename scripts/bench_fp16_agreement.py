"""fp16 against fp32 ONNX exports of one checkpoint: token agreement on sim observations (ONNX Runtime, CPU).

    python scripts/bench_fp16_agreement.py --checkpoint runs/quickstart/policy/checkpoint --name default \\
        --out benchmarks/fp16_agreement.json
    python scripts/bench_fp16_agreement.py --checkpoint runs/openvla-x --name openvla --out ...   # appends

Observations: scripted-expert rollouts of ReachCube and PickCube rendered at the policy's image size (the
expert drives the arm, so the frames are the ones a deployed policy sees), `--frames` per task. Both exports
are made from the same weights (`vla export onnx --dtype fp32|fp16`). Reported per checkpoint: the share of
action tokens and of whole chunks that are identical, the largest bin difference of a token, and the largest
action difference in robot units. TensorRT-RTX builds its fp16 engines from the same fp16 graphs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def sim_observations(tasks: list[str], frames: int, image_size: int, seed: int = 0) -> list[dict]:
    import sim

    out = []
    for task in tasks:
        env = sim.make(task, image_size=image_size)
        expert = sim.make_expert(task, env, noise=0.005)
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(frames):
            out.append(obs)
            obs, _, term, trunc, _ = env.step(expert(obs))
            if term or trunc:
                obs, _ = env.reset(seed=seed + len(out))
                expert.reset()
        env.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--name", required=True, help="row name in the JSON")
    ap.add_argument("--out", default="benchmarks/fp16_agreement.json")
    ap.add_argument("--frames", type=int, default=40, help="observations per task")
    ap.add_argument("--tasks", nargs="+", default=["ReachCube", "PickCube"])
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from deploy.export import export_onnx
    from deploy.runtimes.onnx import OnnxRuntime
    from vla.model.policy import VLAPolicy
    from vla.policy_io import PolicyIO

    io = PolicyIO.load(args.checkpoint)
    if io.cfg.action.tokenizer != "bins":
        raise SystemExit("bench_fp16_agreement compares token ids slot by slot: bins tokenizers only (FAST chunks "
                         "vary in length)")
    work = Path(tempfile.mkdtemp(prefix="fp16_"))
    for dt, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        export_onnx(VLAPolicy.from_pretrained(args.checkpoint, dtype=dt), io, work / name)
    rt32 = OnnxRuntime(work / "fp32", providers=["CPUExecutionProvider"])
    rt16 = OnnxRuntime(work / "fp16", providers=["CPUExecutionProvider"])
    obs = sim_observations(args.tasks, args.frames, io.cfg.vision.image_size)
    obs = [{k: o[k] for k in (*io.cfg.cameras, "instruction", "state") if k in o} for o in obs]
    same_tok = total = same_chunk = 0
    max_bins = 0
    max_act = 0.0
    for o in obs:
        a, b = rt32.infer(o), rt16.infer(o)
        same_tok += int((a.ids == b.ids).sum())
        total += a.ids.size
        same_chunk += int(np.array_equal(a.ids, b.ids))
        max_bins = max(max_bins, int(np.abs(a.ids.astype(np.int64) - b.ids.astype(np.int64)).max()))
        if bool(a.valid) and bool(b.valid):
            max_act = max(max_act, float(np.abs(a.actions - b.actions).max()))
    row = {"checkpoint": str(args.checkpoint), "observations": len(obs), "tasks": args.tasks,
           "token_agreement": same_tok / total, "chunk_agreement": same_chunk / len(obs),
           "max_token_id_difference": max_bins, "max_action_difference": max_act,
           "command": " ".join(["python", "scripts/bench_fp16_agreement.py", *(argv or sys.argv[1:])])}
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report[args.name] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps({args.name: row}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
