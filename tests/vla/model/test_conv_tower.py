"""Convolutional vision towers (ResNet, ConvNeXt): feature maps become a square grid of tokens.

    .venv/bin/pytest tests/vla/model/test_conv_tower.py -q
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    batch_actions,
    checkpoint_actions,
    io_of,
    make_obs,
    make_policy,
    prepare,
    runtime,
    targets,
)
from vla.config import VisionConfig, debug_config
from vla.model import VLAPolicy
from vla.model.vision import VisionTower, coord_grid

# 32x32 input: ResNet stem /4 -> 8x8, second stage /2 -> 4x4. (ConvNeXt, {"patch_size": 4,
# "hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2}, takes the same path; left out for test time.)
CONV_TOWERS = {
    "resnet": {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"},
}


def _conv_policy(model_type: str, coord_channels: bool = False) -> VLAPolicy:
    torch.manual_seed(0)
    cfg = debug_config(projector="pixel_shuffle", decoding="parallel")
    cfg = dataclasses.replace(cfg, vision=VisionConfig(model_type=model_type, image_size=32,
                                                       hf_config=CONV_TOWERS[model_type], coord_channels=coord_channels))
    return make_policy(cfg)


@pytest.mark.parametrize("model_type", sorted(CONV_TOWERS))
def test_conv_feature_map_becomes_row_major_tokens(model_type: str) -> None:
    tower = VisionTower(VisionConfig(model_type=model_type, image_size=32, hf_config=CONV_TOWERS[model_type],
                                     coord_channels=False))
    assert (tower.num_patches, tower.grid, tower.hidden_size) == (16, 4, 16)
    tower.eval()
    x = torch.randn(2, 3, 32, 32)
    fmap = tower.model(pixel_values=x).last_hidden_state  # [2, 16, 4, 4]
    tokens = tower(x)  # [2, 16, 16]
    assert tokens.shape == (2, 16, 16)
    # token r*4 + c is the feature vector at grid cell (r, c)
    assert torch.equal(tokens[:, 1 * 4 + 2], fmap[:, :, 1, 2])


def test_vit_tower_is_unchanged() -> None:
    tower = VisionTower(VisionConfig(model_type="siglip_vision_model", image_size=32, coord_channels=False,
                                     hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                "num_attention_heads": 2, "patch_size": 8}))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(tower(x), tower.model(pixel_values=x).last_hidden_state)
    assert (tower.num_patches, tower.grid, tower.hidden_size) == (16, 4, 32)


def test_coord_grid_values() -> None:
    g = coord_grid(4)  # pixel centres of a 4-pixel side: -0.75, -0.25, 0.25, 0.75
    c = torch.tensor([-0.75, -0.25, 0.25, 0.75])
    assert g.shape == (1, 2, 4, 4)
    assert torch.equal(g[0, 0, 2], c) and torch.equal(g[0, 1, :, 2], c)  # x along a row, y down a column


def test_coord_channels_feed_the_tower_xy() -> None:
    tower = VisionTower(VisionConfig(model_type="resnet", image_size=32, hf_config=CONV_TOWERS["resnet"],
                                     coord_channels=True)).eval()
    assert tower.model.config.num_channels == 5 and (tower.num_patches, tower.hidden_size) == (16, 16)
    assert "coords" not in tower.state_dict()  # rebuilt from the config, not a weight
    x = torch.randn(2, 3, 32, 32)
    fmap = tower.model(pixel_values=torch.cat([x, coord_grid(32).expand(2, -1, -1, -1)], 1)).last_hidden_state
    assert torch.equal(tower(x), fmap.flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="coord_channels"):
        VisionConfig(pretrained="/models/siglip", coord_channels=True)


@pytest.mark.parametrize("coord_channels", [False, True], ids=["plain", "coordconv"])
def test_resnet_policy_trains_decodes_and_round_trips(tmp_path, coord_channels: bool) -> None:
    policy = _conv_policy("resnet", coord_channels)
    assert policy.num_visual_tokens == 2 * 4  # 4x4 grid, pixel_shuffle 2 -> 4 tokens per camera
    obs = [make_obs(0), make_obs(1, "push the cube to the target")]
    batch = prepare(policy, obs)
    chunks = np.random.default_rng(0).uniform(-1, 1, (2, 2, 7))
    batch["action_ids"], batch["action_mask"] = targets(policy, chunks)
    before = [p.detach().clone() for p in policy.vision.parameters()]
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    loss, _ = policy.compute_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.vision.parameters(), strict=True))
    policy.eval()
    for mode in ("parallel", "autoregressive"):
        acts = runtime(policy, mode=mode).infer_batch(obs).actions
        assert acts.shape == (2, 2, 7) and np.isfinite(acts).all()
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.vision.model.config.model_type == "resnet"
    # BatchNorm running statistics travel with the weights: eval-mode actions are identical
    np.testing.assert_array_equal(checkpoint_actions(tmp_path / "ckpt", obs), batch_actions(policy, obs))
