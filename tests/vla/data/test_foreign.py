"""LeRobotDataset reads datasets written by other tools, laid out exactly as LeRobot's own writer does.

The datasets here are built with plain pyarrow / pandas / json (and imageio-ffmpeg for mp4), never
with vla.data's writer: v3.0 (multi-file data and episode metadata, pandas task index, HF image
structs) and v2.1 (one parquet and one mp4 per episode, jsonl metadata).
"""

import io
import json

import imageio.v2 as imageio
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datahelpers import smooth_image
from PIL import Image

from vla.data import LeRobotDataset

FPS = 10
H = W = 32


def _png(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _features(image_dtype):
    return {
        "observation.image": {
            "dtype": image_dtype,
            "shape": [H, W, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "language_instruction": {"dtype": "string", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _episode_frames(rng, ep, n, start, task_index):
    return {
        "observation.image": [smooth_image(rng) for _ in range(n)],
        "observation.state": rng.normal(size=(n, 2)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float32),
        "next.reward": rng.normal(size=n).astype(np.float32),
        "language_instruction": np.array([f"ep {ep} step {t}" for t in range(n)], dtype=object),
        "timestamp": (np.arange(n) / FPS).astype(np.float32),
        "frame_index": np.arange(n, dtype=np.int64),
        "episode_index": np.full(n, ep, dtype=np.int64),
        "index": np.arange(start, start + n, dtype=np.int64),
        "task_index": np.full(n, task_index, dtype=np.int64),
    }


def _table(ep_frames, with_images, fixed_lists=True):
    """An arrow table as HF `datasets` writes it: Image -> {bytes, path}, List(length) -> fixed_size_list."""
    cols, fields = {}, []
    for k, v in ep_frames.items():
        if k == "observation.image":
            if not with_images:
                continue
            typ = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
            cols[k] = pa.array(
                [{"bytes": _png(im), "path": f"frame_{i:06d}.png"} for i, im in enumerate(v)], typ
            )
        elif v.dtype == object:
            cols[k] = pa.array(list(v), pa.string())
        elif v.ndim == 2:
            typ = pa.list_(pa.float32(), 2) if fixed_lists else pa.list_(pa.float32())
            cols[k] = pa.array(v.tolist(), typ)
        else:
            cols[k] = pa.array(v)
        fields.append(pa.field(k, cols[k].type))
    hf = {"info": {"features": {f.name: {"_type": "Value"} for f in fields}}}
    return pa.Table.from_arrays(
        list(cols.values()), schema=pa.schema(fields, metadata={"huggingface": json.dumps(hf)})
    )


def _concat(frames_list):
    out = {}
    for k in frames_list[0]:
        vals = [f[k] for f in frames_list]
        out[k] = sum(vals, []) if isinstance(vals[0], list) else np.concatenate(vals)
    return out


TASKS = ["Push the T-shaped block onto the T target.", "Insert the peg."]
LENGTHS = [4, 6, 5]
EP_TASKS = [0, 1, 0]


def _build_v30(root, rng):
    """data: episodes 0,1 in file-000, episode 2 in file-001; episodes meta split over two files."""
    eps, start = [], 0
    for e, n in enumerate(LENGTHS):
        eps.append(_episode_frames(rng, e, n, start, EP_TASKS[e]))
        start += n
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(_table(_concat(eps[:2]), True), root / "data/chunk-000/file-000.parquet")
    pq.write_table(_table(eps[2], True, fixed_lists=False), root / "data/chunk-000/file-001.parquet")
    df = pd.DataFrame({"task_index": [0, 1]}, index=pd.Index(TASKS, name="task"))
    df.to_parquet(root / "meta/tasks.parquet")
    rows, start = [], 0
    for e, n in enumerate(LENGTHS):
        rows.append(
            {
                "episode_index": e,
                "tasks": [TASKS[EP_TASKS[e]]],
                "length": n,
                "data/chunk_index": 0,
                "data/file_index": 0 if e < 2 else 1,
                "dataset_from_index": start,
                "dataset_to_index": start + n,
                "stats/action/mean": eps[e]["action"].mean(0).tolist(),
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0 if e < 2 else 1,
            }
        )
        start += n
    pq.write_table(pa.Table.from_pylist(rows[:2]), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), root / "meta/episodes/chunk-000/file-001.parquet")
    info = {
        "codebase_version": "v3.0",
        "robot_type": "unknown",
        "total_episodes": 3,
        "total_frames": sum(LENGTHS),
        "total_tasks": 2,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": FPS,
        "splits": {"train": "0:3"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
        "features": _features("image"),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    stats = {
        "action": {
            k: getattr(np, k)(_concat(eps)["action"], axis=0).tolist() for k in ("min", "max", "mean", "std")
        }
    }
    stats["action"]["count"] = [sum(LENGTHS)]
    (root / "meta/stats.json").write_text(json.dumps(stats))
    return eps


def _check(ds, eps):
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3 and ds.fps == FPS
    assert ds.tasks == TASKS
    i = 0
    for e, ep in enumerate(eps):
        assert ds.episode_bounds(e) == (i, i + LENGTHS[e])
        for t in range(LENGTHS[e]):
            item = ds[i]
            np.testing.assert_array_equal(item["observation.state"], ep["observation.state"][t])
            np.testing.assert_array_equal(item["action"], ep["action"][t])
            np.testing.assert_array_equal(item["next.reward"], ep["next.reward"][t : t + 1])
            assert item["action"].dtype == np.float32
            assert item["language_instruction"] == f"ep {e} step {t}"
            assert item["task"] == TASKS[EP_TASKS[e]]
            assert (item["episode_index"], item["frame_index"], item["index"]) == (e, t, i)
            i += 1
    np.testing.assert_array_equal(ds.get_column("action"), np.concatenate([ep["action"] for ep in eps]))


def test_reads_v30_from_other_writer(tmp_path, rng):
    root = tmp_path / "v30"
    eps = _build_v30(root, rng)
    ds = LeRobotDataset(root)
    _check(ds, eps)
    for e, ep in enumerate(eps):
        s, _ = ds.episode_bounds(e)
        for t in range(LENGTHS[e]):
            img = ds[s + t]["observation.image"]
            assert img.dtype == np.uint8 and img.shape == (H, W, 3)
            np.testing.assert_array_equal(img, ep["observation.image"][t])
    np.testing.assert_allclose(ds.stats["action"]["mean"], _concat(eps)["action"].mean(0), rtol=1e-6)


def test_v30_extra_uncommitted_episode_is_ignored(tmp_path, rng):
    root = tmp_path / "v30"
    eps = _build_v30(root, rng)
    info = json.loads((root / "meta/info.json").read_text())
    info["total_episodes"], info["total_frames"] = 2, sum(LENGTHS[:2])
    (root / "meta/info.json").write_text(json.dumps(info))
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 2 and len(ds) == sum(LENGTHS[:2])
    np.testing.assert_array_equal(ds[len(ds) - 1]["action"], eps[1]["action"][-1])


def _build_v21(root, rng):
    """v2.1: per-episode parquet + per-episode mp4 (written by imageio-ffmpeg), jsonl metadata."""
    eps, start = [], 0
    feats = _features("video")
    feats["observation.image"]["info"] = {"video.fps": float(FPS), "video.codec": "h264", "has_audio": False}
    for e, n in enumerate(LENGTHS):
        ep = _episode_frames(rng, e, n, start, EP_TASKS[e])
        eps.append(ep)
        start += n
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(ep, with_images=False), path)
        video = root / f"videos/chunk-000/observation.image/episode_{e:06d}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(
            video, ep["observation.image"], fps=FPS, codec="libx264", quality=10, macro_block_size=1
        )
    meta = root / "meta"
    meta.mkdir()
    lines = lambda rows: "".join(json.dumps(r) + "\n" for r in rows)  # noqa: E731
    (meta / "episodes.jsonl").write_text(
        lines({"episode_index": e, "tasks": [TASKS[EP_TASKS[e]]], "length": n} for e, n in enumerate(LENGTHS))
    )
    (meta / "tasks.jsonl").write_text(lines({"task_index": i, "task": t} for i, t in enumerate(TASKS)))
    (meta / "episodes_stats.jsonl").write_text(
        lines(
            {
                "episode_index": e,
                "stats": {
                    "action": {
                        "min": ep["action"].min(0).tolist(),
                        "max": ep["action"].max(0).tolist(),
                        "mean": ep["action"].mean(0).tolist(),
                        "std": ep["action"].std(0).tolist(),
                        "count": [len(ep["action"])],
                    }
                },
            }
            for e, ep in enumerate(eps)
        )
    )
    info = {
        "codebase_version": "v2.1",
        "robot_type": "aloha",
        "total_episodes": 3,
        "total_frames": sum(LENGTHS),
        "total_tasks": 2,
        "total_videos": 3,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": "0:3"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": feats,
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    return eps


def test_reads_v21_from_other_writer(tmp_path, rng):
    import av  # noqa: F401 - required (pyproject: av)
    root = tmp_path / "v21"
    eps = _build_v21(root, rng)
    ds = LeRobotDataset(root)
    assert ds.codebase_version == "v2.1"
    _check(ds, eps)
    for e, ep in enumerate(eps):
        s, _ = ds.episode_bounds(e)
        for t in range(LENGTHS[e]):
            img = ds[s + t]["observation.image"]
            assert img.dtype == np.uint8 and img.shape == (H, W, 3)
            err = np.abs(img.astype(np.int16) - ep["observation.image"][t]).mean()
            assert err < 6, f"episode {e} frame {t}: mean abs error {err}"
    # v2.1 keeps per-episode stats only: the reader pools them
    actions = _concat(eps)["action"].astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["mean"], actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ds.stats["action"]["std"], actions.std(0), rtol=1e-5)
    assert ds.stats["action"]["count"].tolist() == [sum(LENGTHS)]


def test_unsupported_version(tmp_path, rng):
    root = tmp_path / "v30"
    _build_v30(root, rng)
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v1.6"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="v1.6"):
        LeRobotDataset(root)
