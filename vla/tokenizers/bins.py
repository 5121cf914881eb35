"""Uniform (OpenVLA) and quantile binning of continuous actions onto reserved vocabulary ids.

OpenVLA's convention, reproduced bit-exactly by default:

    edges   = linspace(low, high, n_bins)               # n_bins *edges*, i.e. n_bins - 1 intervals
    ids     = vocab_size - digitize(clip(a, low, high), edges)
    centres = (edges[:-1] + edges[1:]) / 2              # n_bins - 1 centres
    a_hat   = centres[clip(vocab_size - ids - 1, 0, n_bins - 2)]

Edges vs centres: `digitize` returns k in [1, n_bins] with edges[k-1] <= a < edges[k]; the value
decodes to the centre of that interval, so the round-trip error is at most half an interval width
`(high - low) / (n_bins - 1) / 2`. `a == high` digitizes to k = n_bins, which has no interval of its
own; OpenVLA clips it into the last interval, and so do we. Ids therefore occupy the block
`[vocab_size - n_bins, vocab_size - 1]` (the last ids of the LLM vocabulary, which OpenVLA
overwrites because Llama-2 rarely uses them).

Beyond OpenVLA:
- `fit_quantiles(data)`: per-dimension edges at data quantiles, so bins are dense where actions are.
- `decode` refuses ids outside the block (`strict=True`, ValueError) or marks them invalid
  (`strict=False`): OpenVLA silently clips stray tokens into the edge bins.
- `logits_processor(vocab_size)` restricts generation to the action ids.

Encoding avoids a binary search: it computes the bin arithmetically, then corrects the rare
off-by-one at an edge with two table look-ups, which keeps it identical to `np.digitize`
(tested on values one ulp either side of every edge) at several times its speed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vla.tokenizers.base import ActionTokenizer, Decoded, check_actions


def _round_up_to_f32(v: np.ndarray) -> np.ndarray:
    """Smallest float32 >= each float64 value: for float32 x, `x < v` <=> `x < up(v)` exactly."""
    c = v.astype(np.float32)
    return np.where(c.astype(np.float64) < v, np.nextafter(c, np.float32(np.inf)), c)


class BinActionTokenizer(ActionTokenizer):
    """Per-dimension binning; `vocab_size - digitize(a)` ids, OpenVLA-compatible by default."""

    type_name: ClassVar[str] = "bins"

    def __init__(
        self,
        vocab_size: int,
        n_bins: int = 256,
        low: float = -1.0,
        high: float = 1.0,
        edges: np.ndarray | None = None,
    ) -> None:
        if int(vocab_size) != vocab_size or vocab_size <= 0:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        if int(n_bins) != n_bins or n_bins < 2:
            raise ValueError(f"n_bins must be an int >= 2, got {n_bins!r}")
        if n_bins > vocab_size:
            raise ValueError(f"n_bins ({n_bins}) cannot exceed vocab_size ({vocab_size})")
        self.vocab_size = int(vocab_size)
        self.n_bins = int(n_bins)
        if edges is None:
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
            self.low, self.high = float(low), float(high)
            self.edges = np.linspace(self.low, self.high, self.n_bins)  # [n_bins]
        else:
            e = np.asarray(edges, dtype=np.float64)
            if e.ndim != 2 or e.shape[1] != self.n_bins:
                raise ValueError(f"per-dimension edges must have shape [D, n_bins={n_bins}], got {e.shape}")
            if not np.all(np.isfinite(e)) or np.any(np.diff(e, axis=1) <= 0):
                raise ValueError("per-dimension edges must be finite and strictly increasing")
            self.edges = e  # [D, n_bins]
            self.low, self.high = float(e[:, 0].min()), float(e[:, -1].max())
        self._build_tables()

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def fit_quantiles(
        cls, data: np.ndarray, vocab_size: int, n_bins: int = 256, min_width: float = 1e-6
    ) -> BinActionTokenizer:
        """Per-dimension edges at evenly spaced quantiles of `data` [N, D] (normalized actions).

        A dimension with (near-)constant data gets edges `min_width` apart around its value, so every
        dimension keeps strictly increasing edges.
        """
        x = check_actions(np.asarray(data, dtype=np.float64), None, "fit data")
        x = x.reshape(-1, x.shape[-1])
        if x.shape[0] < 2:
            raise ValueError(f"fit data needs at least 2 rows, got {x.shape[0]}")
        q = np.quantile(x, np.linspace(0.0, 1.0, n_bins), axis=0).T  # [D, n_bins]
        # enforce strictly increasing edges (ties where data repeats a value)
        steps = np.maximum(np.diff(q, axis=1), min_width)
        q = np.concatenate([q[:, :1], q[:, :1] + np.cumsum(steps, axis=1)], axis=1)
        return cls(vocab_size, n_bins, edges=q)

    def _build_tables(self) -> None:
        e = self.edges
        self.per_dim = e.ndim == 2
        self.centres = (e[..., :-1] + e[..., 1:]) / 2.0  # [(D,) n_bins - 1]
        self._centres32 = self.centres.astype(np.float32)
        inf = np.full(e.shape[:-1] + (1,), np.inf)
        # edges with a +inf sentinel at index n_bins, in float64 and rounded up to float32
        self._edges64 = np.concatenate([e, inf], axis=-1)
        self._edges32 = _round_up_to_f32(self._edges64)
        if self.per_dim:  # flat centre table indexed by dim * (n_bins - 1) + k: one np.take for all dims
            self._off_c = np.arange(e.shape[0]) * (self.n_bins - 1)
        self._ids = np.arange(self.vocab_size - self.n_bins, self.vocab_size, dtype=np.int64)

    # ---- interface ------------------------------------------------------------------------

    @property
    def action_dim(self) -> int | None:
        return int(self.edges.shape[0]) if self.per_dim else None

    @property
    def action_token_ids(self) -> np.ndarray:
        return self._ids

    @property
    def bin_width(self) -> np.ndarray | float:
        """Interval width(s); round-trip error inside [low, high] is at most half of it."""
        w = np.diff(self.edges, axis=-1)
        return float(w[0]) if not self.per_dim else w

    def tokens_per_step(self, action_dim: int) -> int:
        return int(action_dim)

    def encode(self, actions: Any) -> Any:
        """[..., D] actions -> int64 ids [..., D] (numpy; torch callers convert: this package is torch-free)."""
        x = check_actions(actions, self.action_dim)
        if x.dtype != np.float32:
            x = x.astype(np.float64, copy=False)
        return self.vocab_size - self._digitize(x)

    def _digitize(self, x: np.ndarray) -> np.ndarray:
        """Exactly `np.digitize(clip(x, lo, hi), edges)` (per dimension), float32 or float64 x."""
        f32 = x.dtype == np.float32
        table = self._edges32 if f32 else self._edges64
        e = self.edges
        lo = e[..., 0].astype(x.dtype)
        hi = e[..., -1].astype(x.dtype)
        xc = np.clip(x, lo, hi)  # [..., D]
        if self.per_dim:  # quantile bins are not uniform: no arithmetic shortcut, search exactly
            return self._search_per_dim(xc, table)
        inv = x.dtype.type((self.n_bins - 1) / (self.high - self.low))
        k = ((xc - lo) * inv).astype(np.int32)
        k += 1
        np.minimum(k, self.n_bins, out=k)
        k -= xc < table[k - 1]
        k += xc >= table[k]
        return k.astype(np.int64)

    def _search_per_dim(self, xc: np.ndarray, table: np.ndarray) -> np.ndarray:
        out = np.empty(xc.shape, dtype=np.int64)
        for d in range(xc.shape[-1]):
            out[..., d] = np.searchsorted(table[d, : self.n_bins], xc[..., d], side="right")
        return out

    def decode(self, ids: Any, strict: bool = True, dtype: Any = np.float32) -> Decoded:
        """Ids [..., D] -> Decoded(actions `dtype` [..., D], valid bool [...]).

        strict=True raises ValueError on an id outside the reserved block; strict=False marks that
        action step invalid (its actions NaN) instead. dtype=np.float64 returns the float64 bin centres
        (OpenVLA's `bin_centers`), not float32-rounded ones.
        """
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError("token ids need at least one dimension (the action dim)")
        if self.per_dim and arr.shape[-1] != self.action_dim:
            raise ValueError(f"ids last dimension must be {self.action_dim}, got shape {arr.shape}")
        arr = arr.astype(np.int64, copy=False)
        inside = (arr >= self.vocab_size - self.n_bins) & (arr < self.vocab_size)
        all_inside = bool(inside.all())
        if strict and not all_inside:
            bad = arr[~inside].ravel()[0]
            raise ValueError(
                f"token id {int(bad)} is outside the action block "
                f"[{self.vocab_size - self.n_bins}, {self.vocab_size - 1}]"
            )
        k = (self.vocab_size - 1) - arr
        np.clip(k, 0, self.n_bins - 2, out=k)
        table = self.centres if np.dtype(dtype) == np.float64 else self._centres32
        if self.per_dim:
            actions = np.take(table.ravel(), k + self._off_c)
        else:
            actions = np.take(table, k)
        if all_inside:
            return Decoded(actions, np.ones(arr.shape[:-1], dtype=bool))
        valid = inside.all(axis=-1)
        actions[~valid] = np.nan
        return Decoded(actions, valid)


    def to_config(self) -> dict:
        cfg = {"type": self.type_name, "vocab_size": self.vocab_size, "n_bins": self.n_bins}
        if self.per_dim:
            cfg["edges"] = self.edges.tolist()
        else:
            cfg.update(low=self.low, high=self.high)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict) -> BinActionTokenizer:
        edges = cfg.get("edges")
        return cls(
            cfg["vocab_size"],
            cfg.get("n_bins", 256),
            cfg.get("low", -1.0),
            cfg.get("high", 1.0),
            edges=None if edges is None else np.asarray(edges, dtype=np.float64),
        )
