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

from vla.bench import chunk_episodes, demo_like_actions, time_calls, write_result  # noqa: E402
from vla.normalization import NormStats, Normalizer  # noqa: E402
from vla.tokenizers import BinActionTokenizer, FastActionTokenizer  # noqa: E402

V = 32000


def openvla_reference(a: np.ndarray, bins: np.ndarray, centres: np.ndarray) -> np.ndarray:
    ids = V - np.digitize(np.clip(a, -1.0, 1.0), bins)
    return centres[np.clip(V - ids - 1, 0, centres.shape[0] - 1)]


def load_dataset_actions(root: str, horizon: int) -> np.ndarray:
    from vla.data import LeRobotDataset

    ds = LeRobotDataset(root)
    acts = ds.get_column("action")
    chunks = []
    for ep in range(ds.num_episodes):
        a, b = ds.episode_bounds(ep)
        if b - a >= horizon:
            chunks.append(chunk_episodes(acts[a:b][None], horizon))
    return np.concatenate(chunks)


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
        raw = load_dataset_actions(args.dataset, h)
        source = f"dataset:{args.dataset}"
    else:
        raw = chunk_episodes(demo_like_actions(200, 120, seed=1), h)
        source = "synthetic demo_like_actions(200 episodes x 120 steps)"
    norm = Normalizer(NormStats.fit(raw.reshape(-1, 7)))
    chunks = norm.normalize(raw)
    perm = rng.permutation(len(chunks))
    n_fit = len(chunks) * 4 // 5
    fit, test = chunks[perm[:n_fit]], chunks[perm[n_fit:]]
    fast = FastActionTokenizer(V, 7, h, n_tokens=1024).fit(fit)
    ids = fast.encode(test)
    lens = np.array([len(s) for s in ids])
    dec = fast.decode(ids)
    err_robot = np.abs(norm.unnormalize(dec.actions) - norm.unnormalize(test))
    bin_dec = tok.decode(tok.encode(test)).actions
    bin_err_robot = np.abs(norm.unnormalize(bin_dec) - norm.unnormalize(test))
    t_fast = time_calls(lambda: fast.decode(fast.encode(test)), repeats=max(3, args.repeats // 3), warmup=1)
    fast_res = {
        "source": source,
        "horizon": h,
        "fit_chunks": int(len(fit)),
        "test_chunks": int(len(test)),
        "bpe_vocab": int(len(fast.action_token_ids)),
        "tokens_per_chunk_mean": float(lens.mean()),
        "tokens_per_chunk_p99": float(np.percentile(lens, 99)),
        "binning_tokens_per_chunk": h * 7,
        "compression_vs_binning": float(h * 7 / lens.mean()),
        "valid_fraction": float(dec.valid.mean()),
        "mean_abs_err_normalized": float(np.abs(dec.actions - test).mean()),
        "mean_abs_err_robot_units": float(err_robot.mean()),
        "binning_mean_abs_err_robot_units": float(bin_err_robot.mean()),
        "dims_per_s": test.size / (t_fast["p50_ms"] / 1e3),
        "ms": t_fast,
    }
    print(f"fast: {fast_res['tokens_per_chunk_mean']:.1f} tokens/chunk vs {h * 7} for binning "
          f"({fast_res['compression_vs_binning']:.2f}x fewer), {fast_res['dims_per_s'] / 1e6:.2f}M dims/s, "
          f"mean abs err {fast_res['mean_abs_err_normalized']:.4f} (normalized)")
    write_result(args.out, {"benchmark": "tokenizers", "bins": bins_res, "fast": fast_res})


if __name__ == "__main__":
    main()
