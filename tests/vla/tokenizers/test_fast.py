"""FastActionTokenizer: round trips on smooth chunks, compression, validity on garbage, errors."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.tokenizers import FastActionTokenizer, tokenizer_from_config

V, H, D = 32000, 10, 7


def smooth_chunks(n, seed=0, horizon=H, dim=D):
    """Demo-like trajectories: low-frequency sinusoids plus a constant gripper per chunk."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[None, :, None]
    amp = rng.uniform(0.05, 0.8, (n, 1, dim))
    freq = rng.uniform(0.1, 1.0, (n, 1, dim))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, dim))
    x = amp * np.sin(2 * np.pi * freq * t + phase)
    x[..., -1] = rng.choice([-1.0, 1.0], size=(n, 1))
    return x


@pytest.fixture(scope="module")
def fast():
    return FastActionTokenizer(V, D, H, n_tokens=512).fit(smooth_chunks(600))


def test_round_trip_small_on_smooth_chunks_and_compresses(fast):
    x = smooth_chunks(200, seed=1)
    ids = fast.encode(x)
    dec = fast.decode(ids)
    assert dec.valid.all() and dec.actions.shape == x.shape
    err = np.abs(dec.actions - x)
    # rounding error per coefficient <= 0.5/scale; an orthonormal inverse keeps it small per sample
    assert err.mean() < 0.02
    assert err.max() <= np.sqrt(H) * 0.5 / fast.scale + 1e-6
    assert np.mean([len(s) for s in ids]) < H * D / 2  # at least 2x fewer tokens than binning
    single = fast.encode(x[0])
    assert single == ids[0] and fast.decode(single).valid


@given(x=hnp.arrays(np.float64, (H, D), elements=st.floats(-3, 3, allow_nan=False)))
def test_ids_always_in_reserved_range(fast, x):
    ids = np.asarray(fast.encode(x, add_eos=True))
    assert np.all(np.isin(ids, fast.action_token_ids))
    assert ids[-1] == fast.eos_id
    dec = fast.decode(ids.tolist())
    assert dec.valid
    # values are clipped to [-1, 1] before the DCT: the round trip reproduces the clipped chunk
    assert np.abs(dec.actions - np.clip(x, -1, 1)).max() <= np.sqrt(H) * 0.5 / fast.scale + 1e-6


def test_malformed_sequences_are_invalid_never_zeros(fast):
    good = fast.encode(smooth_chunks(1, seed=5)[0])
    rng = np.random.default_rng(0)
    cases = [good[:-1], good + good, [], [fast.eos_id]]
    cases += [rng.choice(fast.action_token_ids, size=rng.integers(1, 40)).tolist() for _ in range(200)]
    dec = fast.decode(cases)
    assert not dec.valid[:4].any()
    assert dec.valid.mean() < 0.2  # random token strings almost never spell exactly H*D coefficients
    assert np.all(np.isnan(dec.actions[~dec.valid]))
    # ids after <eoa> are ignored
    assert fast.decode(good + [fast.eos_id] + good).valid


def test_bad_input_raises(fast):
    with pytest.raises(ValueError, match="not fitted"):
        FastActionTokenizer(V, D, H).encode(np.zeros((H, D)))
    with pytest.raises(ValueError, match="NaN/inf"):
        fast.encode(np.full((H, D), np.nan))
    with pytest.raises(ValueError, match="last dimension must be 7"):
        fast.encode(np.zeros((H, 6)))
    with pytest.raises(ValueError, match="horizon 10"):
        fast.encode(np.zeros((H + 1, D)))
    with pytest.raises(ValueError, match="outside the FAST block"):
        fast.decode([5, 6, 7])
    assert not fast.decode([5, 6, 7], strict=False).valid
    with pytest.raises(ValueError, match="n_tokens"):
        FastActionTokenizer(V, D, horizon=50, n_tokens=64, scale=10)


def test_config_round_trip(fast):
    tok2 = tokenizer_from_config(json.loads(json.dumps(fast.to_config())))
    x = smooth_chunks(20, seed=9)
    assert tok2.encode(x) == fast.encode(x)
    assert tok2.eos_id == fast.eos_id
    np.testing.assert_array_equal(tok2.action_token_ids, fast.action_token_ids)
