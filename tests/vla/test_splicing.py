"""Asynchronous splicing on a fake step clock (vla.splicing): hand-computed actions for every delay."""

from __future__ import annotations

import numpy as np
import pytest

from vla.policy_io import ActionChunk
from vla.splicing import SPLICE_MODES, AsyncSplicer

H, D = 4, 7


def chunk(tag: float, h: int = H, ids: bool = True) -> ActionChunk:
    """Action i of the chunk has x = tag + i; ids encode (tag, step, dim) so slices are checkable."""
    a = np.zeros((h, D), np.float32)
    a[:, 0] = tag + np.arange(h)
    tok = (1000 * int(tag) + 10 * np.arange(h)[:, None] + np.arange(D)[None]).reshape(-1) if ids else None
    return ActionChunk(a, np.asarray(True), None if tok is None else tok.astype(np.int64))


def xs(sp: AsyncSplicer, ts) -> list[float | None]:
    out = []
    for t in ts:
        s = sp.action(t)
        out.append(None if s is None else float(s.action[0]))
    return out


def started(mode: str = "switch", **kw) -> AsyncSplicer:
    """A splicer playing chunk A (x = 0, 1, 2, 3) planned and delivered at step 0."""
    sp = AsyncSplicer(mode, tokens_per_step=D, **kw)
    req = sp.request(0, origin_ns=5)
    assert sp.deliver(req, chunk(0), 0) == "spliced"
    return sp


@pytest.mark.parametrize("d", range(H + 2))
def test_switch_skips_the_past_for_every_delay(d):
    sp = started(replan_every=2)
    assert not sp.wants_plan(1) and sp.wants_plan(2)
    req = sp.request(2, origin_ns=7)
    for t in range(2, 2 + d):  # while B computes, A plays on
        assert xs(sp, [t]) == [float(t) if t < H else None]  # ... then holds when it runs out
        assert not sp.wants_plan(t)  # one request in flight at a time
    status = sp.deliver(req, chunk(100), 2 + d)
    ts = range(2 + d, 8)
    if d < H:  # B plays from its index d on; its first d actions were in the past
        assert status == "spliced"
        assert xs(sp, ts) == [100.0 + t - 2 if t - 2 < H else None for t in ts]
        assert sp.action(2 + d).origin_step == 2 and sp.action(2 + d).origin_ns == 7
    else:  # wholly in the past: never executed; A runs out, then hold
        assert status == "expired"
        assert xs(sp, ts) == [float(t) if t < H else None for t in ts]
    assert sp.delays[-1] == d


def test_chunk_that_never_arrives_holds_after_the_plan_runs_out():
    sp = started(replan_every=2)
    sp.request(2)
    assert xs(sp, range(2, 7)) == [2.0, 3.0, None, None, None]
    assert not any(sp.wants_plan(t) for t in range(2, 7))
    assert sp.in_flight is not None


def test_ensemble_averages_the_overlap():
    m = 0.5
    sp = started("ensemble", replan_every=1, ensemble_m=m)
    req = sp.request(1)
    sp.deliver(req, chunk(100), 2)  # B planned at 1, covers 1..4; A covers 0..3
    w = np.exp(-m * np.arange(2))  # oldest first
    for t in (2, 3):
        want = (w[0] * t + w[1] * (100 + t - 1)) / w.sum()
        assert sp.action(t).action[0] == pytest.approx(want)
        assert sp.action(t).origin_step == 1  # the newest contributing chunk
    assert xs(sp, [4, 5]) == [103.0, None]


def test_prefix_forces_the_committed_actions_tokens():
    sp = started("prefix", replan_every=1)
    first = sp.request(1)
    assert first.forced_steps == 0 and first.prefix_ids is None  # no delay observed yet
    sp.deliver(first, chunk(1), 3)  # d = 2: chunk 1 (planned at 1) plays from its index 2
    req = sp.request(3)
    assert req.forced_steps == 2  # the delay estimate: chunk 1's steps 3 and 4 run meanwhile
    want = chunk(1).ids.reshape(H, D)[2:4].reshape(-1)  # chunk 1's steps 3, 4 = its indices 2, 3
    np.testing.assert_array_equal(req.prefix_ids, want)


def test_prefix_never_forces_past_the_current_chunk():
    sp = started("prefix", replan_every=1)
    r = sp.request(1)
    sp.deliver(r, chunk(1), 4)  # d = 3; chunk 1 covers steps 1..4
    req = sp.request(4)
    assert req.forced_steps == 1  # only step 4 is covered, though the estimate is 3
    np.testing.assert_array_equal(req.prefix_ids, chunk(1).ids[3 * D:4 * D])


def test_delay_estimate_is_the_largest_recent_delay():
    sp = AsyncSplicer("switch", delay_window=2)
    for t0, d in ((0, 3), (3, 1), (4, 1)):
        sp.deliver(sp.request(t0), chunk(t0), t0 + d)
    assert sp.delay_estimate == 1  # the 3 fell out of the window of 2


def test_wants_plan_early_when_the_chunk_would_run_out_first():
    sp = started(replan_every=10)
    sp.delays.append(2)
    assert not sp.wants_plan(1)  # A covers 0..3: 3 steps left > estimate 2
    assert sp.wants_plan(2)  # 2 left <= 2


def test_invalid_chunk_is_never_executed():
    sp = started(replan_every=1)
    req = sp.request(1)
    bad = ActionChunk(np.full((H, D), np.nan, np.float32), np.asarray(False))
    assert sp.deliver(req, bad, 2) == "invalid"
    assert xs(sp, [2, 3, 4]) == [2.0, 3.0, None]
    assert sp.executor.invalid_chunks == 1


def test_deliver_and_cancel_check_the_request():
    sp = started()
    req = sp.request(1)
    with pytest.raises(RuntimeError, match="in flight"):
        sp.request(1)
    with pytest.raises(ValueError, match="precede"):
        sp.deliver(req, chunk(1), 0)
    sp.cancel(req)
    with pytest.raises(ValueError, match="not the one in flight"):
        sp.deliver(req, chunk(1), 2)
    assert sp.wants_plan(2)


@pytest.mark.parametrize("kw, match", [
    ({"mode": "blend"}, "splice mode"),
    ({"mode": "prefix", "tokens_per_step": None}, "tokens_per_step"),
    ({"mode": "switch", "replan_every": 0}, "replan_every"),
])
def test_bad_config_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        AsyncSplicer(**kw)


@pytest.mark.parametrize("mode", SPLICE_MODES)
def test_every_mode_plays_the_first_chunk_from_its_delay(mode):
    sp = AsyncSplicer(mode, tokens_per_step=D)
    req = sp.request(0)
    assert xs(sp, [0]) == [None]  # nothing to play while the first chunk computes: hold
    sp.deliver(req, chunk(10), 1)
    assert xs(sp, [1, 2, 3, 4]) == [11.0, 12.0, 13.0, None]


def test_prefix_forced_actions_keep_the_previous_chunks_origin():
    """A chunk back sooner than the delay estimate first plays its forced actions (the old chunk's): the
    seam (origin change) is where its own actions begin, not where it was spliced."""
    sp = AsyncSplicer("prefix", replan_every=1, tokens_per_step=D)
    a = sp.request(0, origin_ns=100)
    sp.deliver(a, chunk(0, h=6), 2)  # d = 2: the estimate becomes 2
    req = sp.request(2, origin_ns=300)
    assert req.forced_steps == 2
    sp.deliver(req, chunk(50, h=6), 3)  # back after 1 step: index 1 is forced, index 2 its own
    assert (sp.action(3).origin_step, sp.action(3).origin_ns) == (0, 100)  # forced: chunk A's action
    assert (sp.action(4).origin_step, sp.action(4).origin_ns) == (2, 300)
    assert xs(sp, [3, 4]) == [51.0, 52.0]


def test_seam_meter_hand_computed():
    from vla.chunking import ChunkStep
    from vla.splicing import SeamMeter

    m = SeamMeter()
    a = np.zeros(7)
    for origin, x, grip in ((0, 0.0, -1), (0, 0.1, 1), (2, 0.4, 1)):
        a = np.zeros(7)
        a[0], a[6] = x, grip
        m.add(ChunkStep(a, origin, 0))
    assert m.step_sq == pytest.approx([0.01, 0.09])  # the gripper's -1 -> 1 does not count
    assert m.seam_sq == pytest.approx([0.09])  # only where the origin changed
    m.new_episode()
    m.add(ChunkStep(np.ones(7), 5, 0))
    assert len(m.seam_sq) == 1 and len(m.step_sq) == 2  # no seam across episodes
