"""Benchmark the action tokenizers: throughput and tokens per chunk, against OpenVLA's reference code.

    .venv/bin/python scripts/bench_tokenizers.py --out benchmarks/tokenizers.json

- bins: encode+decode throughput (action dims/s, one core) of BinActionTokenizer vs OpenVLA's
  reference arithmetic (np.digitize + centre lookup), on 1M x 7 float32 actions.
- fast: encode+decode throughput of FastActionTokenizer on 10-step chunks, and its mean/p99 tokens
  per chunk vs binning's fixed H*D, on demo-like smooth trajectories (vla.bench.demo_like_actions)
  or on a LeRobot dataset's actions (--dataset DIR), normalized with bounds_q99 first.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the goal states

import numpy as np  # noqa: E402

from vla.bench import demo_like_actions, time_calls, write_result  # noqa: E402
from vla.tokenizers import BinActionTokenizer  # noqa: E402
from vla.tokenizers.report import chunk_episodes, fit_on_episodes  # noqa: E402

V = 32000


def openvla_reference(a: np.ndarray, bins: np.ndarray, centres: np.ndarray) -> np.ndarray:
    ids = V - np.digitize(np.clip(a, -1.0, 1.0), bins)
    return centres[np.clip(V - ids - 1, 0, centres.shape[0] - 1)]


def load_dataset_episodes(root: str) -> list[np.ndarray]:
    from vla.data import LeRobotDataset

    ds = LeRobotDataset(root)
    acts = ds.get_column("action")
    return [acts[slice(*ds.episode_bounds(ep))] for ep in range(ds.num_episodes)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/tokenizers.json")
    p.add_argument("--n", type=int, default=1_000_000, help="actions for the binning throughput test")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--dataset", default=None, help="LeRobot dataset whose actions to chunk (default: synthetic)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    a = rng.uniform(-1.1, 1.1, size=(args.n, 7)).astype(np.float32)
    tok = BinActionTokenizer(V)
    bins = np.linspace(-1, 1, 256)
    centres = (bins[:-1] + bins[1:]) / 2
    ours = time_calls(lambda: tok.decode(tok.encode(a)), repeats=args.repeats)
    ref = time_calls(lambda: openvla_reference(a, bins, centres), repeats=args.repeats)
    dims = a.size
    bins_res = {
        "dims": dims,
        "ours_dims_per_s": dims / (ours["p50_ms"] / 1e3),
        "openvla_reference_dims_per_s": dims / (ref["p50_ms"] / 1e3),
        "speedup_vs_openvla": ref["p50_ms"] / ours["p50_ms"],
        "goal_dims_per_s": 20e6,
        "ours_ms": ours,
        "reference_ms": ref,
    }
    print(f"bins: {bins_res['ours_dims_per_s'] / 1e6:.1f}M dims/s "
          f"(OpenVLA reference {bins_res['openvla_reference_dims_per_s'] / 1e6:.1f}M, "
          f"{bins_res['speedup_vs_openvla']:.2f}x)")

    h = args.horizon
    if args.dataset:
        episodes = load_dataset_episodes(args.dataset)
        source = f"dataset:{args.dataset}"
    else:
        episodes = list(demo_like_actions(200, 120, seed=1))
        source = "synthetic demo_like_actions(200 episodes x 120 steps)"
    norm, fast, fast_res = fit_on_episodes(episodes, "fast", horizon=h, vocab_size=V)
    _, _, bins_rt = fit_on_episodes(episodes, "bins", horizon=h, vocab_size=V)
    test = norm.normalize(chunk_episodes(episodes, h)[: fast_res["chunks"]])
    t_fast = time_calls(lambda: fast.decode(fast.encode(test)), repeats=max(3, args.repeats // 3), warmup=1)
    fast_res.update(
        source=source,
        bpe_vocab=int(len(fast.action_token_ids)),
        binning_tokens_per_chunk=h * 7,
        compression_vs_binning=h * 7 / fast_res["tokens_per_chunk_mean"],
        binning_mean_abs_err_normalized=bins_rt["mean_abs_err_normalized"],
        dims_per_s=test.size / (t_fast["p50_ms"] / 1e3),
        ms=t_fast,
    )
    print(f"fast: {fast_res['tokens_per_chunk_mean']:.1f} tokens/chunk vs {h * 7} for binning "
          f"({fast_res['compression_vs_binning']:.2f}x fewer), {fast_res['dims_per_s'] / 1e6:.2f}M dims/s, "
          f"mean abs err {fast_res['mean_abs_err_normalized']:.4f} normalized "
          f"(binning {bins_rt['mean_abs_err_normalized']:.4f})")
    write_result(args.out, {"benchmark": "tokenizers", "bins": bins_res, "fast": fast_res})


if __name__ == "__main__":
    main()
