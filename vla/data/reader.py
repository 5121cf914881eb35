"""LeRobotDataset: random-access reader of LeRobot v3.0 and v2.1 datasets (ours or any other writer's).

    ds = LeRobotDataset("data/pick_cube")
    len(ds), ds.num_episodes, ds.fps, ds.features, ds.tasks, ds.stats
    item = ds[0]   # {feature: np.ndarray (images uint8 [H, W, 3]), "task": str, "episode_index": int, ...}
    ds.get_column("action")      # [N, 7] float32, no image decoding
    ds.episode_bounds(3)         # (start, stop) frame positions of episode 3

Loading reads only metadata and the non-image columns (memory-mapped parquet) into numpy. An
image is PNG-decoded only when `__getitem__` asks for it (encoded row groups stay cached within
`image_cache_mb`); a video frame is decoded from a kept-open container (forward for sequential
reads, keyframe seek for random ones). Frames are ordered by episode, then frame. Episodes in the
metadata beyond info.json's `total_episodes` (a save that crashed before its commit) are ignored.
"""

from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vla.data import format as F
from vla.data.stats import Stats, aggregate_stats, stats_from_json

_VIDEO_DECODERS = 8  # mp4 files kept open


class LeRobotDataset:
    """A LeRobot-format dataset on disk (v3.0 or v2.x); see the module docstring."""

    def __init__(self, root: str | Path, image_cache_mb: float = 1024) -> None:
        if not image_cache_mb >= 0:
            raise ValueError(f"image_cache_mb must be >= 0, got {image_cache_mb!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist or is not a directory")
        self.info = F.load_info(self.root)
        self.codebase_version: str = str(self.info["codebase_version"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        for ft in self.features.values():
            ft["shape"] = [int(s) for s in ft["shape"]]
        self.fps = int(self.info["fps"])
        if self.codebase_version.startswith("v3."):
            self._legacy = False
            self.tasks = self._load_tasks_v3()
            self._episodes = self._load_episodes_v3()
        elif self.codebase_version in ("v2.0", "v2.1"):
            self._legacy = True
            self.tasks = self._load_tasks_v2()
            self._episodes = self._load_episodes_v2()
        else:
            raise ValueError(
                f"{self.root}: codebase_version {self.codebase_version!r} not supported (v2.1, v3.0)"
            )
        self.image_keys = [k for k, ft in self.features.items() if ft["dtype"] == "image"]
        self.video_keys = [k for k, ft in self.features.items() if ft["dtype"] == "video"]
        self._load_columns()
        self.stats: Stats = self._load_stats()
        # encoded image columns per (file, row group), LRU within image_cache_mb; decoded per item
        self.image_cache_mb = image_cache_mb
        self._image_cache: OrderedDict[tuple[int, int], dict[str, pa.StructArray]] = OrderedDict()
        self._image_cache_bytes = 0
        self._row_groups: list[np.ndarray | None] = [None] * len(self._files)
        self._decoders: OrderedDict[Path, Any] = OrderedDict()  # open VideoDecoders, LRU
        self._video_pid = os.getpid()

    # ------------------------------------------------------------------ public API

    def __len__(self) -> int:
        return len(self._file_id)

    @property
    def num_frames(self) -> int:
        return len(self)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def episode_indices(self) -> np.ndarray:
        """episode_index of every frame, [N] int64."""
        return self._columns["episode_index"]

    def episode_bounds(self, episode_index: int) -> tuple[int, int]:
        """(start, stop) positions of an episode's frames in this dataset."""
        if episode_index not in self._ep_pos:
            raise KeyError(f"episode {episode_index} not in {self.root} ({self.num_episodes} episodes)")
        p = self._ep_pos[episode_index]
        return int(self._ep_start[p]), int(self._ep_start[p + 1])

    def get_column(self, name: str) -> np.ndarray:
        """All frames of a non-image feature: [N, *shape] (default features [N]); no copy, do not mutate."""
        if name not in self._columns:
            if name in self.features:
                raise ValueError(
                    f"{name!r} is a {self.features[name]['dtype']} feature; get_column reads non-image ones"
                )
            raise KeyError(f"no feature {name!r}; features: {sorted(self.features)}")
        return self._columns[name]

    def _position(self, i: int) -> int:
        """The index check of `ds[i]` and `frame(i, key)`: an int in [-N, N) -> its position in [0, N)."""
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} frames")
        return int(i) % n

    def _camera(self, i: int, key: str) -> np.ndarray:
        return self._image(i, key) if key in self.image_keys else self._video_frame(i, key)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = self._position(i)
        item: dict[str, Any] = {}
        for k, col in self._columns.items():
            if k in F.DEFAULT_FEATURES:
                continue
            item[k] = col[i].copy() if isinstance(col[i], np.ndarray) else col[i]
        for k in (*self.image_keys, *self.video_keys):
            item[k] = self._camera(i, k)
        task_index = int(self._columns["task_index"][i])
        item["task"] = self.tasks[task_index]
        item["task_index"] = task_index
        item["episode_index"] = int(self._columns["episode_index"][i])
        item["frame_index"] = int(self._columns["frame_index"][i])
        item["index"] = int(self._columns["index"][i])
        item["timestamp"] = float(self._columns["timestamp"][i])
        return item

    def frame(self, i: int, key: str) -> np.ndarray:
        """One camera frame, uint8 [H, W, 3]: `self[i][key]` without building the rest of the item (bulk loads)."""
        if key not in self.image_keys and key not in self.video_keys:
            raise KeyError(f"no image or video feature {key!r}; cameras: {self.image_keys + self.video_keys}")
        return self._camera(self._position(i), key)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (spawn/forkserver) copy the dataset: drop open decoders and caches,
        # each worker rebuilds its own.
        state = self.__dict__.copy()
        state["_image_cache"], state["_image_cache_bytes"] = OrderedDict(), 0
        state["_decoders"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        return (
            f"LeRobotDataset({str(self.root)!r}, {self.codebase_version}, episodes={self.num_episodes}, "
            f"frames={len(self)}, fps={self.fps}, features={list(self.features)})"
        )

    # ------------------------------------------------------------------ metadata

    def _load_tasks_v3(self) -> list[str]:
        path = self.root / F.TASKS_PATH
        if not path.is_file():
            if int(self.info.get("total_episodes", 0)) == 0:
                return []
            raise FileNotFoundError(f"{self.root}: {path} does not exist")
        t = pq.read_table(path)
        # pandas stores the "task" index as a column named "task" (or __index_level_0__ if unnamed)
        name = "task" if "task" in t.column_names else "__index_level_0__"
        if name not in t.column_names or "task_index" not in t.column_names:
            raise ValueError(
                f"{path} needs a task string index and a task_index column, has {t.column_names}"
            )
        return self._tasks_list(t["task_index"].to_pylist(), t[name].to_pylist(), path)

    def _load_tasks_v2(self) -> list[str]:
        path = self.root / F.LEGACY_TASKS_PATH
        rows = _read_jsonl(path)
        return self._tasks_list([r["task_index"] for r in rows], [r["task"] for r in rows], path)

    @staticmethod
    def _tasks_list(indices: list[int], names: list[str], path: Path) -> list[str]:
        out = [None] * len(indices)
        for i, name in zip(indices, names, strict=True):
            if not 0 <= int(i) < len(out) or out[int(i)] is not None:
                raise ValueError(
                    f"{path}: task_index values must be 0..{len(out) - 1} without repeats, got {indices}"
                )
            out[int(i)] = name
        return out  # type: ignore[return-value]

    def _load_episodes_v3(self) -> list[dict[str, Any]]:
        total = int(self.info.get("total_episodes", 0))
        files = sorted((self.root / F.EPISODES_DIR).glob("*/*.parquet"))
        if total and not files:
            raise FileNotFoundError(f"{self.root}: no episode metadata under {self.root / F.EPISODES_DIR}")
        rows: list[dict[str, Any]] = []
        for f in files:
            cols = [c for c in pq.read_schema(f).names if not c.startswith("stats/")]
            rows += pq.read_table(f, columns=cols).to_pylist()
        rows = sorted(rows, key=lambda r: r["episode_index"])[:total]  # commit point: info.json
        if len(rows) != total:
            raise ValueError(f"{self.root}: info.json says {total} episodes, metadata holds {len(rows)}")
        for r in rows:
            r["_data"] = self.root / self.info["data_path"].format(
                chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]
            )
            for k in [k for k, ft in self.features.items() if ft["dtype"] == "video"]:
                r[f"_video/{k}"] = (
                    self.root
                    / self.info["video_path"].format(
                        video_key=k,
                        chunk_index=r[f"videos/{k}/chunk_index"],
                        file_index=r[f"videos/{k}/file_index"],
                    ),
                    float(r[f"videos/{k}/from_timestamp"]),
                    float(r[f"videos/{k}/to_timestamp"]),
                )
        return rows

    def _load_episodes_v2(self) -> list[dict[str, Any]]:
        rows = sorted(_read_jsonl(self.root / F.LEGACY_EPISODES_PATH), key=lambda r: r["episode_index"])
        total = int(self.info.get("total_episodes", len(rows)))
        rows = rows[:total]
        chunks = int(self.info.get("chunks_size", F.DEFAULT_CHUNK_SIZE))
        for r in rows:
            ep = int(r["episode_index"])
            r["_data"] = self.root / self.info["data_path"].format(
                episode_chunk=ep // chunks, episode_index=ep
            )
            for k in [k for k, ft in self.features.items() if ft["dtype"] == "video"]:
                path = self.info["video_path"].format(
                    episode_chunk=ep // chunks, video_key=k, episode_index=ep
                )
                r[f"_video/{k}"] = (self.root / path, 0.0, float("inf"))  # one mp4 per episode, from t=0
        return rows

    def _load_stats(self) -> Stats:
        path = self.root / F.STATS_PATH
        if path.is_file():
            return stats_from_json(json.loads(path.read_text()))
        legacy = self.root / F.LEGACY_EPISODES_STATS_PATH
        if self._legacy and legacy.is_file():  # v2.1 keeps per-episode stats only
            return aggregate_stats([stats_from_json(r["stats"]) for r in _read_jsonl(legacy)])
        return {}

    # ------------------------------------------------------------------ frame columns

    def _load_columns(self) -> None:
        """Read non-image columns of every data file once; build position -> (file, row) maps."""
        nonvis = [k for k, ft in self.features.items() if ft["dtype"] not in F.VISUAL_DTYPES]
        for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            if k not in nonvis:
                raise ValueError(f"{self.root}: info.json features lack the default feature {k!r}")
        self._files: list[Path] = []
        file_ids: dict[Path, int] = {}
        tables: list[pa.Table] = []
        sorted_index: list[tuple[np.ndarray, np.ndarray]] = []
        parts_file, parts_row, lengths = [], [], []
        for r in self._episodes:
            path = r["_data"]
            if path not in file_ids:
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{self.root}: data file {path} of episode {r['episode_index']} is missing"
                    )
                file_ids[path] = len(self._files)
                self._files.append(path)
                t = pq.read_table(path, columns=nonvis, memory_map=True)
                tables.append(t)
                idx = F.column_to_numpy(t["index"], [1], "int64")[:, 0]
                order = np.argsort(idx, kind="stable")
                sorted_index.append((idx[order], order))
            fid = file_ids[path]
            if self._legacy:
                rows = np.arange(tables[fid].num_rows)
            else:
                keys, order = sorted_index[fid]
                lo, hi = np.searchsorted(keys, [r["dataset_from_index"], r["dataset_to_index"]])
                rows = order[lo:hi]
            if len(rows) != int(r["length"]):
                raise ValueError(
                    f"{self.root}: episode {r['episode_index']} has length {r['length']} in metadata "
                    f"but {len(rows)} rows in {path}"
                )
            parts_file.append(np.full(len(rows), fid, dtype=np.int32))
            parts_row.append(rows.astype(np.int64))
            lengths.append(len(rows))
        cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
        self._file_id = cat(parts_file, np.int32)  # [N]
        self._row = cat(parts_row, np.int64)  # [N] row within its file
        self._ep_start = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])  # [E + 1]
        self._ep_pos = {int(r["episode_index"]): p for p, r in enumerate(self._episodes)}
        self._frame_ep = np.repeat(np.arange(len(self._episodes)), lengths)  # [N] episode position
        self._columns: dict[str, np.ndarray] = {}
        for k in nonvis:
            ft = self.features[k]
            per_file = [F.column_to_numpy(t[k], ft["shape"], ft["dtype"]) for t in tables]
            if per_file:
                offsets = np.concatenate([[0], np.cumsum([len(p) for p in per_file])])
                col = np.concatenate(per_file)[offsets[self._file_id] + self._row]
            else:
                col = np.zeros((0, *ft["shape"]), dtype=ft["dtype"])
            if k in F.DEFAULT_FEATURES:
                col = col.reshape(len(col))  # [N] scalars
            self._columns[k] = col

    def _image(self, i: int, key: str) -> np.ndarray:
        fid, row = int(self._file_id[i]), int(self._row[i])
        if self._row_groups[fid] is None:  # row-group start offsets, from the parquet footer
            meta = pq.ParquetFile(self._files[fid]).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            self._row_groups[fid] = np.concatenate([[0], np.cumsum(sizes)])
        starts = self._row_groups[fid]
        g = int(np.searchsorted(starts, row, side="right")) - 1
        cols = self._image_cache.get((fid, g))
        if cols is None:
            t = pq.ParquetFile(self._files[fid], memory_map=True).read_row_group(g, columns=self.image_keys)
            cols = {k: t[k].combine_chunks() for k in self.image_keys}
            self._image_cache[(fid, g)] = cols
            self._image_cache_bytes += sum(c.nbytes for c in cols.values())
            while self._image_cache_bytes > self.image_cache_mb * 2**20 and len(self._image_cache) > 1:
                old = self._image_cache.popitem(last=False)[1]
                self._image_cache_bytes -= sum(c.nbytes for c in old.values())
        else:
            self._image_cache.move_to_end((fid, g))
        row -= int(starts[g])
        cell = cols[key][row].as_py()
        if cell is None:
            raise ValueError(f"{self._files[fid]}: frame {i} has no {key!r} image")
        data = cell.get("bytes")
        if data is None:
            p = Path(cell["path"])
            data = (p if p.is_absolute() else self.root / p).read_bytes()
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        shape = self.features[key]["shape"]
        if list(img.shape) != list(shape):
            raise ValueError(
                f"{key!r} image at frame {i} has shape {list(img.shape)}, info.json says {shape}"
            )
        return img

    def _video_frame(self, i: int, key: str) -> np.ndarray:
        from vla.data.video import VideoDecoder  # PyAV only for video datasets

        path, from_s, _ = self._episodes[int(self._frame_ep[i])][f"_video/{key}"]
        if self._video_pid != os.getpid():  # decoders hold open files: never share them across fork
            self._decoders.clear()
            self._video_pid = os.getpid()
        dec = self._decoders.get(path)
        if dec is None:
            dec = self._decoders[path] = VideoDecoder(path)
            if len(self._decoders) > _VIDEO_DECODERS:
                self._decoders.popitem(last=False)[1].close()
        else:
            self._decoders.move_to_end(path)
        t = from_s + float(self._columns["timestamp"][i])
        ft, frame = dec.frame_at(t)
        frame = frame.copy()  # the decoder keeps its last frame; callers may write to theirs
        if abs(ft - t) > 0.5 / self.fps:
            raise ValueError(
                f"{path}: no {key!r} frame within half a frame of t={t:.4f}s (nearest {ft:.4f}s)"
            )
        return frame


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
