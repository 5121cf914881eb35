"""`vla train`: fine-tune a policy on a LeRobot dataset (see `vla.train.loop` for the run directory).

    vla train --config tiny --dataset data/demos --out runs/tiny [--max-steps 200]     # named config, or a YAML path
    vla train --config tiny --dataset data/pick data/push --out runs/multi   # multi-task
    vla train ... --set lr=3e-4 --set freeze_vision=true       # any TrainConfig field (YAML-parsed value)
    vla train ... --resume                                     # continue runs/tiny from train_state/
    vla train --config tiny --init-from runs/openvla --set lora='{r: 8}' ...   # fine-tune a converted checkpoint
    torchrun --nproc_per_node 2 -m vla.cli.train --config ...  # DDP (this module runs standalone)
"""

from __future__ import annotations

import argparse


def _parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _handler(args: argparse.Namespace) -> int:
    import json

    from vla.train import TrainConfig, train

    overrides = _parse_sets(args.set or [])
    if args.init_from is not None:
        overrides["init_from"] = args.init_from
    for name in ("max_steps", "batch_size", "lr", "seed"):
        v = getattr(args, name)
        if v is not None:
            overrides[name] = v
    cfg = TrainConfig.load(args.config, overrides)
    summary = train(cfg, args.dataset, args.out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({k: summary.get(k) for k in ("steps", "train_seconds", "last_train", "last_eval")}, indent=2))
    print(f"checkpoint: {args.out}/checkpoint")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a VLA policy on a LeRobot dataset",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a named training config (vla/configs/train: tiny) or a YAML path")
    p.add_argument("--dataset", required=True, nargs="+", help="LeRobot dataset root(s); several = multi-task")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any TrainConfig field")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--init-from", metavar="CKPT", help="fine-tune this checkpoint (e.g. a converted OpenVLA) instead "
                   "of a fresh model; statistics are refit on --dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_handler)


def main(argv: list[str] | None = None) -> int:
    """`python -m vla.cli.train ...` (what torchrun launches): the train command alone."""
    parser = argparse.ArgumentParser(prog="vla train")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
