"""Prefix-forced decoding (asynchronous chunk inference): the first k action tokens of a chunk are given, the
rest decode greedily from them. Every torch path forces alike (KV layer loop, KV full-LM step, no-cache
reference); parallel decoding forces slots; the greedy loop, the runtimes and PolicyIO's ids round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare, runtime
from vla.config import debug_config
from vla.greedy import greedy
from vla.model.decoding import _action_block, decode, decode_autoregressive, decode_parallel
from vla.model.policy import VLAPolicy
from vla.normalization import Normalizer, NormStats
from vla.policy_io import ActionChunk, PolicyIO
from vla.runtime import PolicyRuntime

SHORT, LONG = "lift", "push the red cube onto the green target please"
AR_PATHS = {"layer_loop": {"use_cache": True, "layer_loop": True},
            "lm_call": {"use_cache": True, "layer_loop": False},
            "no_cache": {"use_cache": False}}


@pytest.fixture(scope="module")
def policy() -> VLAPolicy:
    return make_policy(decoding="autoregressive", instructions=[SHORT, LONG]).eval()


@pytest.fixture(scope="module")
def inputs(policy) -> dict:
    return prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])  # batch 2 with prompt padding


@pytest.fixture(scope="module")
def greedy_ids(policy, inputs) -> torch.Tensor:
    return decode_autoregressive(policy, inputs)  # [2, n] unforced


def shifted(policy: VLAPolicy, ids: torch.Tensor, by: int = 5) -> torch.Tensor:
    """ids moved by `by` bins, wrapping inside the action block [lo, hi) (so they differ from ids)."""
    lo, hi = _action_block(policy)
    return lo + (ids - lo + by) % (hi - lo)


def fast_policy() -> VLAPolicy:
    policy = make_policy(debug_config(tokenizer="fast", horizon=4), instructions=[SHORT, LONG])
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 4)[None, :, None]
    policy.action_tokenizer.fit(np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)),
                                        -1, 1))
    return policy.eval()


# ---- autoregressive ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(AR_PATHS))
@pytest.mark.parametrize("k", [0, 7, 14])
def test_forcing_the_greedy_ids_changes_nothing(policy, inputs, greedy_ids, path, k) -> None:
    assert policy.num_action_tokens == 14
    ids = decode_autoregressive(policy, inputs, prefix_ids=greedy_ids[:, :k], **AR_PATHS[path])
    assert torch.equal(ids, greedy_ids)


def test_forced_tokens_lead_and_the_continuation_conditions_on_them(policy, inputs, greedy_ids) -> None:
    forced = shifted(policy, greedy_ids[:, :7])
    assert not bool((forced == greedy_ids[:, :7]).any())
    paths = {name: decode_autoregressive(policy, inputs, prefix_ids=forced, **kw) for name, kw in AR_PATHS.items()}
    ids = paths["no_cache"]
    for name, other in paths.items():
        assert torch.equal(other, ids), f"{name} differs from the no-cache reference on the forced continuation"
    assert torch.equal(ids[:, :7], forced)
    assert not torch.equal(ids[:, 7:], greedy_ids[:, 7:])  # the forced tokens steer what follows
    with torch.no_grad():  # the tail is greedy given the forced head: teacher forcing reproduces it
        logits = policy.forward(**inputs, action_ids=ids, mode="autoregressive")
    assert torch.equal(policy.restrict(logits).argmax(-1)[:, 7:], ids[:, 7:])
    assert torch.equal(decode(policy, inputs, prefix_ids=forced.numpy()), ids)  # numpy ids, default path


def test_a_forced_fast_end_token_ends_the_row() -> None:
    policy = fast_policy()
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])
    free = decode_autoregressive(policy, inputs)
    eos = policy.eos_id
    forced = torch.stack([free[:, 0], torch.tensor([eos, free[1, 1]])], 1)  # row 0 ends at slot 1, row 1 not
    paths = {name: decode_autoregressive(policy, inputs, prefix_ids=forced, **kw) for name, kw in AR_PATHS.items()}
    ids = paths["no_cache"]
    assert all(torch.equal(p, ids) for p in paths.values())
    assert torch.equal(ids[:, :2], forced) and bool((ids[0, 1:] == eos).all())
    both = torch.full((2, 3), eos)  # every row ends at slot 0: the loop stops there, like a decoded EOS
    assert torch.equal(decode_autoregressive(policy, inputs, prefix_ids=both), both[:, :1])


# ---- parallel: forced slots ----------------------------------------------------------------------------

def test_parallel_forces_slots_and_keeps_the_unforced_tail() -> None:
    policy = make_policy(decoding="parallel", instructions=[SHORT, LONG]).eval()
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])
    free = decode_parallel(policy, inputs)
    for k in (7, 14):
        forced = shifted(policy, free[:, :k])
        ids = decode(policy, inputs, prefix_ids=forced)  # the policy's mode: parallel
        assert torch.equal(ids[:, :k], forced) and torch.equal(ids[:, k:], free[:, k:])
    assert torch.equal(decode_parallel(policy, inputs, prefix_ids=free[:, :0]), free)


# ---- the greedy loop on hand-made scores -----------------------------------------------------------------

@pytest.mark.parametrize("xp", [torch, np], ids=["torch", "numpy"])
def test_greedy_emits_and_steps_the_forced_tokens(xp) -> None:
    eos, offset = 7, 5
    winners = np.array([[0, 2, 1, 1], [1, 0, 1, 2]])  # slot i's argmax per row (block indices)
    as_xp = torch.from_numpy if xp is torch else np.asarray

    def scores(i: int):
        return as_xp(np.eye(3, dtype=np.float32)[winners[:, i]])  # [B, A=3]

    fed = []

    def step(tok, i: int):
        fed.append(np.asarray(tok).tolist())
        return scores(i + 1)

    forced = as_xp(np.array([[9, 6], [11, 12]]))  # absolute ids; greedy does not check the block
    ids = greedy(scores(0), step, n=4, offset=offset, xp=xp, forced=forced)
    assert ids.tolist() == [[9, 6, 6, 6], [11, 12, 6, 7]]
    assert fed == [[9, 11], [6, 12], [6, 6]]  # the step sees the forced tokens, then the greedy ones
    fed.clear()
    assert greedy(scores(0), step, 4, offset, xp=xp, forced=forced[:, :0]).tolist() == \
        greedy(scores(0), step, 4, offset, xp=xp).tolist() == [[5, 7, 6, 6], [6, 5, 6, 7]]
    fed.clear()  # a forced EOS ends its row; later forced ids of that row become EOS; all ended -> stop
    ended = greedy(scores(0), step, n=4, offset=offset, eos=eos, xp=xp, forced=as_xp(np.array([[7, 9], [6, 7]])))
    assert ended.tolist() == [[7, 7], [6, 7]] and fed == [[7, 6]]
    with pytest.raises(ValueError, match="forced"):
        greedy(scores(0), step, n=1, offset=offset, xp=xp, forced=forced)  # k = 2 > n = 1
    with pytest.raises(ValueError, match="forced"):
        greedy(scores(0), step, n=4, offset=offset, xp=xp, forced=forced[:1])  # batch 1 vs scores' batch 2


# ---- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["autoregressive", "parallel"])
def test_bad_prefix_ids_are_value_errors(policy, inputs, greedy_ids, mode) -> None:
    lo, hi = _action_block(policy)
    n = policy.num_action_tokens
    cases = {
        "more than": torch.full((2, n + 1), lo),
        "outside the action block": torch.tensor([[lo - 1], [lo]]),
        rf"id {hi}, outside": torch.tensor([[lo], [hi]]),
        "batch 1": greedy_ids[:1, :3],
        "shape": greedy_ids[0, :3],
        "integer": greedy_ids[:, :3].float(),
    }
    for what, bad in cases.items():
        with pytest.raises(ValueError, match=rf"prefix_ids.*{what}|{what}.*prefix_ids"):
            decode(policy, inputs, mode=mode, prefix_ids=bad)


# ---- runtimes -----------------------------------------------------------------------------------------

def test_torch_runtime_forces_and_keeps_ids(policy, greedy_ids) -> None:
    rt = runtime(policy)
    io = io_of(policy)
    obs = make_obs(0, SHORT)
    assert rt.supports_prefix
    chunk = rt.infer(obs)
    assert chunk.ids.dtype == np.int64 and chunk.ids.tolist() == greedy_ids[0].tolist()
    again = rt.infer(obs, prefix_ids=io.action_ids(chunk.actions[:1]))  # its own first step, as [k*D]
    assert again.ids.tolist() == chunk.ids.tolist()
    np.testing.assert_array_equal(again.actions, chunk.actions)
    forced = shifted(policy, greedy_ids[:1, :7]).numpy()
    other = rt.infer(obs, prefix_ids=forced)  # [1, k]
    assert other.ids[:7].tolist() == forced[0].tolist()
    np.testing.assert_array_equal(other.actions, io.outputs(other.ids[None]).actions[0])
    assert np.array_equal(rt.infer(obs, prefix_ids=np.zeros(0, np.int64)).ids, chunk.ids)  # k = 0: no prefix
    batch = rt.infer_batch([make_obs(0, SHORT), make_obs(1, LONG)], prefix_ids=greedy_ids[:, :7].numpy())
    assert batch.ids.tolist() == greedy_ids.tolist()
    with pytest.raises(ValueError, match=r"infer takes prefix_ids \[k\] or \[1, k\]"):
        rt.infer(obs, prefix_ids=greedy_ids[:, :7].numpy())


def test_policy_runtime_refuses_a_prefix() -> None:
    rt = PolicyRuntime(lambda obs: np.zeros(7, np.float32))
    assert not rt.supports_prefix
    assert rt.infer({}).ids is None
    assert rt.infer({}, prefix_ids=[]).actions.shape == (1, 7)  # empty: no prefix
    with pytest.raises(ValueError, match="PolicyRuntime does not support prefix_ids"):
        rt.infer({}, prefix_ids=[300])
    with pytest.raises(ValueError, match="PolicyRuntime"):
        rt.infer_batch([{}], prefix_ids=[[300]])


# ---- PolicyIO: ids of a chunk and of actions -----------------------------------------------------------

def test_chunk_ids_are_kept_and_sliced(policy, greedy_ids) -> None:
    io = io_of(policy)
    chunk = io.outputs(greedy_ids.numpy())
    assert chunk.ids.dtype == np.int64 and chunk.ids.tolist() == greedy_ids.tolist()
    assert chunk[1].ids.tolist() == greedy_ids[1].tolist() and chunk[1].valid
    assert ActionChunk(chunk.actions, chunk.valid)[0].ids is None


@pytest.mark.parametrize("mode", ["bounds_q99", "min_max", "mean_std"])
def test_action_ids_round_trip_every_bin_but_the_lowest(policy, mode) -> None:
    base = io_of(policy)
    stats = NormStats.fit(np.random.default_rng(2).normal(0.1, 0.05, size=(200, 7)))
    io = PolicyIO(base.cfg, base.text, base.action_tokenizer, {**base.normalizers, "action": Normalizer(stats, mode)})
    lo, hi = _action_block(policy)
    n = policy.num_action_tokens
    ids = np.repeat(np.arange(lo, hi, dtype=np.int64)[:, None], n, 1)  # [256, n]: every bin in every slot
    chunk = io.outputs(ids)
    back = np.stack([io.action_ids(a) for a in chunk.actions])  # [256, n]
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back[1:], ids[1:])
    # the lowest id (values at or above the top edge) has no interval of its own: it decodes to the top
    # interval's centre, which re-encodes to its neighbour (OpenVLA's convention, vla.tokenizers.bins)
    assert back[0].tolist() == [lo + 1] * n
    np.testing.assert_array_equal(io.action_ids(chunk.actions[5, :1]), ids[5, :7])  # a prefix of k=1 step


def test_action_ids_refuses_fast_and_bad_actions(policy) -> None:
    io = io_of(policy)
    for bad, what in ((np.zeros((1, 6)), "shape"), (np.zeros((3, 7)), "horizon"),
                      (np.full((1, 7), np.nan), "non-finite")):
        with pytest.raises(ValueError, match=what):
            io.action_ids(bad)
    fast = io_of(fast_policy())
    with pytest.raises(ValueError, match="ActionConfig.tokenizer='bins'.*'fast'"):
        fast.action_ids(np.zeros((1, 7)))
    assert fast.outputs([[fast.eos_id]]).ids is None
