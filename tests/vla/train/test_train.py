"""Training: a tiny policy overfits a few episodes; resume is exact; LoRA saves merged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.vla.train.helpers import write_synthetic_dataset
from vla.config import debug_config
from vla.data import LeRobotDataset
from vla.model import VLAPolicy
from vla.train import AugmentConfig, LoraSettings, TrainConfig, train


def _cfg(**kw) -> TrainConfig:
    base = dict(model=debug_config(decoding="autoregressive").to_dict(), max_steps=200, batch_size=16, lr=3e-3,
                warmup_steps=10, val_fraction=0.0, val_every=1000, val_batches=2, log_every=20, save_every=1000,
                augment=None)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds") / "demos", episodes=3, length=8)


def test_tiny_policy_overfits_a_few_episodes(tmp_path, dataset) -> None:
    out = tmp_path / "run"
    summary = train(_cfg(), dataset, out, progress=False)
    ev = summary["last_eval"]
    assert ev["split"] == "train_eval"
    assert ev["token_acc"] >= 0.99 and ev["decoded_token_acc"] >= 0.99
    for name in ("metrics.jsonl", "loss_curve.png", "summary.json", "train_config.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "config.json", "model.safetensors", "norm_stats.json", "tokenizer.json"]
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["split"] == "train"]
    assert train_recs[-1]["loss"] < train_recs[0]["loss"] / 5
    # the saved checkpoint reproduces the demonstrated actions in robot units
    policy = VLAPolicy.from_pretrained(out / "checkpoint")
    ds = LeRobotDataset(dataset)
    item = ds[3]
    obs = {"agentview": item["observation.images.agentview"], "wrist": item["observation.images.wrist"],
           "state": item["observation.state"], "instruction": item["task"]}
    pred = policy.predict_action(obs)  # [H=2, 7]
    # within the bin quantization: half a bin is ~1e-4 m for the deltas, 1/255 for the gripper
    np.testing.assert_allclose(pred[0, :6], item["action"][:6], atol=5e-4)
    assert abs(pred[0, 6] - item["action"][6]) <= 1 / 255 + 1e-6


def test_resume_continues_exactly(tmp_path, dataset) -> None:
    kw = dict(max_steps=6, warmup_steps=0, min_lr_ratio=1.0, augment=AugmentConfig(), save_every=3)
    train(_cfg(**kw), dataset, tmp_path / "straight", progress=False)
    train(_cfg(**{**kw, "max_steps": 3}), dataset, tmp_path / "resumed", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(**kw), dataset, tmp_path / "resumed", progress=False)
    train(_cfg(**kw), dataset, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_lora_trains_and_saves_merged_weights(tmp_path, dataset) -> None:
    cfg = _cfg(max_steps=3, lora=LoraSettings(r=4, alpha=8), freeze_vision=True)
    train(cfg, dataset, tmp_path / "lora", progress=False)
    keys = load_file(str(tmp_path / "lora" / "checkpoint" / "model.safetensors")).keys()
    assert not any("lora_" in k or "base_layer" in k for k in keys)
    policy = VLAPolicy.from_pretrained(tmp_path / "lora" / "checkpoint")  # a plain policy, strict load
    assert (tmp_path / "lora" / "train_state" / "model.safetensors").is_file()
    train(TrainConfig(**{**cfg.__dict__, "max_steps": 4}), dataset, tmp_path / "lora", resume=True, progress=False)
    assert policy.num_action_tokens == 14


def test_fast_tokenizer_run_fits_saves_and_reloads(tmp_path, dataset) -> None:
    cfg = _cfg(max_steps=2, batch_size=4, val_batches=1, model=debug_config(tokenizer="fast", horizon=4).to_dict())
    summary = train(cfg, dataset, tmp_path / "fast", progress=False)
    assert summary["last_eval"]["token_acc"] >= 0.0
    policy = VLAPolicy.from_pretrained(tmp_path / "fast" / "checkpoint")
    assert policy.action_tokenizer.fitted and policy.eos_id is not None
    ds = LeRobotDataset(dataset)
    item = ds[0]
    obs = {"agentview": item["observation.images.agentview"], "wrist": item["observation.images.wrist"],
           "state": item["observation.state"], "instruction": item["task"]}
    acts = policy.predict_action(obs)  # 2 steps of training: may not decode -> NaN, never a silent zero
    assert acts.shape == (4, 7) and (np.isfinite(acts).all() or np.isnan(acts).all())


@pytest.mark.parametrize("source", ["actions", "visual"])
def test_aux_task_state_head_trains_resumes_and_is_checked(tmp_path, source: str) -> None:
    ds = write_synthetic_dataset(tmp_path / "env_ds", episodes=3, length=8, env_state=True)
    # the pointer over image tokens, instruction-FiLMed, also fed to the LM as a prefix token
    extra = {"film": True, "pointer_token": True} if source == "visual" else {}
    model = debug_config(decoding="parallel", visual_pos_embed=True, aux_state_dim=6, aux_source=source,
                         **extra).to_dict()
    cfg = _cfg(model=model, max_steps=60, log_every=5)
    train(cfg, ds, tmp_path / "run", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    aux = [r["aux_mse"] for r in recs if r["split"] == "train"]
    assert len(aux) == 12 and aux[-1] < aux[0] / 2  # the head learns the recorded task state
    policy = VLAPolicy.from_pretrained(tmp_path / "run" / "checkpoint")
    assert "observation.environment_state" in policy.normalizers  # kept for --resume
    train(_cfg(model=model, max_steps=62, log_every=5), ds, tmp_path / "run", resume=True, progress=False)
    # the head needs the privileged column: a dataset without it is refused up front, naming the key
    plain = write_synthetic_dataset(tmp_path / "plain", episodes=2, length=4)
    with pytest.raises(ValueError, match="observation.environment_state"):
        train(cfg, plain, tmp_path / "bad", progress=False)
