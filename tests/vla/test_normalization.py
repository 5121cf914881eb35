"""Normalization: OpenVLA bounds formula, exact inverse, mask, zero range, JSON round trip, float32 parity."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.normalization import MODES, Normalizer, NormStats, load_norm_stats, save_norm_stats


def data(seed=0, n=1000):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, [0.01, 0.02, 0.05, 0.1, 0.1, 0.3, 1.0], size=(n, 7))
    x[:, -1] = np.sign(x[:, -1])
    return x


def test_stats_match_numpy():
    x = data()
    s = NormStats.fit(x)
    np.testing.assert_allclose(s.q01, np.quantile(x, 0.01, axis=0))
    np.testing.assert_allclose(s.q99, np.quantile(x, 0.99, axis=0))
    np.testing.assert_allclose(s.std, x.std(0))
    assert s.count == 1000
    assert NormStats.fit(x.reshape(10, 100, 7)).count == 1000


def test_bounds_q99_is_openvla_formula_and_leaves_gripper():
    x = data()
    s = NormStats.fit(x)
    n = Normalizer(s)  # default mask: all but the gripper
    y = n.normalize(x)
    ref = np.clip(2 * (x - s.q01) / (s.q99 - s.q01 + 1e-8) - 1, -1, 1)
    np.testing.assert_allclose(y[:, :6], ref[:, :6])
    np.testing.assert_array_equal(y[:, 6], x[:, 6])


@pytest.mark.parametrize("mode", MODES)
@given(seed=st.integers(0, 10_000))
def test_exact_inverse_on_unclipped_values(mode, seed):
    x = data(seed, n=200)
    n = Normalizer(NormStats.fit(x), mode, mask=np.ones(7, bool))
    inside = x
    if mode in ("bounds_q99", "openvla"):  # clipping is lossy by design; test values inside [q01, q99]
        inside = np.clip(x, n.stats.q01, n.stats.q99)
    # openvla: the reference normalizes with (q99 - q01 + 1e-8) but unnormalizes with (q99 - q01)
    atol = 1e-7 if mode == "openvla" else 1e-12
    np.testing.assert_allclose(n.unnormalize(n.normalize(inside)), inside, rtol=1e-9, atol=atol)


def test_openvla_mode_is_the_reference_formula_bit_for_bit():
    """OpenVLA's predict_action: np.where(mask, 0.5 * (y + 1) * (q99 - q01) + q01, y), float64."""
    x = data(3, n=50)
    stats = NormStats.fit(x)
    mask = np.array([True] * 6 + [False])
    y = np.random.default_rng(1).uniform(-1, 1, (20, 7))
    ref = np.where(mask, 0.5 * (y + 1) * (stats.q99 - stats.q01) + stats.q01, y)
    got = Normalizer(stats, "openvla", mask).unnormalize(y)
    assert got.dtype == np.float64 and np.array_equal(got, ref)
    folded = Normalizer(stats, "bounds_q99", mask).unnormalize(y)  # same map, folded into scale + offset
    np.testing.assert_allclose(folded, ref, rtol=1e-6, atol=1e-7)


@given(x=hnp.arrays(np.float64, (50, 3), elements=st.floats(-1e3, 1e3, allow_nan=False)))
def test_never_nan_even_with_zero_range(x):
    x[:, 1] = 7.0  # constant dimension
    for mode in MODES:
        n = Normalizer(NormStats.fit(x), mode, mask=np.ones(3, bool))
        y = n.normalize(x)
        assert np.all(np.isfinite(y))
        assert np.all(np.isfinite(n.unnormalize(y)))
        np.testing.assert_allclose(n.unnormalize(n.normalize(x[:, 1:2].repeat(3, 1)))[:, 1], 7.0, atol=1e-6)


def test_json_round_trip(tmp_path):
    x = data()
    norms = {"action": Normalizer(NormStats.fit(x)), "observation.state": Normalizer(NormStats.fit(x), "mean_std",
                                                                                        mask=np.ones(7, bool))}
    save_norm_stats(tmp_path / "norm_stats.json", norms)
    back = load_norm_stats(tmp_path / "norm_stats.json")
    assert set(back) == set(norms)
    for k in norms:
        assert back[k].mode == norms[k].mode
        np.testing.assert_array_equal(back[k].mask, norms[k].mask)
        np.testing.assert_array_equal(back[k].normalize(x), norms[k].normalize(x))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_float32_input_stays_float32_and_matches_float64():
    x = data()
    n = Normalizer(NormStats.fit(x))
    y32 = n.normalize(x.astype(np.float32))
    assert y32.dtype == np.float32 and n.unnormalize(y32).dtype == np.float32
    np.testing.assert_allclose(y32, n.normalize(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n.unnormalize(y32), n.unnormalize(n.normalize(x)), rtol=1e-5, atol=1e-6)


def test_bad_input():
    s = NormStats.fit(data())
    with pytest.raises(ValueError, match="unknown normalization mode"):
        Normalizer(s, "zscore")
    with pytest.raises(ValueError, match="mask must be a bool array of shape"):
        Normalizer(s, mask=[True] * 6)
    with pytest.raises(ValueError, match="last dimension must be 7"):
        Normalizer(s).normalize(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="NaN/inf"):
        NormStats.fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        NormStats.fit(np.zeros((0, 3)))
    with pytest.raises(FileNotFoundError):
        load_norm_stats("/nonexistent/norm_stats.json")
