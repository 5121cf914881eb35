"""Fit normalization + an action tokenizer on demonstration actions and measure what it loses.

    norm, tok, report = fit_on_episodes(episodes, kind="fast", horizon=10, vocab_size=32000)
    # report: tokens per chunk, valid fraction, round-trip error in normalized and robot units

Used by `vla tokenizer fit`, the quick start, and scripts/bench_tokenizers.py, so all three
measure the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vla.normalization import Normalizer, NormStats
from vla.tokenizers.base import ActionTokenizer
from vla.tokenizers.bins import BinActionTokenizer
from vla.tokenizers.fast import FastActionTokenizer


def chunk_episodes(episodes: Sequence[np.ndarray], horizon: int) -> np.ndarray:
    """Every length-`horizon` window of every episode ([T_i, D] each) -> [N, H, D]."""
    out = []
    for ep in episodes:
        ep = np.asarray(ep)
        if ep.ndim != 2:
            raise ValueError(f"each episode must be [T, D], got shape {ep.shape}")
        if len(ep) >= horizon:
            idx = np.arange(len(ep) - horizon + 1)[:, None] + np.arange(horizon)[None]
            out.append(ep[idx])
    if not out:
        raise ValueError(f"no episode is at least horizon={horizon} steps long")
    return np.concatenate(out)


def roundtrip_report(tok: ActionTokenizer, norm: Normalizer, raw_chunks: np.ndarray) -> dict:
    """Encode/decode raw (robot-unit) chunks [N, H, D]; errors in normalized and robot units."""
    x = norm.normalize(raw_chunks)
    if isinstance(tok, FastActionTokenizer):
        ids = tok.encode(x)
        lens = np.array([len(s) for s in ids], dtype=np.float64)
        dec = tok.decode(ids)
        valid = dec.valid
    else:
        ids = tok.encode(x)
        lens = np.full(len(x), ids[0].size, dtype=np.float64)
        dec = tok.decode(ids)
        valid = dec.valid.all(axis=-1)
    ok = dec.actions[valid]
    err_n = np.abs(ok - np.clip(x[valid], -1, 1))
    err_r = np.abs(norm.unnormalize(ok) - raw_chunks[valid])
    return {
        "tokenizer": tok.type_name,
        "chunks": int(len(x)),
        "horizon": int(x.shape[1]),
        "tokens_per_chunk_mean": float(lens.mean()),
        "tokens_per_chunk_p99": float(np.percentile(lens, 99)),
        "valid_fraction": float(valid.mean()),
        "mean_abs_err_normalized": float(err_n.mean()) if err_n.size else float("nan"),
        "max_abs_err_normalized": float(err_n.max()) if err_n.size else float("nan"),
        "mean_abs_err_robot": err_r.reshape(-1, x.shape[-1]).mean(0).tolist() if err_r.size else [],
    }


def fit_on_episodes(
    episodes: Sequence[np.ndarray],
    kind: str = "bins",
    horizon: int = 10,
    vocab_size: int = 32000,
    n_bins: int = 256,
    n_tokens: int = 1024,
    norm_mode: str = "bounds_q99",
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[Normalizer, ActionTokenizer, dict]:
    """Fit a normalizer and a tokenizer on episodes ([T_i, 7] robot-unit actions each).

    The tokenizer is fitted on (1 - holdout) of the chunks and the report is measured on the rest.
    """
    if kind not in ("bins", "bins_quantile", "fast"):
        raise ValueError(f"unknown tokenizer kind {kind!r}; available: ['bins', 'bins_quantile', 'fast']")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    flat = np.concatenate([np.asarray(e, dtype=np.float64) for e in episodes])
    norm = Normalizer(NormStats.fit(flat), norm_mode)
    chunks = chunk_episodes(episodes, horizon)
    perm = np.random.default_rng(seed).permutation(len(chunks))
    n_fit = max(1, int(round(len(chunks) * (1 - holdout))))
    fit_c, test_c = chunks[perm[:n_fit]], chunks[perm[n_fit:]]
    if len(test_c) == 0:
        test_c = fit_c
    if kind == "bins":
        tok: ActionTokenizer = BinActionTokenizer(vocab_size, n_bins)
    elif kind == "bins_quantile":
        tok = BinActionTokenizer.fit_quantiles(norm.normalize(fit_c.reshape(-1, flat.shape[-1])), vocab_size, n_bins)
    else:
        tok = FastActionTokenizer(vocab_size, flat.shape[-1], horizon, n_tokens=n_tokens).fit(norm.normalize(fit_c))
    return norm, tok, roundtrip_report(tok, norm, test_c)
