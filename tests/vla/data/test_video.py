"""use_videos=True: episodes concatenated into one mp4 per camera; decode gives the frames back closely."""

import json

import av  # noqa: E402,F401 - required (pyproject: av)
import numpy as np
import pyarrow.parquet as pq
import pytest
from datahelpers import FEATURES, make_frame

from vla.data import LeRobotDataset, LeRobotDatasetWriter

SMOOTH = {k: v for k, v in FEATURES.items() if k != "observation.images.wrist"}  # noise does not compress


def _record(w, rng, lengths):
    out = []
    for e, n in enumerate(lengths):
        frames = []
        for _ in range(n):
            f = make_frame(rng)
            del f["observation.images.wrist"]
            w.add_frame(f, task=f"task {e % 2}")
            frames.append(f)
        w.save_episode()
        out.append(frames)
    return out


def _check_close(ds, episodes):
    frames = [f for ep in episodes for f in ep]
    assert len(ds) == len(frames)
    for i in [*range(len(ds)), 3, 0]:  # sequential, then jumps back across episodes
        ref = frames[i]
        item = ds[i]
        img = item["observation.images.agentview"]
        assert img.dtype == np.uint8 and img.shape == ref["observation.images.agentview"].shape
        err = np.abs(img.astype(np.int16) - ref["observation.images.agentview"]).mean()
        # yuv420p chroma subsampling alone costs ~2 levels on these 32x32 images; a wrong frame ~90
        assert err < 6, f"frame {i}: mean abs error {err}"
        np.testing.assert_array_equal(item["action"], ref["action"])


def test_video_round_trip(tmp_path, rng):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=SMOOTH, use_videos=True) as w:
        episodes = _record(w, rng, [5, 3, 6])
    info = json.loads((root / "meta/info.json").read_text())
    ft = info["features"]["observation.images.agentview"]
    assert ft["dtype"] == "video" and ft["info"]["video.codec"] == "h264" and ft["info"]["video.fps"] == 10
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    videos = list((root / "videos").rglob("*.mp4"))
    assert [p.relative_to(root).as_posix() for p in videos] == [
        "videos/observation.images.agentview/chunk-000/file-000.mp4"
    ]
    assert (
        "observation.images.agentview" not in pq.read_schema(root / "data/chunk-000/file-000.parquet").names
    )
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    spans = [
        (
            e["videos/observation.images.agentview/from_timestamp"],
            e["videos/observation.images.agentview/to_timestamp"],
        )
        for e in eps
    ]
    np.testing.assert_allclose(spans, [(0.0, 0.5), (0.5, 0.8), (0.8, 1.4)])
    ds = LeRobotDataset(root)
    _check_close(ds, episodes)
    for i in (0, 7, len(ds) - 1):  # the bulk-load accessor decodes the same frame as indexing
        np.testing.assert_array_equal(ds.frame(i, "observation.images.agentview"), ds[i]["observation.images.agentview"])
    assert ds.stats["observation.images.agentview"]["mean"].shape == (3, 1, 1)


def test_video_resume_and_roll(tmp_path, rng):
    root = tmp_path / "ds"
    kw = dict(fps=10, features=SMOOTH, use_videos=True, video_files_size_in_mb=0.002)
    with LeRobotDatasetWriter(root, **kw) as w:
        episodes = _record(w, rng, [4, 4])
    with LeRobotDatasetWriter(root, resume=True, **kw) as w:
        episodes += _record(w, rng, [3])
    files = sorted((root / "videos/observation.images.agentview/chunk-000").glob("*.mp4"))
    assert len(files) == 3  # the 2 KB limit rolled after episode 0, resume opened another
    _check_close(LeRobotDataset(root), episodes)


def test_video_failed_save_retries_cleanly(tmp_path, rng, monkeypatch):
    import os

    from vla.data import format as F

    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=10, features=SMOOTH, use_videos=True)
    episodes = _record(w, rng, [3, 2])
    real_replace = os.replace

    def fail_on_data(src, dst):  # the video append lands, then the data file write fails
        if str(dst).endswith(".parquet") and "data" in str(dst):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(F.os, "replace", fail_on_data)
    with pytest.raises(OSError):
        _record(w, rng, [4])
    monkeypatch.setattr(F.os, "replace", real_replace)
    w.clear_episode()
    episodes += _record(w, rng, [4, 2])
    w.close()
    _check_close(LeRobotDataset(root), episodes)
