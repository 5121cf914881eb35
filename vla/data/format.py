"""The LeRobot on-disk layout: path templates, `info.json` keys, feature validation, arrow schemas.

Shared by the writer (`vla.data.writer`) and the reader (`vla.data.reader`). The layout follows
LeRobot's own writer (codebase v3.0; v2.1 for reading):

    meta/info.json                                  codebase_version, fps, features, totals, path templates
    meta/stats.json                                 {feature: {min, max, mean, std, q01, ..., count}}
    meta/tasks.parquet                              index "task" (str) + column task_index (int64)
    meta/episodes/chunk-000/file-000.parquet        one row per episode (bounds, files, stats/<feat>/<stat>)
    data/chunk-000/file-000.parquet                 one row per frame, images embedded as {bytes, path}
    videos/<key>/chunk-000/file-000.mp4             optional; episodes concatenated, from/to timestamps

Every file is written to a temporary sibling and moved into place with `os.replace`, so a reader
(or a crash) only ever sees a complete old or a complete new version of any file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vla.io import atomic_write_json as _atomic_write_json
from vla.io import read_json

CODEBASE_VERSION = "v3.0"
LEGACY_VERSION = "v2.1"

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"

# v2.1 (read only)
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"

DEFAULT_CHUNK_SIZE = 1000  # max files per chunk directory (LeRobot's default)
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

# Columns every LeRobot frame carries; filled by the writer, never by the caller.
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}

NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
VISUAL_DTYPES = ("image", "video")
STAT_KEYS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}

IMAGE_ARROW_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def validate_user_features(features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check a caller's feature spec; return a normalized deep copy (shapes as lists).

    Raises ValueError naming the feature and what is wrong with it.
    """
    if not isinstance(features, dict) or not features:
        raise ValueError(f"features must be a non-empty dict of name -> spec, got {features!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, ft in features.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"feature names must be non-empty strings, got {name!r}")
        if name in DEFAULT_FEATURES or name == "task":
            raise ValueError(f"feature {name!r} is reserved: the writer fills it; remove it from features")
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            raise ValueError(f"feature {name!r} needs a dict with 'dtype' and 'shape', got {ft!r}")
        dtype, shape = ft["dtype"], ft["shape"]
        if dtype not in NUMERIC_DTYPES + VISUAL_DTYPES:
            raise ValueError(
                f"feature {name!r}: dtype {dtype!r} not supported; use one of {NUMERIC_DTYPES + VISUAL_DTYPES}"
            )
        try:
            shape = [int(s) for s in shape]
        except (TypeError, ValueError) as e:
            raise ValueError(f"feature {name!r}: shape {shape!r} must be a sequence of ints") from e
        if any(s <= 0 for s in shape):
            raise ValueError(f"feature {name!r}: shape {shape} must have positive sizes")
        if dtype in VISUAL_DTYPES and (len(shape) != 3 or shape[2] != 3):
            raise ValueError(f"feature {name!r}: images need shape [height, width, 3], got {shape}")
        if dtype not in VISUAL_DTYPES and len(shape) != 1:
            raise ValueError(f"feature {name!r}: non-image features must be 1-D ([D]), got shape {shape}")
        names = ft.get("names")
        if dtype not in VISUAL_DTYPES and names is not None and len(names) != shape[0]:
            raise ValueError(f"feature {name!r}: {len(names)} names for shape {shape}")
        out[name] = {**json.loads(json.dumps(ft)), "shape": shape}
    return out


def is_visual(ft: dict[str, Any]) -> bool:
    return ft["dtype"] in VISUAL_DTYPES


def arrow_type(ft: dict[str, Any]) -> pa.DataType:
    """Arrow column type LeRobot (via HF `datasets`) uses for a non-video feature."""
    if ft["dtype"] == "image":
        return IMAGE_ARROW_TYPE
    value = pa.from_numpy_dtype(np.dtype(ft["dtype"]))
    if list(ft["shape"]) == [1]:
        return value  # datasets.Value: a scalar column
    return pa.list_(value, int(ft["shape"][0]))  # datasets.List(length=D): fixed_size_list


def hf_feature_json(ft: dict[str, Any]) -> dict[str, Any]:
    """The HF `datasets` feature description stored in the parquet schema metadata."""
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    if list(ft["shape"]) == [1]:
        return value
    return {"feature": value, "length": int(ft["shape"][0]), "_type": "List"}


def data_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """Schema of a data parquet file: every non-video feature, in info.json order."""
    cols = [(k, ft) for k, ft in features.items() if ft["dtype"] != "video"]
    hf = {"info": {"features": {k: hf_feature_json(ft) for k, ft in cols}}}
    return pa.schema(
        [pa.field(k, arrow_type(ft)) for k, ft in cols],
        metadata={b"huggingface": json.dumps(hf).encode()},
    )


def build_info(
    *,
    fps: int,
    robot_type: str | None,
    features: dict[str, dict[str, Any]],
    use_videos: bool,
    chunks_size: int,
    data_files_size_in_mb: int,
    video_files_size_in_mb: int,
) -> dict[str, Any]:
    """A fresh v3.0 `info.json` dict with zero totals (key order as LeRobot writes it)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_files_size_in_mb,
        "video_files_size_in_mb": video_files_size_in_mb,
        "fps": fps,
        "splits": {},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if use_videos else None,
        "features": {**features, **json.loads(json.dumps(DEFAULT_FEATURES))},
    }


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """Next (chunk, file) pair: files roll over into a new chunk directory after `chunks_size`."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


# ---------------------------------------------------------------- atomic file writes


def _tmp_path(path: Path) -> Path:
    # Same directory as the target so os.replace is a rename on one filesystem (atomic).
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_json(path, obj, indent=4)  # LeRobot's own metadata files use indent 4


def atomic_write_parquet(path: Path, tables: list[pa.Table], schema: pa.Schema) -> None:
    """Write `tables` (one row group each: one episode per row group, as LeRobot does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    with pq.ParquetWriter(str(tmp), schema, compression="snappy", use_dictionary=True) as writer:
        for t in tables:
            if t.num_rows:
                writer.write_table(t.cast(schema) if t.schema != schema else t)
    os.replace(tmp, path)


def atomic_move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def tmp_sibling(path: Path) -> Path:
    """A temporary path next to `path` for writers that need a filename (video muxers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def remove_stale_tmp_files(root: Path) -> list[Path]:
    """Delete temporary files a crashed writer left behind (never referenced by any metadata)."""
    # ".name.tmp-PID" (parquet/video writers here) and ".name.XXXX.tmp" (vla.io.atomic_write_*)
    stale = [p for p in Path(root).rglob(".*.tmp*") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


# ---------------------------------------------------------------- reading helpers


def load_info(root: Path) -> dict[str, Any]:
    """Read `meta/info.json`; FileNotFoundError naming the root when it is not a dataset."""
    path = Path(root) / INFO_PATH
    info = read_json(path, f"{root} is not a LeRobot dataset: {path} does not exist")
    for key in ("codebase_version", "fps", "features", "data_path"):
        if key not in info:
            raise ValueError(f"{path} lacks the required key {key!r}")
    return info


def column_to_numpy(col: pa.ChunkedArray | pa.Array, shape: list[int], dtype: str) -> np.ndarray:
    """A scalar or (fixed-size or variable) list column -> numpy [N, *shape] of `dtype`.

    Non-numeric dtypes (e.g. LeRobot's "string" features) come back as object arrays [N] of
    Python values.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if dtype not in NUMERIC_DTYPES:
        out = np.empty(n, dtype=object)
        out[:] = arr.to_pylist()
        return out
    while (
        pa.types.is_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
        or pa.types.is_large_list(arr.type)
    ):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    size = int(np.prod(shape)) if shape else 1
    if values.size != n * size:
        raise ValueError(f"column holds {values.size} values, expected {n} rows x shape {shape}")
    out = values.reshape(n, *shape).astype(dtype, copy=False)
    return out
