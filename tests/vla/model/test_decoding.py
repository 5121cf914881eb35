"""Decoding: KV cache == no cache exactly, parallel modes run, generate() agrees, padding is invisible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import make_obs, make_policy
from vla.model.decoding import decode_autoregressive, decode_parallel, generate_baseline


def test_kv_cache_equals_no_cache_exactly(ar_policy) -> None:
    obs = [make_obs(0), make_obs(1, "push the red cube onto the green target please")]
    inputs = ar_policy.prepare_observations(obs)
    with_cache = decode_autoregressive(ar_policy, inputs, use_cache=True)
    without = decode_autoregressive(ar_policy, inputs, use_cache=False)
    assert with_cache.shape == (2, ar_policy.num_action_tokens)
    assert torch.equal(with_cache, without)
    assert bool(ar_policy.action_logit_mask[with_cache].all())


def test_prompt_padding_does_not_change_a_row(ar_policy) -> None:
    short, long = make_obs(0, "lift"), make_obs(1, "push the red cube onto the green target please")
    both = decode_autoregressive(ar_policy, ar_policy.prepare_observations([short, long]))
    alone = decode_autoregressive(ar_policy, ar_policy.prepare_observations([short]))
    assert torch.equal(both[0], alone[0])


def test_generate_baseline_matches_our_decoding(ar_policy) -> None:
    inputs = ar_policy.prepare_observations([make_obs(2, "lift")])
    ours = decode_autoregressive(ar_policy, inputs)
    theirs = generate_baseline(ar_policy, inputs)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
def test_parallel_decoding_runs_and_differs_by_mask(attention: str) -> None:
    policy = make_policy(decoding="parallel", parallel_attention=attention)
    inputs = policy.prepare_observations([make_obs(0), make_obs(3)])
    ids = decode_parallel(policy, inputs)
    assert ids.shape == (2, policy.num_action_tokens)
    acts = policy.predict_action_batch([make_obs(0), make_obs(3)])
    assert acts.shape == (2, 2, 7) and np.isfinite(acts).all()
    # the same weights also decode autoregressively
    assert decode_autoregressive(policy, inputs).shape == ids.shape


def test_fast_tokenizer_decodes_autoregressively() -> None:
    policy = make_policy(tokenizer="fast", horizon=4)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 4)[None, :, None]
    chunks = np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)), -1, 1)
    policy.action_tokenizer.fit(chunks)
    ids, mask = policy.actions_to_ids(chunks[:2])
    assert ids.shape == (2, policy.num_action_tokens) and mask[:, 0].all()
    inputs = policy.prepare_observations([make_obs(0)])
    a = decode_autoregressive(policy, inputs, use_cache=True)
    b = decode_autoregressive(policy, inputs, use_cache=False)
    assert torch.equal(a, b)
    acts = policy.ids_to_actions(a)  # an untrained model emits garbage: NaN + counted, never zeros
    assert acts.shape == (1, 4, 7)
    assert np.isfinite(acts).all() or (np.isnan(acts).all() and policy.invalid_chunks == 1)
    with pytest.raises(ValueError, match="parallel"):
        decode_parallel(policy, inputs)
