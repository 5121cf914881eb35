"""Helpers shared by the benchmark scripts in `scripts/`: timing, environment facts, JSON output.

    stats = time_calls(fn, repeats=20, warmup=3)      # {"p50_ms", "p99_ms", "mean_ms", "min_ms", "n"}
    write_result(path, {"name": ..., **stats})          # atomic JSON, plus machine facts
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vla.io import atomic_write_json


def time_calls(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> dict:
    """Wall-clock each call of `fn` (perf_counter) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    t = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    ms = t * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "n": int(repeats),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_result(path: str | os.PathLike, result: dict) -> None:
    atomic_write_json(path, {**result, "machine": machine_info(), "unix_time": time.time()})
    print(f"wrote {path}")


def demo_like_actions(n_episodes: int, length: int, seed: int = 0) -> np.ndarray:
    """Synthetic teleop-like EE-delta episodes [E, T, 7] in normalized units ([-1, 1]).

    Each episode moves through 3-5 waypoints with minimum-jerk profiles (the velocity shape of
    human reaching and of our scripted experts), small rotations, and a gripper that closes once
    and reopens: smooth within segments, with the step changes a gripper makes.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((n_episodes, length, 7))
    for e in range(n_episodes):
        k = rng.integers(3, 6)
        cuts = np.sort(rng.choice(np.arange(5, length - 5), size=k - 1, replace=False))
        bounds = np.concatenate([[0], cuts, [length]])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            s = np.linspace(0, 1, b - a)
            vel = 30 * s**2 * (1 - s) ** 2  # minimum-jerk velocity, peak 1.875
            out[e, a:b, :6] = vel[:, None] * rng.uniform(-0.5, 0.5, 6)[None] * [1, 1, 1, 0.3, 0.3, 0.3]
        close, open_ = np.sort(rng.choice(np.arange(1, length), size=2, replace=False))
        out[e, :, 6] = -1.0
        out[e, close:open_, 6] = 1.0
    out[..., :6] += rng.normal(0, 0.01, out[..., :6].shape)  # sensor/teleop noise
    return np.clip(out, -1.0, 1.0)
