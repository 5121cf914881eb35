"""fit_on_episodes / roundtrip_report: chunking, error accounting, every tokenizer kind."""

import numpy as np
import pytest

from vla.bench import demo_like_actions
from vla.tokenizers import tokenizer_from_config
from vla.tokenizers.report import chunk_episodes, fit_on_episodes


def test_chunk_episodes_windows():
    eps = [np.arange(12).reshape(6, 2), np.arange(4).reshape(2, 2)]  # the second is shorter than H
    c = chunk_episodes(eps, 3)
    assert c.shape == (4, 3, 2)
    np.testing.assert_array_equal(c[1], [[2, 3], [4, 5], [6, 7]])
    with pytest.raises(ValueError, match="horizon=9"):
        chunk_episodes(eps, 9)


@pytest.mark.parametrize("kind", ["bins", "bins_quantile", "fast"])
def test_fit_on_episodes_every_kind(kind):
    eps = list(demo_like_actions(30, 60, seed=0) * [0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])  # robot units
    norm, tok, rep = fit_on_episodes(eps, kind, horizon=8, vocab_size=4096, n_bins=256, n_tokens=512)
    assert rep["valid_fraction"] == 1.0
    assert rep["horizon"] == 8 and rep["chunks"] > 0
    assert len(rep["mean_abs_err_robot"]) == 7
    # translation error in metres stays well under the data's scale (2 cm)
    assert max(rep["mean_abs_err_robot"][:3]) < 2e-3
    if kind == "fast":
        assert rep["tokens_per_chunk_mean"] < 8 * 7
    else:
        assert rep["tokens_per_chunk_mean"] == 8 * 7
    tokenizer_from_config(tok.to_config())


def test_bad_kind():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        fit_on_episodes([np.zeros((20, 7))], "wavelet")
