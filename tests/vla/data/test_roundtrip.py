"""LeRobotDatasetWriter -> LeRobotDataset: exact round trip, v3.0 layout, stats against numpy, bad input."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from datahelpers import FEATURES, make_frame, record

from vla.data import LeRobotDataset, LeRobotDatasetWriter

LENGTHS = [5, 3, 7]


@pytest.fixture
def written(tmp_path, rng):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=FEATURES) as w:
        episodes = record(w, rng, LENGTHS)
    return root, episodes


def test_round_trip_exact(written):
    root, episodes = written
    ds = LeRobotDataset(root)
    assert len(ds) == sum(LENGTHS) and ds.num_episodes == 3 and ds.fps == 10
    assert ds.tasks == ["pick up the red cube", "push the blue cube"]
    i = 0
    for e, frames in enumerate(episodes):
        assert ds.episode_bounds(e) == (i, i + len(frames))
        for t, ref in enumerate(frames):
            item = ds[i]
            for k in FEATURES:
                assert item[k].dtype == ref[k].dtype and item[k].shape == ref[k].shape, k
                np.testing.assert_array_equal(item[k], ref[k], err_msg=k)
            assert item["task"] == ref["task"]
            assert (item["episode_index"], item["frame_index"], item["index"]) == (e, t, i)
            assert item["timestamp"] == pytest.approx(t / 10)
            for k in ds.image_keys:  # the bulk-load accessor returns the same pixels
                np.testing.assert_array_equal(ds.frame(i, k), ref[k], err_msg=k)
            i += 1
    np.testing.assert_array_equal(ds.episode_indices, np.repeat([0, 1, 2], LENGTHS))
    actions = np.stack([f["action"] for ep in episodes for f in ep])
    np.testing.assert_array_equal(ds.get_column("action"), actions)
    assert ds[-1]["index"] == len(ds) - 1
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="image"):
        ds.get_column("observation.images.wrist")
    with pytest.raises(KeyError, match="no image or video feature 'action'"):
        ds.frame(0, "action")
    with pytest.raises(IndexError):
        ds.frame(len(ds), ds.image_keys[0])


def test_layout_matches_lerobot_v3(written):
    root, _ = written
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "franka_panda"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 15, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None and info["splits"] == {"train": "0:3"}
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert info["features"][k]["shape"] == [1]
    assert info["features"]["action"] == FEATURES["action"]

    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert data.num_rows == 15 and data.num_columns == 9
    img_type = data.schema.field("observation.images.agentview").type
    assert [img_type.field(i).name for i in range(img_type.num_fields)] == ["bytes", "path"]
    png = data["observation.images.agentview"][0].as_py()["bytes"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    hf = json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf["observation.images.agentview"] == {"_type": "Image"}
    assert hf["action"]["length"] == 7
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").num_row_groups == 3  # one per episode

    tasks = pq.read_table(root / "meta/tasks.parquet").to_pandas()
    assert tasks.index.name == "task" and tasks.loc["push the blue cube", "task_index"] == 1

    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in eps] == [0, 1, 2]
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == [(0, 5), (5, 8), (8, 15)]
    assert eps[1]["tasks"] == ["push the blue cube"] and eps[2]["length"] == 7
    assert (eps[0]["data/chunk_index"], eps[0]["data/file_index"]) == (0, 0)
    assert np.asarray(eps[0]["stats/observation.images.wrist/mean"]).shape == (3, 1, 1)


def test_stats_match_numpy(written):
    root, episodes = written
    ds = LeRobotDataset(root)
    frames = [f for ep in episodes for f in ep]
    for key in ("action", "observation.state"):
        x = np.stack([f[key] for f in frames]).astype(np.float64)
        st = ds.stats[key]
        np.testing.assert_allclose(st["mean"], x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(st["std"], x.std(0), rtol=1e-6)
        np.testing.assert_allclose(st["min"], x.min(0))
        np.testing.assert_allclose(st["max"], x.max(0))
        np.testing.assert_allclose(st["q01"], np.quantile(x, 0.01, axis=0), rtol=1e-6)
        np.testing.assert_allclose(st["q99"], np.quantile(x, 0.99, axis=0), rtol=1e-6)
        assert st["count"].tolist() == [15]
    # images: per channel over all pixels of all frames (episodes < 100 frames are fully sampled), in [0, 1]
    px = np.stack([f["observation.images.wrist"] for f in frames]).reshape(-1, 3) / 255.0
    st = ds.stats["observation.images.wrist"]
    assert st["mean"].shape == (3, 1, 1)
    np.testing.assert_allclose(st["mean"].reshape(3), px.mean(0), rtol=1e-9)
    np.testing.assert_allclose(st["std"].reshape(3), px.std(0), rtol=1e-9)
    np.testing.assert_allclose(st["min"].reshape(3), px.min(0))
    np.testing.assert_allclose(st["max"].reshape(3), px.max(0))


def test_data_files_roll_over_at_size_limit(tmp_path, rng):
    root = tmp_path / "ds"
    # ~9 KB of PNG per frame: a 0.02 MB limit forces a new data file every episode or two
    with LeRobotDatasetWriter(root, fps=5, features=FEATURES, data_files_size_in_mb=0.02) as w:
        episodes = record(w, rng, [2, 2, 2, 2])
    files = sorted((root / "data/chunk-000").glob("file-*.parquet"))
    assert len(files) >= 2
    ds = LeRobotDataset(root)
    frames = [f for ep in episodes for f in ep]
    assert len(ds) == len(frames)
    for i, ref in enumerate(frames):
        np.testing.assert_array_equal(ds[i]["observation.images.wrist"], ref["observation.images.wrist"])


def test_chunks_roll_over(tmp_path, rng):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter(
        root, fps=5, features=FEATURES, data_files_size_in_mb=0.001, chunks_size=2
    ) as w:
        record(w, rng, [1, 1, 1])
    assert (root / "data/chunk-001/file-000.parquet").is_file()
    assert LeRobotDataset(root)[2]["episode_index"] == 2


def _writer(tmp_path):
    return LeRobotDatasetWriter(tmp_path / "ds", fps=10, features=FEATURES)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f.pop("action"), "missing.*action"),
        (lambda f: f.update(extra=np.zeros(1)), "unexpected.*extra"),
        (lambda f: f.update(action=np.zeros(6, np.float32)), "action.*shape"),
        (lambda f: f.update(action=np.zeros(7, np.int64)), "action.*dtype"),
        (lambda f: f.update({"observation.images.wrist": np.zeros((32, 32, 3), np.float32)}), "wrist.*uint8"),
        (lambda f: f.update({"observation.images.wrist": np.zeros((16, 32, 3), np.uint8)}), "wrist.*shape"),
    ],
)
def test_add_frame_rejects_bad_frames(tmp_path, rng, mutate, match):
    w = _writer(tmp_path)
    frame = make_frame(rng)
    mutate(frame)
    with pytest.raises(ValueError, match=match):
        w.add_frame(frame, task="t")
    assert w.num_buffered_frames == 0


def test_writer_errors(tmp_path, rng):
    w = _writer(tmp_path)
    with pytest.raises(ValueError, match="empty episode"):
        w.save_episode()
    with pytest.raises(ValueError, match="task"):
        w.add_frame(make_frame(rng), task="")
    w.add_frame(make_frame(rng), task="t")
    with pytest.raises(ValueError, match="not saved"):
        w.close()
    w.clear_episode()
    w.close()
    with pytest.raises(FileExistsError, match="resume"):
        _writer(tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        LeRobotDatasetWriter(tmp_path / "x", fps=10, features={**FEATURES, "timestamp": FEATURES["action"]})
    with pytest.raises(ValueError, match="dtype"):
        LeRobotDatasetWriter(tmp_path / "y", fps=10, features={"a": {"dtype": "complex64", "shape": [2]}})
    with pytest.raises(ValueError, match="fps"):
        LeRobotDatasetWriter(tmp_path / "z", fps=0, features=FEATURES)


def test_reader_errors(tmp_path, written):
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        LeRobotDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LeRobotDataset(tmp_path / "missing")
    root, _ = written
    (root / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="file-000.parquet"):
        LeRobotDataset(root)


def test_empty_dataset_reads(tmp_path):
    _writer(tmp_path).close()
    ds = LeRobotDataset(tmp_path / "ds")
    assert len(ds) == 0 and ds.num_episodes == 0 and ds.get_column("action").shape == (0, 7)


def test_image_stats_quantiles_match_numpy(rng):
    from vla.data.stats import image_stats

    frames = rng.integers(0, 256, (7, 9, 11, 3), dtype=np.uint8)
    frames[..., 0] //= 7  # skewed channel
    st = image_stats(frames)
    px = frames.reshape(-1, 3) / 255.0
    for key, q in {"q01": 0.01, "q10": 0.1, "q50": 0.5, "q90": 0.9, "q99": 0.99}.items():
        np.testing.assert_allclose(st[key].reshape(3), np.quantile(px, q, axis=0), rtol=1e-12, err_msg=key)
    np.testing.assert_allclose(st["std"].reshape(3), px.std(0), rtol=1e-12)
    np.testing.assert_allclose(st["min"].reshape(3), px.min(0))
    np.testing.assert_allclose(st["max"].reshape(3), px.max(0))
    assert st["count"].tolist() == [7]


def test_random_access_with_tiny_image_cache_and_copies(written, rng):
    import copy

    root, episodes = written
    frames = [f for ep in episodes for f in ep]
    ds = LeRobotDataset(root, image_cache_mb=0)  # evicts on every row-group switch
    for i in rng.permutation(len(frames)):
        np.testing.assert_array_equal(
            ds[int(i)]["observation.images.agentview"], frames[i]["observation.images.agentview"]
        )
    clone = copy.deepcopy(ds)  # what a spawned DataLoader worker receives: no caches, same data
    assert not clone._image_cache and len(clone) == len(ds)
    np.testing.assert_array_equal(clone[3]["observation.images.wrist"], frames[3]["observation.images.wrist"])
    with pytest.raises(ValueError, match="image_cache_mb"):
        LeRobotDataset(root, image_cache_mb=-1)
