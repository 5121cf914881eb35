"""Shared helpers for policy tests: tiny policies with fitted normalizers and fake sim observations."""

from __future__ import annotations

import numpy as np
import pytest

from vla.config import debug_config
from vla.model.decoding import to_tensors
from vla.model.policy import VLAPolicy
from vla.model.runtime import TorchRuntime
from vla.normalization import Normalizer, NormStats
from vla.policy_io import PolicyIO


def make_policy(cfg=None, instructions=("pick up the red cube",), **kw) -> VLAPolicy:
    """A tiny policy (`debug_config(**kw)`, or `cfg`) with seeded weights; `io_of(policy)` has its transforms."""
    import torch

    torch.manual_seed(0)
    cfg = cfg if cfg is not None else debug_config(**kw)
    policy = VLAPolicy.from_config(cfg, instructions=list(instructions))
    rng = np.random.default_rng(0)
    norms = {"action": Normalizer(NormStats.fit(rng.normal(scale=0.01, size=(200, 7))))}
    state = Normalizer(NormStats.fit(rng.normal(size=(200, 8))), mask=np.ones(8, dtype=bool))
    if cfg.use_state:
        norms["observation.state"] = state
    if cfg.aux is not None:
        norms["observation.environment_state"] = Normalizer(NormStats.fit(rng.normal(size=(200, cfg.aux.state_dim))),
                                                            mode="mean_std", mask=np.ones(cfg.aux.state_dim, dtype=bool))
    policy.test_io = policy.make_io(norms)  # an attribute: pytest may load this conftest twice (two module objects)
    return policy


def io_of(policy: VLAPolicy) -> PolicyIO:
    return policy.test_io


def prepare(policy: VLAPolicy, observations: list[dict]) -> dict:
    """Observation dicts -> the tensors `decode` / `forward` take, through the policy's PolicyIO."""
    return to_tensors(io_of(policy).inputs(observations), policy.action_slots.device)


def runtime(policy: VLAPolicy, mode: str | None = None) -> TorchRuntime:
    return TorchRuntime(policy, io_of(policy), mode=mode)


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


def batch_actions(policy: VLAPolicy, observations: list[dict], mode: str | None = None) -> np.ndarray:
    """float32 [B, H, 7] through the torch runtime (NaN rows: a chunk that did not decode)."""
    return runtime(policy, mode).infer_batch(observations).actions


def targets(policy: VLAPolicy, chunks: np.ndarray):
    """Normalized chunks [B, H, 7] -> (action_ids, action_mask) tensors, as training builds them."""
    import torch

    ids, mask = io_of(policy).targets(chunks)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def checkpoint_actions(directory, observations: list[dict]) -> np.ndarray:
    """[B, H, 7] from a saved checkpoint through the torch runtime."""
    return TorchRuntime.from_checkpoint(directory).infer_batch(observations).actions
