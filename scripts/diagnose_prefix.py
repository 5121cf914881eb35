"""Does a policy read a forced prefix as information about the motion in flight, or copy it? (issue #18)

    .venv/bin/python scripts/diagnose_prefix.py --checkpoint runs/async/pc50_s0/checkpoint \\
        --demos runs/demos/PickCube/part0 runs/demos/ReachCube/part0 --out benchmarks/diagnose_prefix.json

On training frames, the chunk's later steps (k.., k = --given steps) are decoded three ways:
  free:  unforced;
  true:  the first k steps forced to the demo's own (the committed motion as the expert did it);
  other: the first k steps forced to another frame's (a prefix that disagrees with the image).
Reported: mean |bin error| of the later steps' translation tokens against the demo (and, for `other`, against
the other frame's). A policy that uses the prefix as dynamics gains from `true` and stays near the image's
answer under `other`; one that copies it follows the other frame. Works for autoregressive policies and
parallel ones trained with `action.prefix_conditioning`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vla.io import atomic_write_json  # noqa: E402
from vla.model.decoding import decode  # noqa: E402
from vla.model.policy import VLAPolicy  # noqa: E402
from vla.policy_io import PolicyIO  # noqa: E402
from vla.train.data import load_frames, make_batch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--demos", nargs="+", required=True, help="LeRobot dataset roots (finished parts)")
    p.add_argument("--frames", type=int, default=512, help="frames sampled (seed 0)")
    p.add_argument("--given", type=int, default=2, help="steps forced (k)")
    p.add_argument("--out", default=None, help="JSON report")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    policy = VLAPolicy.from_pretrained(args.checkpoint).eval()
    io = PolicyIO.load(args.checkpoint)
    a = policy.cfg.action
    if not a.conditions_on_prefix:
        raise SystemExit(f"{args.checkpoint}: decodes parallel without action.prefix_conditioning; a forced prefix "
                         "cannot change its continuation (nothing to diagnose)")
    if not 1 <= args.given < a.horizon:
        raise SystemExit(f"--given {args.given}: must be in [1, horizon - 1 = {a.horizon - 1}]")
    frames = load_frames(args.demos, policy.cfg.cameras, policy.cfg.vision.image_size, vision=policy.cfg.vision)
    idx = np.sort(np.random.default_rng(0).choice(len(frames), min(args.frames, len(frames)), replace=False))
    d, k = a.dim, args.given * a.dim
    errs: dict[str, list[float]] = {"free": [], "true": [], "other": [], "other_vs_other": []}

    def err(ids: torch.Tensor, ref: torch.Tensor) -> np.ndarray:  # [B] mean |bin error|, later steps' xyz
        e = (ids[:, k:] - ref[:, k:]).abs().float().reshape(len(ids), -1, d)[..., :3]
        return e.mean((1, 2)).numpy()

    for lo in range(0, len(idx), 64):
        b = make_batch(io, frames, idx[lo: lo + 64], None, None)
        inputs = {n: b[n] for n in ("pixel_values", "prompt_ids", "prompt_mask", "state") if n in b}
        tgt = b["action_ids"]
        perm = torch.roll(torch.arange(len(tgt)), 1)  # the neighbouring sampled frame (another time or episode)
        errs["free"] += list(err(decode(policy, inputs), tgt))
        errs["true"] += list(err(decode(policy, inputs, prefix_ids=tgt[:, :k]), tgt))
        other = decode(policy, inputs, prefix_ids=tgt[perm, :k])
        errs["other"] += list(err(other, tgt))
        errs["other_vs_other"] += list(err(other, tgt[perm]))
    summary = {n: {"mean": float(np.mean(v)), "sem": float(np.std(v) / np.sqrt(len(v)))} for n, v in errs.items()}
    report = {"checkpoint": args.checkpoint, "demos": args.demos, "frames": len(idx), "given_steps": args.given,
              "metric": "mean |bin error| of the later steps' translation tokens", "errors": summary}
    for n, s in summary.items():
        print(f"{n:>15}: {s['mean']:.2f} +- {s['sem']:.2f} bins")
    if args.out:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
