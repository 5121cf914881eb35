"""Atomic per episode: crashes mid-episode or between file writes keep saved episodes; resume appends."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from datahelpers import FEATURES, make_frame, record

from vla.data import LeRobotDataset, LeRobotDatasetWriter
from vla.data import format as F


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the writer may catch it."""


def _assert_episodes(root, episodes):
    ds = LeRobotDataset(root)
    frames = [f for ep in episodes for f in ep]
    assert ds.num_episodes == len(episodes) and len(ds) == len(frames)
    for i, ref in enumerate(frames):
        item = ds[i]
        for k in FEATURES:
            np.testing.assert_array_equal(item[k], ref[k], err_msg=f"frame {i} {k}")
        assert item["task"] == ref["task"] and item["index"] == i
    return ds


def test_abandoned_episode_leaves_saved_ones(tmp_path, rng):
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=10, features=FEATURES)
    episodes = record(w, rng, [4, 3])
    for _ in range(5):  # a third episode is being recorded when the process dies
        w.add_frame(make_frame(rng), task="stack the cubes")
    del w
    _assert_episodes(root, episodes)


# save_episode of a new-task episode replaces: data, tasks, episodes, stats, info (5 files)
@pytest.mark.parametrize("crash_at", [0, 1, 2, 3, 4])
def test_crash_between_file_writes(tmp_path, rng, monkeypatch, crash_at):
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=10, features=FEATURES)
    episodes = record(w, rng, [4, 3])
    calls = []
    real_replace = os.replace

    def dying_replace(src, dst):
        if len(calls) == crash_at:
            raise Crash(dst)
        calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(F.os, "replace", dying_replace)
    for _ in range(6):
        w.add_frame(make_frame(rng), task="a brand new task")
    with pytest.raises(Crash):
        w.save_episode()
    monkeypatch.setattr(F.os, "replace", real_replace)
    del w
    _assert_episodes(root, episodes)

    # resume drops the uncommitted tail and continues with consistent indices
    with LeRobotDatasetWriter(root, fps=10, features=FEATURES, resume=True) as w2:
        assert w2.num_episodes == 2
        episodes += record(w2, rng, [2], tasks=["a brand new task"])
    ds = _assert_episodes(root, episodes)
    assert ds.tasks[ds[len(ds) - 1]["task_index"]] == "a brand new task"
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"]) == (3, 9)
    for f in root.rglob("*"):  # rows past the commit point were dropped on resume
        if f.suffix == ".parquet" and "data" in f.parts:
            idx = np.asarray(pq.read_table(f, columns=["index"])["index"])
            assert idx.max() < 9


def test_killed_process_mid_write(tmp_path):
    """A real SIGKILL (os._exit) in the middle of writing the data file of episode 3."""
    root = tmp_path / "ds"
    script = textwrap.dedent(
        f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from datahelpers import FEATURES, record
        from vla.data import LeRobotDatasetWriter
        from vla.data import format as F
        w = LeRobotDatasetWriter({str(root)!r}, fps=10, features=FEATURES)
        record(w, np.random.default_rng(0), [3, 2])
        real = F.pq.ParquetWriter.write_table
        def die(self, table, *a, **k):
            real(self, table, *a, **k)
            os._exit(9)  # temp file half written, nothing replaced yet
        F.pq.ParquetWriter.write_table = die
        record(w, np.random.default_rng(1), [4])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    episodes = record_reference([3, 2])
    _assert_episodes(root, episodes)
    assert list(root.rglob(".*.tmp-*")), "the killed writer should have left its temp file"
    with LeRobotDatasetWriter(root, fps=10, features=FEATURES, resume=True) as w:
        more = record(w, np.random.default_rng(1), [4])
    _assert_episodes(root, episodes + more)
    assert not list(root.rglob(".*.tmp-*"))  # resume cleans up


def record_reference(lengths):
    """The frames `record` produced in the subprocess (same seed), without writing them."""

    class _Null:
        def add_frame(self, frame, task):
            pass

        def save_episode(self):
            pass

    return record(_Null(), np.random.default_rng(0), lengths)


def test_resume_appends_to_new_file(tmp_path, rng):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=FEATURES) as w:
        episodes = record(w, rng, [3, 2])
    with LeRobotDatasetWriter(root, fps=10, features=FEATURES, resume=True) as w:
        assert w.num_episodes == 2
        episodes += record(w, rng, [4])
    ds = _assert_episodes(root, episodes)
    assert ds.episode_bounds(2) == (5, 9)
    assert (root / "data/chunk-000/file-001.parquet").is_file()  # like LeRobot: resume opens a new file
    actions = np.stack([f["action"] for ep in episodes for f in ep]).astype(np.float64)
    np.testing.assert_allclose(ds.stats["action"]["q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-6)
    assert ds.stats["observation.images.wrist"]["count"].tolist() == [9]


def test_resume_rejects_mismatch(tmp_path, rng):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, fps=10, features=FEATURES) as w:
        record(w, rng, [2])
    with pytest.raises(ValueError, match="fps"):
        LeRobotDatasetWriter(root, fps=20, features=FEATURES, resume=True)
    other = {k: v for k, v in FEATURES.items() if k != "action"}
    with pytest.raises(ValueError, match="features differ"):
        LeRobotDatasetWriter(root, fps=10, features=other, resume=True)
    with pytest.raises(ValueError, match="use_videos"):
        LeRobotDatasetWriter(root, fps=10, features=FEATURES, resume=True, use_videos=True)


@pytest.mark.parametrize("fail_at", [0, 2, 4])
@pytest.mark.parametrize("roll", [False, True])
def test_failed_save_rolls_back_and_retries(tmp_path, rng, monkeypatch, fail_at, roll):
    """A write error (disk full) mid-save: the writer stays usable; retrying saves the same episode."""
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=10, features=FEATURES, data_files_size_in_mb=0.01 if roll else 100)
    episodes = record(w, rng, [3, 2])
    calls = []
    real_replace = os.replace

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == fail_at + 1:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(F.os, "replace", failing_replace)
    frames = []
    for _ in range(4):
        f = make_frame(rng)
        w.add_frame(f, task="a brand new task")
        frames.append({**f, "task": "a brand new task"})
    with pytest.raises(OSError, match="space"):
        w.save_episode()
    _assert_episodes(root, episodes)
    assert w.save_episode() == 2  # the buffered frames are still there
    episodes.append(frames)
    episodes += record(w, rng, [2])
    w.close()
    ds = _assert_episodes(root, episodes)
    # LeRobot's own reader concatenates whole data files: they must hold exactly the committed rows
    rows = sum(pq.read_metadata(f).num_rows for f in (root / "data").rglob("*.parquet"))
    assert rows == len(ds)
