"""Benchmark vla.data: episode write throughput and random-access reads of a LeRobot v3.0 dataset.

    .venv/bin/python scripts/bench_data.py --episodes 10 --length 100 --out benchmarks/data.json

Writes synthetic episodes (two 128x128 cameras, state [8], action [7]) with LeRobotDatasetWriter
(images in parquet and, with --videos, mp4), then times `LeRobotDataset[i]` at random indices against
the baseline a user would otherwise write: `pandas.read_parquet` of the data file plus PIL decode of
the row's PNGs per lookup. Reports ratios (baseline time / ours).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from vla.data import LeRobotDataset, LeRobotDatasetWriter

CAMS = ("observation.images.agentview", "observation.images.wrist")


def features(size: int) -> dict:
    f = {
        k: {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channel"]} for k in CAMS
    }
    f["observation.state"] = {"dtype": "float32", "shape": [8], "names": [f"s{i}" for i in range(8)]}
    f["action"] = {"dtype": "float32", "shape": [7], "names": [f"a{i}" for i in range(7)]}
    return f


def scene(rng: np.random.Generator, size: int, t: int) -> np.ndarray:
    """A sim-like frame: flat table, a few coloured boxes that move with t, mild sensor noise."""
    img = np.full((size, size, 3), (180, 170, 150), np.uint8)
    img[: size // 3] = (90, 110, 140)
    for j in range(3):
        y, x = (20 + 25 * j + t) % (size - 16), (30 + 17 * j + 2 * t) % (size - 16)
        img[y : y + 14, x : x + 14] = ((200, 40, 40), (40, 160, 60), (40, 60, 200))[j]
    return np.clip(img + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)


def write(root: Path, args, use_videos: bool) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    per_save = []
    with LeRobotDatasetWriter(
        root, fps=10, robot_type="franka_panda", features=features(args.size), use_videos=use_videos
    ) as w:
        for e in range(args.episodes):
            for t in range(args.length):
                frame = {k: scene(rng, args.size, t + 7 * e + 13 * c) for c, k in enumerate(CAMS)}
                frame["observation.state"] = rng.normal(size=8).astype(np.float32)
                frame["action"] = rng.normal(size=7).astype(np.float32)
                w.add_frame(frame, task="pick up the red cube")
            s = time.perf_counter()
            w.save_episode()
            per_save.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    n = args.episodes * args.length
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {
        "frames": n,
        "write_frames_per_s": n / total,
        "save_episode_ms_mean": 1e3 * float(np.mean(per_save)),
        "save_episode_ms_last": 1e3 * per_save[-1],
        "bytes_per_frame": size / n,
    }


def read(root: Path, args, baseline: bool) -> dict:
    t0 = time.perf_counter()
    ds = LeRobotDataset(root)
    open_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(ds), args.reads)
    ds[0]  # warm the file cache, as a training loader would after its first batch
    t0 = time.perf_counter()
    for i in idx:
        ds[int(i)]
    ours = (time.perf_counter() - t0) / len(idx)
    t0 = time.perf_counter()
    ds.get_column("action")
    out = {"open_s": open_s, "getitem_ms": 1e3 * ours, "get_column_ms": 1e3 * (time.perf_counter() - t0)}
    if baseline:
        path = root / "data/chunk-000/file-000.parquet"
        n_base = max(3, len(idx) // 50)  # the baseline is slow; fewer lookups suffice
        t0 = time.perf_counter()
        for i in idx[:n_base]:
            row = pd.read_parquet(path).iloc[int(i)]
            for k in CAMS:
                np.asarray(Image.open(io.BytesIO(row[k]["bytes"])).convert("RGB"))
        base = (time.perf_counter() - t0) / n_base
        out.update({"baseline_pandas_getitem_ms": 1e3 * base, "speedup_vs_pandas": base / ours})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--reads", type=int, default=500)
    p.add_argument("--videos", action="store_true", help="also benchmark use_videos=True")
    p.add_argument("--out", default="benchmarks/data.json")
    args = p.parse_args()
    result = {"config": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, vid in [("images", False)] + ([("videos", True)] if args.videos else []):
            root = Path(tmp) / name
            result[name] = {"write": write(root, args, vid), "read": read(root, args, baseline=not vid)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
