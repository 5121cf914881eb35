"""Training: a tiny policy overfits a few episodes; resume is exact; LoRA saves merged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.vla.train.helpers import write_synthetic_dataset
from vla.config import AuxConfig, FiLMConfig, debug_config
from vla.data import LeRobotDataset
from vla.model.policy import VLAPolicy
from vla.model.runtime import TorchRuntime
from vla.normalization import NormStats
from vla.policy_io import ENV_STATE_KEY, PolicyIO
from vla.train import AugmentConfig, LoraSettings, TrainConfig, train


def _cfg(**kw) -> TrainConfig:
    base = dict(model=debug_config(decoding="autoregressive").to_dict(), max_steps=200, batch_size=16, lr=3e-3,
                warmup_steps=10, val_fraction=0.0, val_every=1000, val_batches=2, log_every=20, save_every=1000,
                augment=None, bin_sigma=0.0, start_oversample=None, num_threads=0)
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
    rt = TorchRuntime.from_checkpoint(out / "checkpoint")
    ds = LeRobotDataset(dataset)
    item = ds[3]
    obs = {"agentview": item["observation.images.agentview"], "wrist": item["observation.images.wrist"],
           "state": item["observation.state"], "instruction": item["task"]}
    pred = rt.predict_action(obs)  # [H=2, 7]
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
    saved = load_file(str(tmp_path / "lora" / "checkpoint" / "model.safetensors"))
    assert not any("lora_" in k or "base_layer" in k for k in saved)
    VLAPolicy.from_pretrained(tmp_path / "lora" / "checkpoint")  # a plain policy: strict load of the merged weights
    torch.manual_seed(cfg.seed)  # the initial weights, as train() builds them
    init = VLAPolicy.from_config(cfg.model_config(), instructions=LeRobotDataset(dataset).tasks).state_dict()
    q = "lm.model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(saved[q], init[q])  # the adapters moved the LoRA targets: merged into the saved weights
    assert torch.equal(saved["lm.model.layers.0.mlp.up_proj.weight"], init["lm.model.layers.0.mlp.up_proj.weight"])
    vision = [k for k in init if k.startswith("vision.") and "running" not in k and "num_batches" not in k]
    assert vision and all(torch.equal(saved[k], init[k]) for k in vision)  # freeze_vision held
    assert (tmp_path / "lora" / "train_state" / "model.safetensors").is_file()
    summary = train(TrainConfig(**{**cfg.__dict__, "max_steps": 4}), dataset, tmp_path / "lora", resume=True,
                    progress=False)
    assert summary["steps"] == 4


def test_fast_tokenizer_run_fits_saves_and_reloads(tmp_path, dataset) -> None:
    cfg = _cfg(max_steps=2, batch_size=4, val_batches=1, model=debug_config(tokenizer="fast", horizon=4).to_dict())
    train(cfg, dataset, tmp_path / "fast", progress=False)
    ckpt = tmp_path / "fast" / "checkpoint"
    policy = VLAPolicy.from_pretrained(ckpt)
    assert policy.action_tokenizer.fitted and policy.eos_id is not None
    # the fitted tokenizer travels with the checkpoint: a demo chunk goes through its ids and back to robot units
    io = PolicyIO.load(ckpt)
    ds = LeRobotDataset(dataset)
    chunk = np.stack([ds[i]["action"] for i in range(4)])[None]  # [1, H=4, 7], one episode's first 4 steps
    ids, mask = io.targets(io.normalize_actions(chunk))
    back = io.outputs([list(ids[0][mask[0]])])
    assert back.valid.tolist() == [True]
    np.testing.assert_allclose(back.actions, chunk, atol=0.05)
    item = ds[0]
    obs = {"agentview": item["observation.images.agentview"], "wrist": item["observation.images.wrist"],
           "state": item["observation.state"], "instruction": item["task"]}
    rt = TorchRuntime(policy, io)
    a, b = rt.infer(obs), TorchRuntime.from_checkpoint(ckpt).infer(obs)
    assert a.actions.shape == (4, 7) and bool(a.valid) == bool(np.isfinite(a.actions).all())  # the flag tells
    np.testing.assert_array_equal(a.actions, b.actions)  # NaN where invalid, never a silent zero


def test_aux_task_state_head_trains_resumes_and_is_checked(tmp_path) -> None:
    ds = write_synthetic_dataset(tmp_path / "env_ds", episodes=3, length=8, env_state=True)
    # the shipped default's head: a pointer over instruction-FiLMed, position-embedded image tokens
    model = debug_config(decoding="parallel", visual_pos_embed=True, aux=AuxConfig(state_dim=6, weight=1.0),
                         film=FiLMConfig()).to_dict()
    cfg = _cfg(model=model, max_steps=60, log_every=5)
    train(cfg, ds, tmp_path / "run", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    aux = [r["aux_mse"] for r in recs if r["split"] == "train"]
    assert len(aux) == 12 and aux[-1] < aux[0] / 2  # the head learns the recorded task state
    # the task-state stats are saved with the checkpoint (--resume normalizes with the very same ones)
    env = LeRobotDataset(ds).get_column(ENV_STATE_KEY)
    saved = PolicyIO.load(tmp_path / "run" / "checkpoint").normalizers[ENV_STATE_KEY].stats
    np.testing.assert_array_equal(saved.mean, NormStats.fit(np.asarray(env, dtype=np.float32)).mean)
    summary = train(_cfg(model=model, max_steps=62, log_every=5), ds, tmp_path / "run", resume=True, progress=False)
    assert summary["steps"] == 62 and "aux_mse" in summary["last_train"]
    # the head needs the privileged column: a dataset without it is refused up front, naming the key
    plain = write_synthetic_dataset(tmp_path / "plain", episodes=2, length=4)
    with pytest.raises(ValueError, match="observation.environment_state.*aux=null"):
        train(cfg, plain, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    # without the head, the same data trains (the teleop recipe: --set model.aux=null)
    teleop = TrainConfig.from_dict(cfg.to_dict(), {"model.aux": None, "max_steps": 2})
    assert "aux_mse" not in train(teleop, plain, tmp_path / "teleop", progress=False)["last_train"]
