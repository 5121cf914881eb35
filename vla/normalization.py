"""Per-dimension statistics and the normalizers that map actions/states into the tokenizer's range.

    stats = NormStats.fit(actions)                            # [N, D] -> min/max/mean/std/q01/q99/count
    norm = Normalizer(stats, mode="bounds_q99")               # gripper (last dim) untouched by default
    y = norm.normalize(actions); x = norm.unnormalize(y)      # numpy, any leading shape (torch-free)
    save_norm_stats(run / "norm_stats.json", {"action": norm})

Modes, applied where `mask` is True (elsewhere values pass through unchanged):
- `bounds_q99` (OpenVLA): `clip(2 * (x - q01) / (q99 - q01 + eps) - 1, -1, 1)`; robust to outliers,
  which saturate at +-1. The inverse is exact for values that were inside [q01, q99].
- `mean_std`: `(x - mean) / (std + eps)`.
- `min_max`: `2 * (x - min) / (max - min + eps) - 1` (not clipped).
- `openvla`: `bounds_q99` computed with exactly the float64 operations of OpenVLA's reference code
  (`predict_action`: `0.5 * (y + 1) * (q99 - q01) + q01` where the mask is set), so a converted
  checkpoint's actions equal the reference's bit for bit; `bounds_q99` folds the same map into one
  scale and offset, which differs from it in the last bits.
`eps = 1e-8` keeps a zero-range dimension (a constant joint, an unused axis) finite: it maps to -1
(bounds/min-max) or 0 (mean/std) instead of NaN.

The gripper is left alone by default because it is already in [-1, 1] and binary-ish: quantile
bounds of a mostly-open gripper would stretch a rare "closed" into saturation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla.io import atomic_write_text, read_json

EPS = 1e-8
MODES = ("bounds_q99", "mean_std", "min_max", "openvla")
_STAT_KEYS = ("min", "max", "mean", "std", "q01", "q99")


@dataclass(frozen=True)
class NormStats:
    """Per-dimension statistics of a [N, D] array (each field a float64 [D] array)."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int

    def __post_init__(self) -> None:
        shapes = {k: np.shape(getattr(self, k)) for k in _STAT_KEYS}
        if len(set(shapes.values())) != 1 or len(shapes["min"]) != 1:
            raise ValueError(f"NormStats fields must all be 1-D of the same length, got shapes {shapes}")
        for k in _STAT_KEYS:
            if not np.all(np.isfinite(getattr(self, k))):
                raise ValueError(f"NormStats.{k} contains NaN/inf: {getattr(self, k)}")
        if int(self.count) < 1:
            raise ValueError(f"NormStats.count must be >= 1, got {self.count}")

    @property
    def dim(self) -> int:
        return int(np.shape(self.min)[0])

    @classmethod
    def fit(cls, x: Any) -> NormStats:
        """Statistics over every leading axis of `x` [..., D]; NaN/inf raise ValueError."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim < 1 or arr.size == 0:
            raise ValueError(f"cannot fit statistics on an empty array of shape {arr.shape}")
        arr = arr.reshape(-1, arr.shape[-1])
        if not np.all(np.isfinite(arr)):
            raise ValueError("cannot fit statistics: data contains NaN/inf")
        q01, q99 = np.quantile(arr, [0.01, 0.99], axis=0)
        return cls(arr.min(0), arr.max(0), arr.mean(0), arr.std(0), q01, q99, int(arr.shape[0]))

    def to_dict(self) -> dict:
        d = {k: np.asarray(getattr(self, k), dtype=np.float64).tolist() for k in _STAT_KEYS}
        d["count"] = int(self.count)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        missing = [k for k in (*_STAT_KEYS, "count") if k not in d]
        if missing:
            raise ValueError(f"norm stats are missing {missing}")
        arrs = {k: np.asarray(d[k], dtype=np.float64).reshape(-1) for k in _STAT_KEYS}
        count = d["count"]
        count = int(np.asarray(count).reshape(-1)[0])  # LeRobot stores count as a 1-element list
        return cls(**arrs, count=count)


class Normalizer:
    """Normalize / unnormalize [..., D] arrays with one mode and a per-dimension mask."""

    def __init__(self, stats: NormStats, mode: str = "bounds_q99", mask: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown normalization mode {mode!r}; available: {list(MODES)}")
        self.stats, self.mode = stats, mode
        d = stats.dim
        if mask is None:  # default: everything but the last dimension (the gripper)
            mask = np.arange(d) < d - 1 if d > 1 else np.ones(1, dtype=bool)
        m = np.asarray(mask)
        if m.shape != (d,) or m.dtype.kind != "b":
            raise ValueError(f"mask must be a bool array of shape ({d},), got {m.dtype} {m.shape}")
        self.mask = m.astype(bool)
        if mode in ("bounds_q99", "openvla"):
            lo, hi = stats.q01, stats.q99
            scale, offset = 2.0 / (hi - lo + EPS), lo
        elif mode == "min_max":
            lo, hi = stats.min, stats.max
            scale, offset = 2.0 / (hi - lo + EPS), lo
        else:
            scale, offset = 1.0 / (stats.std + EPS), stats.mean
        # y = (x - offset) * scale + shift, only where mask; identity elsewhere
        shift = -1.0 if mode != "mean_std" else 0.0
        self._offset = np.where(self.mask, offset, 0.0)
        self._scale = np.where(self.mask, scale, 1.0)
        self._shift = np.where(self.mask, shift, 0.0)
        self._clip = mode in ("bounds_q99", "openvla")

    @property
    def dim(self) -> int:
        return self.stats.dim

    def _check(self, x: Any, what: str) -> Any:
        arr = np.asarray(x)
        if arr.ndim < 1 or arr.shape[-1] != self.dim:
            raise ValueError(f"{what} last dimension must be {self.dim}, got shape {arr.shape}")
        return arr if arr.dtype.kind == "f" else arr.astype(np.float64)

    def normalize(self, x: Any) -> Any:
        x = self._check(x, "input")
        if self.mode == "openvla":  # OpenVLA's data pipeline: 2 * (x - low) / (high - low + 1e-8) - 1, clipped
            lo, hi = self.stats.q01, self.stats.q99
            y = np.where(self.mask, np.clip(2 * (x - lo) / (hi - lo + EPS) - 1, -1.0, 1.0), x)
            return y.astype(x.dtype, copy=False)
        y = (x - self._offset) * self._scale + self._shift
        if self._clip:
            y = np.where(self.mask, np.clip(y, -1.0, 1.0), y)
        return y.astype(x.dtype, copy=False)

    def unnormalize(self, y: Any) -> Any:
        y = self._check(y, "normalized input")
        if self.mode == "openvla":  # the reference's predict_action, operation for operation
            lo, hi = self.stats.q01, self.stats.q99
            x = np.where(self.mask, 0.5 * (y + 1) * (hi - lo) + lo, y)
            return x.astype(y.dtype, copy=False)
        x = (y - self._shift) / self._scale + self._offset
        return x.astype(y.dtype, copy=False)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "mask": self.mask.tolist(), "stats": self.stats.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        for k in ("mode", "mask", "stats"):
            if k not in d:
                raise ValueError(f"normalizer entry is missing {k!r}")
        return cls(NormStats.from_dict(d["stats"]), d["mode"], np.asarray(d["mask"], dtype=bool))


def save_norm_stats(path: str | os.PathLike, normalizers: dict[str, Normalizer]) -> None:
    """Write `{key: normalizer}` as JSON, atomically (temp file + os.replace)."""
    payload = {k: n.to_dict() for k, n in normalizers.items()}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def load_norm_stats(path: str | os.PathLike) -> dict[str, Normalizer]:
    payload = read_json(path, f"norm stats file not found: {path}")
    return {k: Normalizer.from_dict(v) for k, v in payload.items()}
