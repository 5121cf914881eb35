"""Prefix conditioning for parallel decoding (`action.prefix_conditioning`): the parallel analogue of
prefix-forced decoding. Training gives a share of chunks' first k steps to the action slots as token
embeddings; at inference the forced prefix (the actions that run while the chunk is computed) is given the
same way, so the one-pass continuation conditions on it. Torch, ONNX Runtime and the splicer agree."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare, runtime
from vla.config import ActionConfig, debug_config
from vla.evaluation import DelayedChunkPolicy
from vla.model.decoding import _action_block, decode, decode_parallel
from vla.splicing import prefix_tokens_per_step

SHORT, LONG = "lift", "push the red cube onto the green target please"


def conditioned_cfg(p: float = 0.5, horizon: int = 4):
    cfg = debug_config(decoding="parallel", horizon=horizon)
    return dataclasses.replace(cfg, action=dataclasses.replace(cfg.action, prefix_conditioning=p))


@pytest.fixture(scope="module")
def policy():
    return make_policy(conditioned_cfg(), instructions=[SHORT, LONG]).eval()


@pytest.fixture(scope="module")
def obs():
    return [make_obs(0, SHORT), make_obs(1, LONG)]  # batch 2 with prompt padding


def shifted(policy, ids: torch.Tensor, by: int = 5) -> torch.Tensor:
    lo, hi = _action_block(policy)
    return lo + (ids - lo + by) % (hi - lo)


def test_config_errors_name_the_field() -> None:
    for kw, why in (({"decoding": "autoregressive", "prefix_conditioning": 0.5}, "only applies to decoding 'parallel'"),
                    ({"decoding": "parallel", "prefix_conditioning": 1.5}, r"in \[0, 1\]"),
                    ({"decoding": "parallel", "prefix_conditioning": 0.5, "horizon": 1, "execute_steps": 1},
                     "horizon >= 2")):
        with pytest.raises(ValueError, match=rf"ActionConfig.prefix_conditioning=.*{why}"):
            ActionConfig(**kw)
    assert not ActionConfig(decoding="parallel").conditions_on_prefix
    assert ActionConfig(decoding="parallel", prefix_conditioning=0.3).conditions_on_prefix
    assert ActionConfig(decoding="autoregressive").conditions_on_prefix


def test_no_given_slot_is_exactly_the_placeholders(policy, obs) -> None:
    inputs = prepare(policy, obs)
    args = (inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"], inputs["state"])
    n = policy.num_action_tokens
    ids = torch.full((2, n), _action_block(policy)[0] + 3)
    none = policy.forward(*args, mode="parallel")
    zero = policy.forward(*args, ids, mode="parallel", given=torch.zeros(2, n, dtype=torch.bool))
    assert torch.equal(none, zero)
    assert torch.equal(decode_parallel(policy, inputs, prefix_ids=ids[:, :0]), decode_parallel(policy, inputs))


def test_forced_slots_lead_and_the_continuation_conditions_on_them(policy, obs) -> None:
    inputs = prepare(policy, obs)
    free = decode(policy, inputs)  # parallel, nothing given
    d = policy.cfg.action.dim
    a = decode(policy, inputs, prefix_ids=free[:, :d])
    b = decode(policy, inputs, prefix_ids=shifted(policy, free[:, :d]))
    assert torch.equal(a[:, :d], free[:, :d]) and torch.equal(b[:, :d], shifted(policy, free[:, :d]))
    logits = [policy.forward(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"], inputs["state"],
                             torch.cat([p, p.new_zeros(2, policy.num_action_tokens - d) + p[:, :1]], 1),
                             mode="parallel", given=torch.arange(policy.num_action_tokens)[None].expand(2, -1) < d)
              for p in (free[:, :d], shifted(policy, free[:, :d]))]
    assert (logits[0][:, d:] - logits[1][:, d:]).abs().max() > 1e-4  # the given tokens reach the free slots


def test_an_unconditioned_parallel_policy_refuses_given_slots(obs) -> None:
    plain = make_policy(decoding="parallel", horizon=4).eval()
    inputs = prepare(plain, obs[:1])
    n = plain.num_action_tokens
    with pytest.raises(ValueError, match="prefix_conditioning"):
        plain.forward(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"], inputs["state"],
                      torch.zeros(1, n, dtype=torch.long) + _action_block(plain)[0], mode="parallel",
                      given=torch.ones(1, n, dtype=torch.bool))
    with pytest.raises(ValueError, match="prefix_conditioning"):
        prefix_tokens_per_step(runtime(plain))


def test_training_batches_sample_given_steps_and_the_loss_skips_them(policy) -> None:
    from vla.train.data import make_batch

    frames = _frames(policy, episodes=4, length=12)
    idx = np.arange(40)
    a = make_batch(io_of(policy), frames, idx, None, torch.Generator().manual_seed(3))
    b = make_batch(io_of(policy), frames, idx, None, torch.Generator().manual_seed(3))
    assert torch.equal(a["given_steps"], b["given_steps"])  # from the generator: a resumed run replays it
    k = a["given_steps"]
    assert k.min() == 0 and 1 <= k[k > 0].min() and k.max() <= policy.cfg.action.horizon - 1
    assert 0.2 < float((k > 0).float().mean()) < 0.8  # p = 0.5 over 40 chunks
    assert "given_steps" not in make_batch(io_of(policy), frames, idx, None, None)  # validation: nothing given
    _, stats = policy.compute_loss(a)
    given = (torch.arange(policy.num_action_tokens)[None] < (k * policy.cfg.action.dim)[:, None])
    assert stats["n_tokens"] == int((a["action_mask"] & ~given).sum()) < int(a["action_mask"].sum())


def test_prefix_noise_perturbs_only_what_the_slots_are_given() -> None:
    from vla.train.data import make_batch

    cfg = conditioned_cfg(p=1.0)
    cfg = dataclasses.replace(cfg, action=dataclasses.replace(cfg.action, prefix_noise=0.2))
    policy = make_policy(cfg, instructions=[SHORT]).eval()
    frames = _frames(policy, episodes=4, length=12)
    idx = np.arange(40)
    clean = make_batch(io_of(make_policy(conditioned_cfg(p=1.0), instructions=[SHORT])), frames, idx, None,
                       torch.Generator().manual_seed(3))
    b = make_batch(io_of(policy), frames, idx, None, torch.Generator().manual_seed(3))
    assert torch.equal(b["action_ids"], clean["action_ids"])  # the targets stay clean
    d = policy.cfg.action.dim
    slots, tgt = b["slot_ids"].reshape(40, -1, d), b["action_ids"].reshape(40, -1, d)
    assert torch.equal(slots[..., 6], tgt[..., 6])  # the gripper is never perturbed
    assert (slots[..., :6] != tgt[..., :6]).float().mean() > 0.5  # 0.2 normalized ~ 26 bins of std
    _, with_noise = policy.compute_loss(b)
    _, without = policy.compute_loss({k: v for k, v in b.items() if k != "slot_ids"})
    assert with_noise["loss"] != without["loss"]  # the slots read the noisy ids
    with pytest.raises(ValueError, match="ActionConfig.prefix_noise=.*prefix_conditioning"):
        ActionConfig(decoding="parallel", prefix_noise=0.1)


def test_self_prefix_gives_rows_the_policys_own_earlier_steps(policy) -> None:
    """TrainConfig.prefix_self: a conditioned row with k given steps at frame t gets the policy's own greedy
    chunk from frame t - k, its steps k..2k-1 (what async splicing commits), unless that frame lies before
    the episode start or 2k > H; the targets stay the demo's; the choice of rows comes from the generator."""
    from vla.model.decoding import decode_parallel
    from vla.train.data import make_batch
    from vla.train.self_prefix import self_prefix

    frames = _frames(policy, episodes=4, length=12)
    io = io_of(policy)
    idx = np.arange(48)
    batch = make_batch(io, frames, idx, None, torch.Generator().manual_seed(3))
    demo = {k: v.clone() for k, v in batch.items()}
    changed = self_prefix(policy, io, frames, idx, batch, share=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(batch["action_ids"], demo["action_ids"])  # targets untouched
    k, h, d = demo["given_steps"], policy.cfg.action.horizon, policy.cfg.action.dim
    start = (idx // 12) * 12
    eligible = [r for r in range(48) if 0 < k[r] and 2 * k[r] <= h and idx[r] - k[r] >= start[r]]
    assert changed == len(eligible) > 0
    earlier = make_batch(io, frames, idx - k.numpy(), None, None)
    with torch.no_grad():
        own = decode_parallel(policy, {n: earlier[n] for n in ("pixel_values", "prompt_ids", "prompt_mask", "state")})
    for r in range(48):
        n = int(k[r]) * d
        if r in eligible:
            assert torch.equal(batch["slot_ids"][r, :n], own[r, n:2 * n]), r
        else:  # the demo's own prefix
            assert torch.equal(batch["slot_ids"][r], demo["action_ids"][r]), r
    again = make_batch(io, frames, idx, None, torch.Generator().manual_seed(3))
    assert self_prefix(policy, io, frames, idx, again, share=0.5, generator=torch.Generator().manual_seed(4)) < changed
    _, stats = policy.compute_loss(batch)  # trains on it: the given slots stay unscored
    assert stats["n_tokens"] == int((demo["action_mask"] & ~policy.first_slots(k * d)).sum())
    from vla.train import TrainConfig

    with pytest.raises(ValueError, match=r"TrainConfig.prefix_self=1.5"):
        TrainConfig(prefix_self=1.5)


def _frames(policy, episodes: int, length: int, actions: np.ndarray | None = None):
    """In-memory training frames (`vla.train.data.Frames`) of random images and the given actions."""
    from vla.train.data import Frames

    rng = np.random.default_rng(0)
    n = episodes * length
    s = policy.cfg.vision.image_size
    episode = np.repeat(np.arange(episodes), length)
    acts = rng.uniform(-0.01, 0.01, (n, 7)).astype(np.float32) if actions is None else actions
    return Frames(images=torch.from_numpy(rng.integers(0, 256, (n, 2, s, s, 3), dtype=np.uint8)),
                  states=rng.normal(size=(n, 8)).astype(np.float32), actions=acts,
                  task_index=np.zeros(n, dtype=np.int64), tasks=[SHORT], episode=episode,
                  episode_stop=(episode + 1) * length)


def test_it_learns_to_continue_the_given_prefix() -> None:
    """A chunk whose steps all repeat one random action: unpredictable from the observation, so only a
    policy that reads the given first step can decode the rest. Trained briefly, the forced continuation
    copies the given step far above what the unforced decode gets."""
    from vla.train.data import make_batch

    torch.manual_seed(0)
    policy = make_policy(conditioned_cfg(p=1.0, horizon=2), instructions=[SHORT])
    rng = np.random.default_rng(1)
    eps, length = 64, 2
    per_ep = rng.uniform(-0.01, 0.01, (eps, 1, 7)).astype(np.float32)
    frames = _frames(policy, eps, length, np.repeat(per_ep, length, 1).reshape(-1, 7))
    io = io_of(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    starts = np.arange(eps) * length  # chunk = the episode's 2 identical steps
    for _ in range(150):
        batch = make_batch(io, frames, starts[torch.randperm(eps, generator=gen)[:32].numpy()], None, gen)
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    batch = make_batch(io, frames, starts, None, None)
    inputs = {k: batch[k] for k in ("pixel_values", "prompt_ids", "prompt_mask", "state")}
    d, tgt = policy.cfg.action.dim, batch["action_ids"]
    forced = decode_parallel(policy, inputs, prefix_ids=tgt[:, :d])
    free = decode_parallel(policy, inputs)
    # within 2 bins of the given step (bins are ordered; the soft target of training is not used here)
    near = lambda ids: float(((ids[:, d:] - tgt[:, d:]).abs() <= 2).float().mean())  # noqa: E731
    assert near(forced) > 0.8 and near(forced) > near(free) + 0.4, (near(forced), near(free))


def test_prefix_splice_gives_the_committed_actions_to_a_conditioned_parallel_policy(policy) -> None:
    rt = runtime(policy)
    assert prefix_tokens_per_step(rt) == policy.cfg.action.dim
    calls = []
    infer = rt.infer

    def recording(o, prefix_ids=None):
        chunk = infer(o, prefix_ids=prefix_ids)
        calls.append((prefix_ids, chunk))
        return chunk

    rt.infer = recording
    runner = DelayedChunkPolicy(rt, delay_steps=2, splice="prefix", execute_steps=2)
    for s in range(10):
        runner(make_obs(s))
    d = policy.cfg.action.dim
    assert len(calls) >= 4 and calls[0][0] is None
    for (_, prev), (prefix, chunk) in zip(calls, calls[1:], strict=False):
        np.testing.assert_array_equal(prefix, prev.ids[2 * d:4 * d])  # the committed actions, given
        np.testing.assert_array_equal(chunk.actions[:2], prev.actions[2:4])


def test_onnx_runtime_matches_torch_with_and_without_a_prefix(policy, obs, tmp_path) -> None:
    from deploy.export import export_onnx
    from deploy.runtimes.onnx import OnnxRuntime

    m = export_onnx(policy, io_of(policy), tmp_path / "x")
    names = [i["name"] for i in m["graphs"]["parallel"]["inputs"]]
    assert names[:4] == ["prefix_embeds", "prefix_mask", "slot_ids", "slot_given"]
    assert m["sequence"]["prefix_conditioning"] == 0.5
    rt = OnnxRuntime(tmp_path / "x", providers=["CPUExecutionProvider"], threads=1)
    feeds, inputs = io_of(policy).inputs(obs), prepare(policy, obs)
    d = policy.cfg.action.dim
    free = decode_parallel(policy, inputs)
    for k in (0, d, 3 * d):
        forced = shifted(policy, free[:, :k])
        ids, logits = rt.decode_ids(feeds, return_logits=True, prefix_ids=forced.numpy())
        np.testing.assert_array_equal(ids, decode_parallel(policy, inputs, prefix_ids=forced).numpy())
        given = torch.arange(policy.num_action_tokens)[None].expand(2, -1) < k
        slot_ids = torch.cat([forced, forced.new_full((2, policy.num_action_tokens - k), _action_block(policy)[0])], 1)
        ref = policy.restrict(policy.forward(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"],
                                             inputs["state"], slot_ids, mode="parallel", given=given if k else None))
        lo, hi = _action_block(policy)
        np.testing.assert_allclose(logits, ref[..., lo:hi].detach().numpy(), atol=1e-4)


def test_tensorrt_builds_the_conditioned_parallel_graph(policy, tmp_path) -> None:
    """The TensorRT(-RTX) parser and builder take the graph with the forced-prefix inputs, and the engine
    profile covers them (batch axis 0, static slots)."""
    import json

    from deploy.export import export_onnx
    from deploy.export.tensorrt_build import EngineBuildConfig, build_engines
    from deploy.trt import import_tensorrt

    import_tensorrt()  # a required part of the deploy extra (tensorrt-rtx here): never skipped
    export_onnx(policy, io_of(policy), tmp_path / "onnx", max_batch=4)
    build_engines(tmp_path / "onnx", tmp_path / "engines", EngineBuildConfig(graphs=("parallel",)))
    prof = json.loads((tmp_path / "engines" / "manifest.json").read_text())["graphs"]["parallel"]["profile"]
    n = policy.num_action_tokens
    assert prof["slot_ids"] == prof["slot_given"] == [[1, n], [1, n], [4, n]]
