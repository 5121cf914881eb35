"""Every registered projector builds inside a policy, trains one step and decodes action ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    batch_actions,
    make_obs,
    make_policy,
    prepare,
    targets,
)
from vla.model import PROJECTORS, ProjectorConfig, build_projector

# tokens per camera with the test tower (32x32 images, patch 8 -> 4x4 = 16 patches)
EXPECTED_TOKENS = {"linear": 16, "mlp": 16, "pixel_shuffle": 4, "resampler": 4, "qformer": 4, "fused_gelu_mlp": 16}


def test_every_projector_has_an_expected_token_count() -> None:
    assert set(PROJECTORS) == set(EXPECTED_TOKENS)


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_projector_builds_trains_and_decodes(name: str) -> None:
    policy = make_policy(projector=name)
    assert policy.projector.num_tokens == EXPECTED_TOKENS[name]
    assert policy.num_visual_tokens == 2 * EXPECTED_TOKENS[name]
    obs = [make_obs(0), make_obs(1, "push the cube to the target")]
    batch = prepare(policy, obs)
    chunks = np.random.default_rng(0).uniform(-1, 1, (2, 2, 7))
    batch["action_ids"], batch["action_mask"] = targets(policy, chunks)
    before = [p.detach().clone() for p in policy.projector.parameters()]
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    loss, stats = policy.compute_loss(batch)
    assert torch.isfinite(loss) and stats["n_tokens"] == 2 * 2 * 7
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.projector.parameters(), strict=True))
    acts = batch_actions(policy, obs)
    assert acts.shape == (2, 2, 7) and np.isfinite(acts).all()


def test_pixel_shuffle_rejects_a_grid_it_cannot_divide() -> None:
    with pytest.raises(ValueError, match="shuffle_factor"):
        build_projector(ProjectorConfig(type="pixel_shuffle", shuffle_factor=3), 8, 8, num_patches=16, grid=4)


def test_unknown_projector_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="ProjectorConfig.type"):
        ProjectorConfig(type="qformer9000")


def test_patch_positions_are_unit_scale_and_near_for_neighbours():
    from vla.model.projectors.positions import patch_positions

    t = patch_positions(64, 8, 32)  # an 8 x 8 grid, row-major
    torch.testing.assert_close(t.pow(2).mean(1), torch.ones(64))  # the scale of LayerNorm'd keys
    d = torch.cdist(t, t)
    assert d[0, 1] < d[0, 7] and d[0, 8] < d[0, 56] and d[0, 9] < d[0, 63]  # closer cells, closer codes
    assert torch.linalg.matrix_rank(t) > 8  # not a low-rank code: every cell distinct
    assert patch_positions(10, None, 32).shape == (10, 32)


def test_checkpoints_from_before_key_positions_load_without_them(tmp_path):
    """A resampler checkpoint written before `key_pos_embed` existed (no such field in its config.json) had
    no key positions; the default changed to True since, and must not change what the old file means."""
    import json

    from tests.vla.model.conftest import io_of, make_policy
    from vla.config import ProjectorConfig, debug_config
    from vla.model.policy import VLAPolicy

    cfg = debug_config(projector="resampler")
    assert cfg.projector.key_pos_embed is True  # today's default
    cfg = cfg.replace(projector=ProjectorConfig(type="resampler", num_queries=4, num_heads=2, key_pos_embed=False))
    policy = make_policy(cfg)
    ckpt = policy.save_pretrained(tmp_path / "old", io_of(policy))
    meta = json.loads((ckpt / "config.json").read_text())
    del meta["policy"]["projector"]["key_pos_embed"]  # as the older code wrote it
    (ckpt / "config.json").write_text(json.dumps(meta))
    loaded = VLAPolicy.from_pretrained(ckpt)
    assert loaded.cfg.projector.key_pos_embed is False and loaded.projector.key_pos is None
