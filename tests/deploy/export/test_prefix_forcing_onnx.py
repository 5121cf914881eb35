"""Prefix-forced decoding through exported graphs (ONNX Runtime, CPU): forced ids go through the existing
decode_step graph and decode like the torch KV loop and the no-cache reference; parallel forces slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare
from vla.config import debug_config
from vla.model.decoding import decode_autoregressive, decode_parallel

SHORT, LONG = "lift", "push the red cube onto the green target please"


def _export(policy, tmp_path_factory, name: str):
    from deploy.export import export_onnx
    from deploy.runtimes.onnx import OnnxRuntime

    out = tmp_path_factory.mktemp(name) / "export"
    export_onnx(policy, io_of(policy), out)
    return OnnxRuntime(out, providers=["CPUExecutionProvider"], threads=1)


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    policy = make_policy(decoding="autoregressive", instructions=[SHORT, LONG]).eval()
    obs = [make_obs(0, SHORT), make_obs(1, LONG)]  # prompt padding in play
    return policy, _export(policy, tmp_path_factory, "bins"), obs


def block(rt) -> tuple[int, int]:
    seq = rt.manifest["sequence"]
    return seq["action_id_start"], seq["action_id_start"] + seq["action_id_count"]


def shifted(rt, ids: np.ndarray, by: int = 5) -> np.ndarray:
    lo, hi = block(rt)
    return lo + (ids - lo + by) % (hi - lo)


@pytest.mark.parametrize("k", [0, 7, 14])
def test_forcing_the_greedy_ids_changes_nothing(bins, k) -> None:
    policy, rt, obs = bins
    feeds = io_of(policy).inputs(obs)
    free = rt.decode_ids(feeds, mode="autoregressive")
    np.testing.assert_array_equal(free, decode_autoregressive(policy, prepare(policy, obs)).numpy())
    np.testing.assert_array_equal(rt.decode_ids(feeds, mode="autoregressive", prefix_ids=free[:, :k]), free)


def test_forced_continuation_equals_torch(bins) -> None:
    policy, rt, obs = bins
    feeds = io_of(policy).inputs(obs)
    free = rt.decode_ids(feeds, mode="autoregressive")
    forced = shifted(rt, free[:, :7])
    ids, logits = rt.decode_ids(feeds, mode="autoregressive", return_logits=True, prefix_ids=forced)
    inputs = prepare(policy, obs)
    kv = decode_autoregressive(policy, inputs, prefix_ids=torch.from_numpy(forced)).numpy()
    ref = decode_autoregressive(policy, inputs, use_cache=False, prefix_ids=torch.from_numpy(forced)).numpy()
    np.testing.assert_array_equal(ids, kv)
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_array_equal(ids[:, :7], forced)
    assert not np.array_equal(ids[:, 7:], free[:, 7:])  # the forced tokens steer what follows
    lo, _ = block(rt)
    np.testing.assert_array_equal(logits.argmax(-1)[:, 7:] + lo, ids[:, 7:])  # logits the tail was decoded from


def test_parallel_forces_slots(bins) -> None:
    policy, rt, obs = bins
    feeds = io_of(policy).inputs(obs)
    free = rt.decode_ids(feeds, mode="parallel")
    forced = shifted(rt, free[:, :7])
    ids = rt.decode_ids(feeds, mode="parallel", prefix_ids=forced)
    np.testing.assert_array_equal(ids[:, :7], forced)
    np.testing.assert_array_equal(ids[:, 7:], free[:, 7:])
    torch_ids = decode_parallel(policy, prepare(policy, obs), prefix_ids=torch.from_numpy(forced)).numpy()
    np.testing.assert_array_equal(ids, torch_ids)


def test_runtime_infer_forces_and_keeps_ids(bins) -> None:
    policy, rt, obs = bins
    assert rt.supports_prefix
    chunk = rt.infer(obs[0])
    io = io_of(policy)
    again = rt.infer(obs[0], prefix_ids=io.action_ids(chunk.actions[:1]))  # [k*D] of its own first step
    assert chunk.ids.dtype == np.int64
    np.testing.assert_array_equal(again.ids, chunk.ids)
    forced = shifted(rt, chunk.ids[:7])
    other = rt.infer(obs[0], prefix_ids=forced)
    np.testing.assert_array_equal(other.ids[:7], forced)
    batch = rt.infer_batch(obs, prefix_ids=shifted(rt, rt.decode_ids(io.inputs(obs))[:, :7]))
    assert batch.ids.shape == (2, policy.num_action_tokens)


def test_bad_prefix_ids_are_value_errors(bins) -> None:
    policy, rt, obs = bins
    feeds = io_of(policy).inputs(obs)
    lo, hi = block(rt)
    n = policy.num_action_tokens
    for mode in ("autoregressive", "parallel"):
        for bad, what in ((np.full((2, n + 1), lo), "more than"), (np.array([[lo], [hi]]), "outside the action block"),
                          (np.array([[lo]]), "batch 1"), (np.array([lo]), "shape")):
            with pytest.raises(ValueError, match=f"prefix_ids.*{what}"):
                rt.decode_ids(feeds, mode=mode, prefix_ids=bad)


def test_fast_forced_end_token_ends_the_row(tmp_path_factory) -> None:
    policy = make_policy(debug_config(tokenizer="fast", horizon=4), instructions=[SHORT, LONG])
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 4)[None, :, None]
    policy.action_tokenizer.fit(np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)),
                                        -1, 1))
    policy.eval()
    rt = _export(policy, tmp_path_factory, "fast")
    obs = [make_obs(0, SHORT), make_obs(1, LONG)]
    feeds = io_of(policy).inputs(obs)
    free = rt.decode_ids(feeds)
    eos = policy.eos_id
    forced = np.stack([free[:, 0], np.array([eos, free[1, 1]])], 1)  # row 0 ends at slot 1
    ids = rt.decode_ids(feeds, prefix_ids=forced)
    ref = decode_autoregressive(policy, prepare(policy, obs), use_cache=False, prefix_ids=torch.from_numpy(forced))
    np.testing.assert_array_equal(ids, ref.numpy())
    assert (ids[0, 1:] == eos).all()
    assert rt.infer(obs[0]).ids is None  # FAST rows vary in length: no ids on the chunk
    with pytest.raises(ValueError, match="ActionConfig.tokenizer"):
        rt.io.action_ids(np.zeros((1, 7)))
