"""Prefix-forced splicing end to end on a real (tiny, autoregressive) policy: the committed actions are the
first actions of the next chunk, exactly, and the loop's requests force them (vla.splicing through
vla.evaluation.DelayedChunkPolicy, the step-clock twin of `vla control --async --splice prefix`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.vla.model.conftest import make_obs, make_policy, runtime
from vla.evaluation import DelayedChunkPolicy
from vla.splicing import prefix_tokens_per_step


class Recording:
    """Wraps a runtime; records (prefix_ids, chunk) of every call."""

    def __init__(self, rt) -> None:
        self.rt, self.calls = rt, []
        self.io, self.execute_steps, self.supports_prefix, self.mode = rt.io, rt.execute_steps, True, rt.mode

    def infer(self, obs, prefix_ids=None):
        chunk = self.rt.infer(obs, prefix_ids=prefix_ids)
        self.calls.append((prefix_ids, chunk))
        return chunk

    def reset(self) -> None:
        self.rt.reset()


def test_prefix_splice_forces_exactly_the_committed_actions():
    policy = make_policy(decoding="autoregressive", horizon=4).eval()
    rt = Recording(runtime(policy))
    runner = DelayedChunkPolicy(rt, delay_steps=2, splice="prefix", execute_steps=2)
    obs = [make_obs(s) for s in range(10)]
    played = [runner(o) for o in obs]
    d = policy.cfg.action.dim
    assert len(rt.calls) >= 4
    assert rt.calls[0][0] is None  # nothing committed before the first chunk
    for (_, prev), (prefix, chunk) in zip(rt.calls, rt.calls[1:], strict=False):
        # planned 2 steps after prev, delivered 2 later: prev's indices 2, 3 run meanwhile and are forced
        np.testing.assert_array_equal(prefix, prev.ids[2 * d:4 * d])
        np.testing.assert_array_equal(chunk.ids[:2 * d], prefix)
        np.testing.assert_array_equal(chunk.actions[:2], prev.actions[2:4])
    # what ran: holds for 2 steps, then each chunk's indices 2, 3
    np.testing.assert_array_equal(played[2], rt.calls[0][1].actions[2])
    np.testing.assert_array_equal(played[4], rt.calls[1][1].actions[2])


def test_prefix_splice_refuses_parallel_decoding():
    with pytest.raises(ValueError, match="autoregressive"):
        prefix_tokens_per_step(runtime(make_policy(decoding="parallel")))
