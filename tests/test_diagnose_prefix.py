"""scripts/diagnose_prefix.py on a task where only the prefix carries the answer: each episode repeats one
random action, so a prefix-conditioned policy can only copy the given step. The script must see that: the
true prefix lowers the error far below unforced, and another frame's prefix is followed (the continuation
matches that frame, not the image's). An unconditioned parallel checkpoint is refused by name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import make_policy
from tests.vla.train.helpers import features

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("diagnose_prefix", ROOT / "scripts" / "diagnose_prefix.py")
diag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diag)


def _dataset(root: Path, episodes: int = 48, length: int = 3, size: int = 32) -> Path:
    from vla.data import LeRobotDatasetWriter

    rng = np.random.default_rng(0)
    with LeRobotDatasetWriter(root, fps=10, robot_type="franka_panda", features=features(size)) as w:
        for _ in range(episodes):
            a = rng.uniform(-0.02, 0.02, 7).astype(np.float32)
            a[6] = 1.0
            for _ in range(length):
                w.add_frame({"observation.images.agentview": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                             "observation.images.wrist": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                             "observation.state": rng.normal(size=8).astype(np.float32), "action": a},
                            task="lift")
            w.save_episode()
    return root


def _trained(data: Path, out: Path) -> Path:
    from tests.vla.model.test_prefix_conditioning import conditioned_cfg
    from vla.train.data import load_frames, make_batch
    from vla.train.loop import fit_normalizers

    cfg = conditioned_cfg(p=1.0, horizon=2)
    policy = make_policy(cfg, instructions=["lift"])
    frames = load_frames([str(data)], cfg.cameras, cfg.vision.image_size, vision=cfg.vision)
    io = fit_normalizers(policy, frames)
    starts = np.flatnonzero(np.arange(len(frames)) < frames.episode_stop - 1)  # chunks inside an episode
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = make_batch(io, frames, starts[torch.randperm(len(starts), generator=gen)[:32].numpy()], None, gen)
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval().save_pretrained(out, io)
    return out


def test_the_diagnosis_sees_a_policy_that_copies_its_prefix(tmp_path, capsys):
    data = _dataset(tmp_path / "data")
    ckpt = _trained(data, tmp_path / "ckpt")
    assert diag.main(["--checkpoint", str(ckpt), "--demos", str(data), "--given", "1", "--frames", "96",
                      "--out", str(tmp_path / "r.json")]) == 0
    e = {k: v["mean"] for k, v in json.loads((tmp_path / "r.json").read_text())["errors"].items()}
    assert e["true"] < 0.5 * e["free"], e
    assert e["other_vs_other"] < 0.5 * e["other"], e  # it follows the other frame's prefix
    assert "other_vs_other" in capsys.readouterr().out


def test_an_unconditioned_parallel_checkpoint_is_refused(tmp_path):
    from tests.vla.model.conftest import io_of

    data = _dataset(tmp_path / "data", episodes=2)
    policy = make_policy(decoding="parallel", horizon=2, instructions=["lift"])
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    with pytest.raises(SystemExit, match="prefix_conditioning"):
        diag.main(["--checkpoint", str(tmp_path / "ckpt"), "--demos", str(data)])
