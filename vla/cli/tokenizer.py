"""`vla tokenizer fit`: fit normalization and an action tokenizer on a dataset's actions, report the loss.

    vla tokenizer fit --dataset runs/quickstart/demos --out runs/tok --type fast --horizon 10

Writes `norm_stats.json` (key "action"), `action_tokenizer.json` and `tokenizer_report.json`
(tokens per chunk, valid fraction, round-trip error per action dimension in robot units).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenizer", help="fit/inspect action tokenizers and normalization")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    f = tsub.add_parser("fit", help="fit normalization + an action tokenizer on a LeRobot dataset's actions")
    f.add_argument("--dataset", required=True, help="LeRobot-format dataset directory (v3.0 or v2.1)")
    f.add_argument("--out", required=True, help="output directory")
    f.add_argument("--type", default="bins", choices=["bins", "bins_quantile", "fast"])
    f.add_argument("--horizon", type=int, default=10, help="chunk length (FAST fits on chunks; report uses it too)")
    f.add_argument("--vocab-size", type=int, default=32000, help="LLM vocabulary size; actions use its last ids")
    f.add_argument("--n-bins", type=int, default=256)
    f.add_argument("--n-tokens", type=int, default=1024, help="FAST: reserved BPE vocabulary size")
    f.add_argument("--norm-mode", default="bounds_q99", choices=["bounds_q99", "mean_std", "min_max"])
    f.add_argument("--action-key", default="action")
    f.set_defaults(func=fit_cmd)


def fit_cmd(args: argparse.Namespace) -> int:
    from vla.data import LeRobotDataset
    from vla.io import atomic_write_json
    from vla.normalization import save_norm_stats
    from vla.tokenizers.report import fit_on_episodes

    ds = LeRobotDataset(args.dataset)
    if args.action_key not in ds.features:
        raise ValueError(f"dataset has no feature {args.action_key!r}; features: {sorted(ds.features)}")
    acts = ds.get_column(args.action_key)
    episodes = [acts[slice(*ds.episode_bounds(e))] for e in range(ds.num_episodes)]
    norm, tok, report = fit_on_episodes(
        episodes, args.type, horizon=args.horizon, vocab_size=args.vocab_size, n_bins=args.n_bins,
        n_tokens=args.n_tokens, norm_mode=args.norm_mode,
    )
    out = Path(args.out)
    save_norm_stats(out / "norm_stats.json", {"action": norm})
    atomic_write_json(out / "action_tokenizer.json", tok.to_config())
    report = {"dataset": str(args.dataset), "episodes": ds.num_episodes, **report}
    atomic_write_json(out / "tokenizer_report.json", report)
    print(json.dumps(report, indent=2))
    return 0
