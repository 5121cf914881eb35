"""Shared helpers for policy tests: tiny policies with fitted normalizers and fake sim observations."""

from __future__ import annotations

import numpy as np
import pytest

from vla.model import VLAPolicy
from vla.model.config import debug_config
from vla.normalization import Normalizer, NormStats


def make_policy(**kw) -> VLAPolicy:
    import torch

    torch.manual_seed(0)
    policy = VLAPolicy.from_config(debug_config(**kw), instructions=["pick up the red cube"])
    rng = np.random.default_rng(0)
    policy.set_normalizers(
        Normalizer(NormStats.fit(rng.normal(scale=0.01, size=(200, 7)))),
        Normalizer(NormStats.fit(rng.normal(size=(200, 8))), mask=np.ones(8, dtype=bool)),
    )
    return policy


def make_obs(seed: int = 0, instruction: str = "pick up the red cube") -> dict:
    rng = np.random.default_rng(seed)
    return {
        "agentview": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "state": rng.normal(size=8).astype(np.float32),
        "instruction": instruction,
    }


@pytest.fixture(scope="module")
def ar_policy() -> VLAPolicy:
    return make_policy(decoding="autoregressive").eval()
