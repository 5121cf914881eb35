"""BinActionTokenizer: OpenVLA bit-exactness, round-trip bounds, monotonicity, reserved range, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.tokenizers import BinActionTokenizer, tokenizer_from_config

V = 32000


def openvla_encode(a, vocab_size=V, n_bins=256, low=-1.0, high=1.0):
    """OpenVLA's ActionTokenizer.__call__, verbatim arithmetic."""
    bins = np.linspace(low, high, n_bins)
    return vocab_size - np.digitize(np.clip(a, low, high), bins)


def openvla_decode(ids, vocab_size=V, n_bins=256, low=-1.0, high=1.0):
    bins = np.linspace(low, high, n_bins)
    centres = (bins[:-1] + bins[1:]) / 2.0
    return centres[np.clip(vocab_size - ids - 1, 0, centres.shape[0] - 1)]


def test_hand_computed_openvla_ids():
    tok = BinActionTokenizer(V)
    # edges are -1 + 2k/255: -1 -> bin 1; 0 lies in [edge 127, edge 128) -> bin 128;
    # 0.5 -> 1.5 * 127.5 = 191.25 -> bin 192; 1.0 -> bin 256 (top edge); 2.0 clips to 1.0
    a = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, -5.0])
    np.testing.assert_array_equal(tok.encode(a), [31999, 31872, 31808, 31744, 31744, 31999])
    # decode: 31872 -> centre 127 = 0.0 exactly; 31744 (top) clips into the last interval
    dec = tok.decode(np.array([[31872, 31744, 31999]]))
    np.testing.assert_allclose(dec.actions, [[0.0, 1.0 - 1.0 / 255, -1.0 + 1.0 / 255]], atol=1e-7)
    assert dec.valid.tolist() == [True]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_exact_with_openvla_on_random_and_edge_values(dtype):
    tok = BinActionTokenizer(V)
    rng = np.random.default_rng(0)
    e = np.linspace(-1, 1, 256)
    edge_vals = np.concatenate([e, np.nextafter(e, 2), np.nextafter(e, -2)]).astype(dtype)
    edge_vals = np.concatenate([edge_vals, np.nextafter(edge_vals, dtype(2)), np.nextafter(edge_vals, dtype(-2))])
    x = np.concatenate([rng.uniform(-1.3, 1.3, 100_000).astype(dtype), edge_vals]).reshape(-1, 1)
    np.testing.assert_array_equal(tok.encode(x), openvla_encode(x))
    ids = tok.encode(x)
    np.testing.assert_allclose(tok.decode(ids).actions, openvla_decode(ids).astype(np.float32), rtol=0, atol=0)


@given(
    a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                 elements=st.floats(-1.0, 1.0, allow_nan=False)),
    n_bins=st.integers(2, 512),
)
def test_round_trip_within_half_bin(a, n_bins):
    tok = BinActionTokenizer(V, n_bins=n_bins)
    dec = tok.decode(tok.encode(a))
    assert dec.actions.shape == a.shape and dec.valid.shape == a.shape[:-1] and dec.valid.all()
    half = (2.0 / (n_bins - 1)) / 2
    assert np.max(np.abs(dec.actions - a)) <= half + 1e-6


@given(
    a=hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)),
    n_bins=st.integers(2, 300),
)
def test_ids_always_in_reserved_range_and_monotonic(a, n_bins):
    tok = BinActionTokenizer(V, n_bins=n_bins)
    ids = tok.encode(a)
    assert ids.dtype == np.int64
    assert np.all((ids >= V - n_bins) & (ids <= V - 1))
    assert np.all(np.isin(ids, tok.action_token_ids))
    order = np.argsort(a, kind="stable")
    assert np.all(np.diff(ids[order]) <= 0)  # larger action -> smaller (or equal) id
    np.testing.assert_array_equal(ids, openvla_encode(a.astype(np.float32), n_bins=n_bins))


def test_float32_and_float64_inputs_give_the_same_ids():
    tok = BinActionTokenizer(V)
    a = np.linspace(-1.2, 1.2, 70).reshape(10, 7)
    ids = tok.encode(a.astype(np.float32))
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, tok.encode(a.astype(np.float32).astype(np.float64)))


def test_bad_input_raises_clear_errors():
    tok = BinActionTokenizer(V)
    with pytest.raises(ValueError, match="NaN/inf"):
        tok.encode(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="NaN/inf"):
        tok.encode(np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="outside the action block"):
        tok.decode(np.array([V - 257]))
    with pytest.raises(ValueError, match="outside the action block"):
        tok.decode(np.array([V]))
    with pytest.raises(ValueError, match="integers"):
        tok.decode(np.array([0.5]))
    with pytest.raises(ValueError, match="n_bins"):
        BinActionTokenizer(100, n_bins=101)
    with pytest.raises(ValueError, match="low < high"):
        BinActionTokenizer(V, low=1.0, high=-1.0)
    q = BinActionTokenizer.fit_quantiles(np.random.default_rng(0).normal(size=(100, 7)), V)
    with pytest.raises(ValueError, match="last dimension must be 7"):
        q.encode(np.zeros((3, 6)))


def test_non_strict_decode_flags_stray_ids_instead_of_clipping():
    tok = BinActionTokenizer(V)
    ids = np.array([[31872] * 7, [31872] * 6 + [5]])  # second step has a text token in it
    dec = tok.decode(ids, strict=False)
    assert dec.valid.tolist() == [True, False]
    assert dec.num_invalid == 1
    assert np.all(np.isnan(dec.actions[1])) and np.all(dec.actions[0] == 0.0)


def test_quantile_bins_round_trip_and_density():
    rng = np.random.default_rng(1)
    data = np.clip(rng.normal(0, 0.1, size=(5000, 3)), -1, 1)
    data[:, 2] = 0.25  # constant dimension: edges must still be strictly increasing
    tok = BinActionTokenizer.fit_quantiles(data, V, n_bins=64)
    assert tok.action_dim == 3
    x = data[:1000]
    dec = tok.decode(tok.encode(x))
    # each value decodes to the centre of its own interval: error <= half that interval's width
    k = np.stack([np.searchsorted(tok.edges[d], np.clip(x[:, d], tok.edges[d, 0], tok.edges[d, -1]), "right")
                  for d in range(3)], axis=-1)
    k = np.clip(k - 1, 0, 62)
    half = np.take_along_axis(np.diff(tok.edges, axis=1), k.T, axis=1).T / 2
    assert np.all(np.abs(dec.actions - x) <= half + 1e-6)
    # bins are denser near the data's centre than uniform bins would be
    assert np.median(np.diff(tok.edges[0])) < 2.0 / 63
    ids = tok.encode(np.array([[5.0, -5.0, 0.25]]))
    assert np.all((ids >= V - 64) & (ids < V))


@pytest.mark.parametrize("make", [lambda: BinActionTokenizer(V, n_bins=128, low=-2, high=3),
                                  lambda: BinActionTokenizer.fit_quantiles(np.random.default_rng(2).normal(size=(50, 4)), V, 16)])
def test_config_round_trip(make):
    tok = make()
    import json

    tok2 = tokenizer_from_config(json.loads(json.dumps(tok.to_config())))
    a = np.random.default_rng(3).uniform(-3, 3, size=(20, 4))
    np.testing.assert_array_equal(tok.encode(a), tok2.encode(a))
    np.testing.assert_array_equal(tok.decode(tok.encode(a)).actions, tok2.decode(tok2.encode(a)).actions)


def test_unknown_tokenizer_type_lists_available():
    with pytest.raises(ValueError, match=r"available: \['bins', 'fast'\]"):
        tokenizer_from_config({"type": "nope"})


def test_logits_mask_restricts_argmax_to_action_ids():
    tok = BinActionTokenizer(1000, n_bins=256)
    mask = tok.logits_mask(1024)  # model vocab padded past the tokenizer's
    assert mask.shape == (1024,) and mask.dtype == bool and mask.sum() == 256
    scores = np.random.default_rng(0).normal(size=(2, 1024))
    scores[:, 3] = 100.0  # a text token the unconstrained argmax would pick
    best = np.where(mask, scores, -np.inf).argmax(-1)
    assert np.all((best >= 1000 - 256) & (best < 1000))
    assert mask[744:1000].all() and not mask[:744].any() and not mask[1000:].any()
    with pytest.raises(ValueError, match="vocab_size"):
        tok.logits_mask(900)
