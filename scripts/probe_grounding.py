"""Does a policy read the colour word? Re-ask each first frame naming each cube in the scene in turn.

    .venv/bin/python scripts/probe_grounding.py --checkpoint runs/tiny/checkpoint --task ReachCube --scenes 40 \
        --out benchmarks/grounding.json

For every scene (seeds --seed ...) and every cube i on the table, the instruction is rewritten to name cube i's
colour and the policy predicts one chunk from the same first frame. The chunk's summed xy displacement "points
at" the cube it is most aligned with (cosine, from the gripper). A policy that grounds the colour word points
at the named cube every time; one that ignores it scores chance (1 / cubes). `spread` is how much the chunk
changes across the colours, relative to its size (0 = the instruction changes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np


def probe(policy: Any, env: Any, seeds: range) -> dict[str, float]:
    """policy: a runtime (vla.runtime.Runtime: predict_action(obs) -> [H, 7]); env: a sim task env (ReachCube, PickCube, ...)."""
    u = env.unwrapped
    hits = n = 0
    spreads = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        tcp = u.tcp_pose()[0][:2]
        named = u.colours[f"cube{u.target}"]
        to_cube = [u.cube_pos(j)[:2] - tcp for j in range(u.config.n_cubes)]
        moves = []
        for i in range(u.config.n_cubes):
            asked = dict(obs, instruction=u.instruction.replace(named, u.colours[f"cube{i}"]))
            move = np.asarray(policy.predict_action(asked))[:, :2].sum(0)  # [2] xy over the chunk
            cos = [float(move @ d) / (np.linalg.norm(move) * np.linalg.norm(d) + 1e-9) for d in to_cube]
            hits += int(np.argmax(cos) == i)
            n += 1
            moves.append(move)
        m = np.stack(moves)
        spreads.append(float(np.linalg.norm(m - m.mean(0), axis=1).mean() / (np.linalg.norm(m, axis=1).mean() + 1e-9)))
    return {"points_at_named": hits / n, "asked": n, "chance": 1.0 / u.config.n_cubes,
            "spread": float(np.mean(spreads))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a `vla train` checkpoint directory")
    ap.add_argument("--task", default="ReachCube")
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--seed", type=int, default=200, help="first scene seed (default 200)")
    ap.add_argument("--out", help="JSON report")
    args = ap.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    import sim
    from vla.model.runtime import TorchRuntime

    torch.set_num_threads(1)
    policy = TorchRuntime.from_checkpoint(args.checkpoint)  # any vla.runtime.Runtime works here
    env = sim.make(args.task, image_size=policy.cfg.vision.image_size)
    report = {"checkpoint": args.checkpoint, "task": args.task, "seed": args.seed,
              **probe(policy, env, range(args.seed, args.seed + args.scenes))}
    env.close()
    print(json.dumps(report, indent=2))
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
