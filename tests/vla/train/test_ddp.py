"""DDP smoke test: `torchrun` with 2 CPU processes on gloo trains a few steps and rank 0 checkpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import yaml

from tests.vla.train.helpers import write_synthetic_dataset
from vla.config import debug_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run(tmp_path) -> None:
    ds = write_synthetic_dataset(tmp_path / "demos", episodes=2, length=6)
    cfg = {"model": debug_config(decoding="parallel").to_dict(), "max_steps": 3, "batch_size": 4,
           "warmup_steps": 1, "val_fraction": 0.0, "val_every": 3, "val_batches": 1, "log_every": 1}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "vla.cli.train", "--config", str(tmp_path / "t.yaml"),
           "--dataset", str(ds), "--out", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
    train_lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train_lines if r["split"] == "train"] == [1, 2, 3]  # rank 0 logs once per step
