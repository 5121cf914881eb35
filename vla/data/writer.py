"""LeRobotDatasetWriter: record episodes into a LeRobot v3.0 dataset, atomically per episode.

    w = LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=FEATURES)
    for step in episode:
        w.add_frame({"observation.images.agentview": img, "observation.state": s, "action": a},
                    task="pick up the red cube")
    w.save_episode()          # -> episode_index; the dataset on disk is complete and readable now
    w.close()

Crash safety: `save_episode` writes every file to a temporary sibling and `os.replace`s it, in
the order videos -> data -> tasks -> episodes -> stats -> info.json. Each new file version is a
superset of the old one, and `info.json` (total_episodes / total_frames) is the commit point: a
crash anywhere leaves the previously committed episodes intact, and rows past the commit point
are ignored by the reader and dropped by `resume=True`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from vla.data import format as F
from vla.data.stats import Stats, aggregate_stats, episode_stats, stats_from_json, stats_to_json, vector_stats


def encode_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # compress_level 1: ~3x faster than PIL's default at ~20% more bytes; PNG stays lossless.
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class LeRobotDatasetWriter:
    """Append-only writer of a LeRobot v3.0 dataset rooted at `root` (see module docstring)."""

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        features: dict[str, dict[str, Any]],
        robot_type: str | None = None,
        use_videos: bool = False,
        resume: bool = False,
        chunks_size: int = F.DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: int = F.DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: int = F.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    ) -> None:
        if not isinstance(fps, int) or fps <= 0:
            raise ValueError(f"fps must be a positive int, got {fps!r}")
        for name, v in (
            ("chunks_size", chunks_size),
            ("data_files_size_in_mb", data_files_size_in_mb),
            ("video_files_size_in_mb", video_files_size_in_mb),
        ):
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v!r}")
        self.root = Path(root)
        user = F.validate_user_features(features)
        if use_videos:  # LeRobot marks camera features stored as mp4 with dtype "video"
            user = {k: ({**ft, "dtype": "video"} if F.is_visual(ft) else ft) for k, ft in user.items()}
        elif any(ft["dtype"] == "video" for ft in user.values()):
            raise ValueError("features with dtype 'video' need use_videos=True")
        self._user = user
        self._image_keys = [k for k, ft in user.items() if ft["dtype"] == "image"]
        self._video_keys = [k for k, ft in user.items() if ft["dtype"] == "video"]
        self._buffer: list[dict[str, Any]] = []
        self._buffer_tasks: list[str] = []
        self._closed = False

        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []  # committed rows of meta/episodes
        self._ep_stats: list[Stats] = []  # per committed episode, for image aggregation
        self._vectors: dict[str, list[np.ndarray]] = {}  # raw non-image columns, for exact stats
        self._data_file: tuple[int, int] | None = None  # (chunk, file) being appended to
        self._data_tables: list[pa.Table] = []  # that file's content, one table per episode
        self._video_file: dict[str, tuple[int, int, float] | None] = {k: None for k in self._video_keys}
        self._stats: Stats = {}

        if (self.root / F.INFO_PATH).exists():
            if not resume:
                raise FileExistsError(f"{self.root} already holds a dataset; pass resume=True to append")
            self._resume(fps, use_videos)
        else:
            self.info = F.build_info(
                fps=fps,
                robot_type=robot_type,
                features=user,
                use_videos=use_videos,
                chunks_size=chunks_size,
                data_files_size_in_mb=data_files_size_in_mb,
                video_files_size_in_mb=video_files_size_in_mb,
            )
            F.atomic_write_json(self.root / F.INFO_PATH, self.info)
        self._features = self.info["features"]  # user + default features, info.json order
        self._schema = F.data_schema(self._features)

    # ------------------------------------------------------------------ recording

    @property
    def num_episodes(self) -> int:
        return int(self.info["total_episodes"])

    @property
    def num_buffered_frames(self) -> int:
        return len(self._buffer)

    def add_frame(self, frame: dict[str, Any], task: str) -> None:
        """Buffer one frame; ValueError naming the key when keys, shapes or dtypes are wrong."""
        self._check_open()
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        if not isinstance(frame, dict):
            raise ValueError(f"frame must be a dict of feature name -> array, got {type(frame).__name__}")
        missing, extra = set(self._user) - set(frame), set(frame) - set(self._user)
        if missing or extra:
            raise ValueError(f"frame keys mismatch: missing {sorted(missing)}, unexpected {sorted(extra)}")
        out: dict[str, Any] = {}
        for key, ft in self._user.items():
            value = frame[key]
            if F.is_visual(ft):
                arr = np.asarray(value)
                if arr.dtype != np.uint8 or list(arr.shape) != ft["shape"]:
                    raise ValueError(
                        f"frame[{key!r}]: expected uint8 image of shape {ft['shape']}, got {arr.dtype} {list(arr.shape)}"
                    )
                out[key] = np.array(arr, copy=True)  # the caller may reuse its render buffer
                continue
            arr = np.asarray(value)
            if arr.ndim == 0 and ft["shape"] == [1]:
                arr = arr.reshape(1)
            if list(arr.shape) != ft["shape"]:
                raise ValueError(f"frame[{key!r}]: expected shape {ft['shape']}, got {list(arr.shape)}")
            want = np.dtype(ft["dtype"])
            ok = (
                (want.kind == "f" and arr.dtype.kind in "f")
                or (want.kind in "iu" and arr.dtype.kind in "iu")
                or (want.kind == "b" and arr.dtype.kind == "b")
            )
            if not ok:
                raise ValueError(f"frame[{key!r}]: expected dtype {want.name}, got {arr.dtype.name}")
            out[key] = arr.astype(want, copy=True)
        self._buffer.append(out)
        self._buffer_tasks.append(task)

    def clear_episode(self) -> None:
        """Discard the buffered frames of the episode in progress."""
        self._buffer.clear()
        self._buffer_tasks.clear()

    def save_episode(self) -> int:
        """Persist the buffered frames as one episode; returns its episode_index.

        If a write fails (disk full, ...), the writer rolls back to the last committed episode and
        keeps the buffered frames, so calling save_episode() again retries the same episode.
        """
        self._check_open()
        if not self._buffer:
            raise ValueError("cannot save an empty episode: add_frame() was not called since the last save")
        snapshot = (
            json.loads(json.dumps(self.info)),
            dict(self._tasks),
            len(self._episodes),
            len(self._ep_stats),
            {k: len(v) for k, v in self._vectors.items()},
            self._data_file,
            list(self._data_tables),
        )
        try:
            return self._save_episode()
        except BaseException:
            info, tasks, n_eps, n_stats, n_vec, data_file, data_tables = snapshot
            self.info, self._tasks = info, tasks
            self._features = self.info["features"]
            del self._episodes[n_eps:], self._ep_stats[n_stats:]
            for k in list(self._vectors):
                del self._vectors[k][n_vec.get(k, 0) :]
            # the next save rewrites the data file from the committed tables (dropping any rows this
            # attempt wrote); videos restart in a new file since this attempt may have appended to one
            if self._data_file is not None and self._data_file != data_file:  # rolled: a file of only
                (self.root / self._data_path(*self._data_file)).unlink(missing_ok=True)  # this attempt
            self._data_file, self._data_tables = data_file, data_tables
            self._video_file = {k: None for k in self._video_keys}
            raise

    def _save_episode(self) -> int:
        n = len(self._buffer)
        ep = self.num_episodes
        start = int(self.info["total_frames"])
        fps = int(self.info["fps"])
        tasks_before = len(self._tasks)
        for t in self._buffer_tasks:
            self._tasks.setdefault(t, len(self._tasks))
        cols: dict[str, Any] = {k: [f[k] for f in self._buffer] for k in self._user}
        for k, ft in self._user.items():
            if not F.is_visual(ft):
                cols[k] = np.stack(cols[k])  # [T, D]
        cols["timestamp"] = (np.arange(n) / fps).astype(np.float32)
        cols["frame_index"] = np.arange(n, dtype=np.int64)
        cols["episode_index"] = np.full(n, ep, dtype=np.int64)
        cols["index"] = np.arange(start, start + n, dtype=np.int64)
        cols["task_index"] = np.array([self._tasks[t] for t in self._buffer_tasks], dtype=np.int64)
        ep_stats = episode_stats(cols, self._features)

        row: dict[str, Any] = {
            "episode_index": ep,
            "tasks": list(dict.fromkeys(self._buffer_tasks)),
            "length": n,
        }
        video_meta = self._write_videos(cols)  # 1. videos (superset of the old files)
        row.update(self._write_data(cols, start, n))  # 2. data parquet (superset)
        row.update(video_meta)  # LeRobot's column order: data/..., then videos/...
        if len(self._tasks) != tasks_before:  # 3. tasks (superset)
            self._write_tasks()
        for feat, st in ep_stats.items():
            for s, v in st.items():
                row[f"stats/{feat}/{s}"] = np.asarray(v).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self._episodes.append(row)
        self._ep_stats.append(ep_stats)
        for k, ft in self._features.items():
            if not F.is_visual(ft):
                self._vectors.setdefault(k, []).append(np.asarray(cols[k]).reshape(n, -1))
        self._write_episodes()  # 4. episodes metadata (superset; extra rows past info's total are ignored)
        self.info["total_episodes"] = ep + 1
        self.info["total_frames"] = start + n
        self.info["total_tasks"] = len(self._tasks)
        self.info["splits"] = {"train": f"0:{ep + 1}"}
        self._write_stats()  # 5. stats
        F.atomic_write_json(self.root / F.INFO_PATH, self.info)  # 6. commit point
        self.clear_episode()
        return ep

    def close(self) -> None:
        """Rewrite final metadata; ValueError if frames are buffered but unsaved."""
        if self._closed:
            return
        if self._buffer:
            raise ValueError(
                f"{len(self._buffer)} buffered frames were not saved: call save_episode() or clear_episode() first"
            )
        if self.num_episodes:
            self._write_stats()
        F.atomic_write_json(self.root / F.INFO_PATH, self.info)
        self._closed = True

    def __enter__(self) -> LeRobotDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.clear_episode()  # an exception mid-episode discards it; saved episodes stay
        self.close()

    # ------------------------------------------------------------------ file writes

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self.root} is closed")

    def _write_data(self, cols: dict[str, Any], start: int, n: int) -> dict[str, Any]:
        arrays = []
        for field in self._schema:
            k, ft = field.name, self._features[field.name]
            if ft["dtype"] == "image":
                # PIL releases the GIL while compressing: threads scale PNG encoding over cores
                with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                    pngs = list(pool.map(encode_png, cols[k]))
                arrays.append(pa.array([{"bytes": b, "path": None} for b in pngs], field.type))
            elif list(ft["shape"]) == [1]:
                arrays.append(pa.array(np.asarray(cols[k]).reshape(n), field.type))
            else:
                flat = pa.array(np.ascontiguousarray(cols[k]).reshape(-1))
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, int(ft["shape"][0])))
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        limit = float(self.info["data_files_size_in_mb"])
        if self._data_file is None:
            self._data_file = self._next_file(self._last_data_file())
            self._data_tables = []
        elif self._data_tables:
            path = self.root / self._data_path(*self._data_file)
            size_mb = path.stat().st_size / 2**20
            frames = sum(t.num_rows for t in self._data_tables)
            if size_mb + size_mb / frames * n >= limit:  # LeRobot's rule: roll before exceeding
                self._data_file = self._next_file(self._data_file)
                self._data_tables = []
        self._data_tables.append(table)
        F.atomic_write_parquet(self.root / self._data_path(*self._data_file), self._data_tables, self._schema)
        chunk, file = self._data_file
        return {
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": start,
            "dataset_to_index": start + n,
        }

    def _write_videos(self, cols: dict[str, Any]) -> dict[str, Any]:
        from vla.data import video as V  # PyAV only when videos are used

        out: dict[str, Any] = {}
        fps = int(self.info["fps"])
        n = len(cols[self._video_keys[0]]) if self._video_keys else 0
        for key in self._video_keys:
            with tempfile.TemporaryDirectory() as tmp:
                ep_path = Path(tmp) / "episode.mp4"
                vinfo = V.encode_frames(np.stack(cols[key]), ep_path, fps)
                ep_mb = ep_path.stat().st_size / 2**20
                cur = self._video_file[key]
                fresh = cur is None
                if cur is not None:
                    size_mb = (self.root / self._video_path(key, cur[0], cur[1])).stat().st_size / 2**20
                    fresh = size_mb + ep_mb >= float(self.info["video_files_size_in_mb"])
                if fresh:
                    chunk, file = self._next_file(self._last_video_file(key) if cur is None else cur[:2])
                    offset = 0.0
                else:
                    chunk, file, offset = cur
                path = self.root / self._video_path(key, chunk, file)
                V.append_video(path, ep_path, offset, fresh=fresh)
            self._video_file[key] = (chunk, file, offset + n / fps)
            self.info["features"][key]["info"] = vinfo
            out[f"videos/{key}/chunk_index"] = chunk
            out[f"videos/{key}/file_index"] = file
            out[f"videos/{key}/from_timestamp"] = offset
            out[f"videos/{key}/to_timestamp"] = offset + n / fps
        return out

    def _write_tasks(self) -> None:
        names = list(self._tasks)
        table = pa.table(
            {"task_index": pa.array([self._tasks[t] for t in names], pa.int64()), "task": pa.array(names)}
        )
        # pandas index "task" exactly as LeRobot's DataFrame.to_parquet stores it
        pandas_meta = {
            "index_columns": ["task"],
            "column_indexes": [],
            "columns": [
                {
                    "name": "task_index",
                    "field_name": "task_index",
                    "pandas_type": "int64",
                    "numpy_type": "int64",
                    "metadata": None,
                },
                {
                    "name": "task",
                    "field_name": "task",
                    "pandas_type": "unicode",
                    "numpy_type": "object",
                    "metadata": None,
                },
            ],
            "pandas_version": "2.2.0",
        }
        table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
        F.atomic_write_parquet(self.root / F.TASKS_PATH, [table], table.schema)

    def _write_episodes(self) -> None:
        table = pa.Table.from_pylist(self._episodes)
        F.atomic_write_parquet(
            self.root / F.EPISODES_PATH.format(chunk_index=0, file_index=0), [table], table.schema
        )

    def _write_stats(self) -> None:
        image_keys = [k for k, ft in self._features.items() if F.is_visual(ft)]
        stats = aggregate_stats([{k: s[k] for k in image_keys if k in s} for s in self._ep_stats])
        for k, parts in self._vectors.items():
            stats[k] = vector_stats(np.concatenate(parts))  # exact quantiles over all frames
        self._stats = stats
        F.atomic_write_json(self.root / F.STATS_PATH, stats_to_json(stats))

    # ------------------------------------------------------------------ paths and resume

    def _data_path(self, chunk: int, file: int) -> str:
        return self.info["data_path"].format(chunk_index=chunk, file_index=file)

    def _video_path(self, key: str, chunk: int, file: int) -> str:
        return self.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)

    def _next_file(self, last: tuple[int, int] | None) -> tuple[int, int]:
        return (0, 0) if last is None else F.next_chunk_file(*last, int(self.info["chunks_size"]))

    def _last_data_file(self) -> tuple[int, int] | None:
        if not self._episodes:
            return None
        return self._episodes[-1]["data/chunk_index"], self._episodes[-1]["data/file_index"]

    def _last_video_file(self, key: str) -> tuple[int, int] | None:
        if not self._episodes:
            return None
        return self._episodes[-1][f"videos/{key}/chunk_index"], self._episodes[-1][f"videos/{key}/file_index"]

    def _resume(self, fps: int, use_videos: bool) -> None:
        """Load committed state; drop uncommitted rows; new episodes go to new files (as LeRobot does)."""
        info = F.load_info(self.root)
        if info["codebase_version"] != F.CODEBASE_VERSION:
            raise ValueError(
                f"resume needs a {F.CODEBASE_VERSION} dataset, {self.root} is {info['codebase_version']}"
            )
        if info["fps"] != fps:
            raise ValueError(f"resume: fps {fps} differs from the dataset's {info['fps']}")
        if (info.get("video_path") is not None) != use_videos:
            raise ValueError(
                f"resume: use_videos={use_videos} but the dataset's video_path is {info.get('video_path')!r}"
            )
        stored = {k: v for k, v in info["features"].items() if k not in F.DEFAULT_FEATURES}
        strip = lambda fs: {k: {a: b for a, b in v.items() if a != "info"} for k, v in fs.items()}  # noqa: E731
        if strip(stored) != strip(self._user):
            raise ValueError(
                f"resume: features differ from the dataset's: given {self._user}, stored {stored}"
            )
        self.info = info
        F.remove_stale_tmp_files(self.root)
        n_ep, n_frames = int(info["total_episodes"]), int(info["total_frames"])
        if (self.root / F.TASKS_PATH).exists():
            t = pq.read_table(self.root / F.TASKS_PATH)
            pairs = sorted(zip(t["task_index"].to_pylist(), t["task"].to_pylist(), strict=True))
            self._tasks = {name: i for i, name in pairs}
        if n_ep == 0:
            return
        files = sorted((self.root / F.EPISODES_DIR).glob("*/*.parquet"))
        rows = [r for f in files for r in pq.read_table(f).to_pylist()]
        rows = sorted(rows, key=lambda r: r["episode_index"])[:n_ep]
        if len(rows) != n_ep:
            raise ValueError(f"{self.root}: info.json says {n_ep} episodes, metadata holds {len(rows)}")
        self._episodes = rows
        visual = [k for k, ft in info["features"].items() if F.is_visual(ft)]
        for r in rows:
            self._ep_stats.append(
                stats_from_json(
                    {
                        k: {s: r[f"stats/{k}/{s}"] for s in F.STAT_KEYS if f"stats/{k}/{s}" in r}
                        for k in visual
                    }
                )
            )
        nonvis = [k for k, ft in info["features"].items() if not F.is_visual(ft)]
        data_files = sorted({(r["data/chunk_index"], r["data/file_index"]) for r in rows})
        for chunk, file in data_files:
            path = self.root / self._data_path(chunk, file)
            table = pq.read_table(path)
            keep = np.asarray(table["index"]) < n_frames
            if not keep.all():  # rows of an episode whose commit never happened
                table = table.filter(pa.array(keep))
                F.atomic_write_parquet(path, [table], table.schema)
            for k in nonvis:
                ft = info["features"][k]
                self._vectors.setdefault(k, []).append(
                    F.column_to_numpy(table[k], list(ft["shape"]), ft["dtype"]).reshape(table.num_rows, -1)
                )
        self._data_file = None  # next save starts a new file after the last committed one
