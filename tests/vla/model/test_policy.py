"""Policy config validation, dummy inputs, save/load round trip and prediction shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import make_obs, make_policy
from vla.model import VLAConfig, VLAPolicy
from vla.model.config import ActionConfig, TextConfig, debug_config


def test_config_round_trips_through_a_dict() -> None:
    cfg = debug_config(projector="resampler", decoding="parallel")
    again = VLAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: ActionConfig(decoding="beam"), "ActionConfig.decoding"),
        (lambda: ActionConfig(tokenizer="fast", decoding="parallel"), "ActionConfig.decoding"),
        (lambda: ActionConfig(horizon=0), "ActionConfig.horizon"),
        (lambda: TextConfig(vocab_size=100), "TextConfig.vocab_size"),
        (lambda: VLAConfig(cameras=()), "VLAConfig.cameras"),
        (lambda: VLAConfig(prompt_template="no slot"), "VLAConfig.prompt_template"),
        (lambda: VLAConfig.from_dict({"lm": {"hidden": 3}}), "unknown keys"),
    ],
)
def test_invalid_configs_name_the_field(bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_example_batch_runs_forward_in_both_modes(ar_policy) -> None:
    batch = ar_policy.cfg.example_batch(batch_size=3, text_vocab=ar_policy.text_vocab_size)
    assert batch["pixel_values"].shape == (3, 2, 3, 32, 32)
    n = ar_policy.num_action_tokens
    logits = ar_policy(**batch, mode="parallel")
    assert logits.shape == (3, n, ar_policy.vocab_size)
    ids = torch.full((3, n), ar_policy.vocab_size - 1)
    assert ar_policy(**batch, action_ids=ids).shape == (3, n, ar_policy.vocab_size)


def test_save_load_gives_identical_actions(tmp_path, ar_policy) -> None:
    obs = [make_obs(0), make_obs(5, "stack the cubes")]
    before = ar_policy.predict_action_batch(obs)
    ar_policy.save_pretrained(tmp_path / "ckpt")
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["config.json", "model.safetensors", "norm_stats.json", "tokenizer.json"]
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.predict_action_batch(obs), before)
    assert loaded.predict_action(obs[0]).shape == (2, 7)
    # saving over an existing checkpoint replaces it atomically (no leftovers next to it)
    ar_policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_prediction_is_in_robot_units(ar_policy) -> None:
    acts = ar_policy.predict_action(make_obs(0))
    q01, q99 = ar_policy.normalizers["action"].stats.q01, ar_policy.normalizers["action"].stats.q99
    assert np.all(acts[:, :6] >= q01[:6] - 1e-6) and np.all(acts[:, :6] <= q99[:6] + 1e-6)
    assert np.all(np.abs(acts[:, 6]) <= 1.0)  # gripper stays in [-1, 1], unnormalized


def test_missing_inputs_are_explicit_errors(ar_policy) -> None:
    obs = make_obs(0)
    del obs["wrist"]
    with pytest.raises(ValueError, match="wrist"):
        ar_policy.predict_action(obs)
    with pytest.raises(ValueError, match="prompt_len"):
        ar_policy.predict_action(make_obs(0, "pick up " * 60))
    fresh = make_policy()
    fresh.normalizers = {}
    with pytest.raises(ValueError, match="normalizer"):
        fresh.predict_action(make_obs(0))
