"""Decoding: KV cache == no cache exactly, parallel modes run, generate() agrees, padding is invisible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    batch_actions,
    io_of,
    make_obs,
    make_policy,
    prepare,
)
from vla.model.decoding import decode_autoregressive, decode_parallel, generate_baseline


def test_kv_cache_equals_no_cache_exactly(ar_policy) -> None:
    obs = [make_obs(0), make_obs(1, "push the red cube onto the green target please")]
    inputs = prepare(ar_policy, obs)
    with_cache = decode_autoregressive(ar_policy, inputs, use_cache=True)
    without = decode_autoregressive(ar_policy, inputs, use_cache=False)
    assert with_cache.shape == (2, ar_policy.num_action_tokens)
    assert torch.equal(with_cache, without)
    assert bool(ar_policy.action_logit_mask[with_cache].all())


def test_prompt_padding_does_not_change_a_row(ar_policy) -> None:
    short, long = make_obs(0, "lift"), make_obs(1, "push the red cube onto the green target please")
    both = decode_autoregressive(ar_policy, prepare(ar_policy, [short, long]))
    alone = decode_autoregressive(ar_policy, prepare(ar_policy, [short]))
    assert torch.equal(both[0], alone[0])


def test_generate_baseline_matches_our_decoding(ar_policy) -> None:
    inputs = prepare(ar_policy, [make_obs(2, "lift")])
    ours = decode_autoregressive(ar_policy, inputs)
    theirs = generate_baseline(ar_policy, inputs)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
def test_parallel_decoding_runs_and_differs_by_mask(attention: str) -> None:
    policy = make_policy(decoding="parallel", parallel_attention=attention)
    inputs = prepare(policy, [make_obs(0), make_obs(3)])
    ids = decode_parallel(policy, inputs)
    assert ids.shape == (2, policy.num_action_tokens)
    acts = batch_actions(policy, [make_obs(0), make_obs(3)])
    assert acts.shape == (2, 2, 7) and np.isfinite(acts).all()
    # the same weights also decode autoregressively
    assert decode_autoregressive(policy, inputs).shape == ids.shape


def test_fast_tokenizer_decodes_autoregressively() -> None:
    policy = make_policy(tokenizer="fast", horizon=4)
    io = io_of(policy)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 4)[None, :, None]
    chunks = np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)), -1, 1)
    policy.action_tokenizer.fit(chunks)
    ids, mask = io.targets(chunks[:2])
    assert ids.shape == (2, policy.num_action_tokens) and mask[:, 0].all()
    inputs = prepare(policy, [make_obs(0)])
    a = decode_autoregressive(policy, inputs, use_cache=True)
    b = decode_autoregressive(policy, inputs, use_cache=False)
    assert torch.equal(a, b)
    # outputs: the ids of a real chunk decode back to it (robot units); ids that are no FAST sequence are
    # flagged invalid with NaN actions, never returned as zeros
    real = io.outputs([list(ids[0][mask[0]])])
    assert real.valid.tolist() == [True] and real.actions.shape == (1, 4, 7)
    want = io.normalizers["action"].unnormalize(chunks[0].astype(np.float64))
    np.testing.assert_allclose(real.actions[0], want, atol=0.05)
    garbage = io.outputs([[policy.eos_id]])  # an empty chunk: nothing to decode
    assert garbage.valid.tolist() == [False] and np.isnan(garbage.actions).all()
    with pytest.raises(ValueError, match="parallel"):
        decode_parallel(policy, inputs)
