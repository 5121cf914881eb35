"""KV-cached decoding paths: the lean layer loop == the per-token LM call == the no-cache reference ==
transformers generate(), for every projector, both action tokenizers, Llama / Qwen2 / Qwen3, SDPA and
eager attention, batch > 1 with prompt padding, FAST early stop, and a LoRA-wrapped LM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    io_of,
    make_obs,
    make_policy,
    prepare,
)
from vla.config import AuxConfig, FiLMConfig, VLAConfig, debug_config
from vla.greedy import greedy
from vla.model.decoding import decode_autoregressive, generate_baseline, layer_loop_unsupported
from vla.model.policy import VLAPolicy

SHORT, LONG = "lift", "push the red cube onto the green target please"


def build(projector: str = "mlp", tokenizer: str = "bins", lm: str = "llama", attn: str = "sdpa",
          **hf: object) -> VLAPolicy:
    cfg = debug_config(projector=projector, tokenizer=tokenizer, horizon=4 if tokenizer == "fast" else 2)
    cfg = dataclasses.replace(cfg, lm=dataclasses.replace(cfg.lm, model_type=lm, attn_implementation=attn,
                                                          hf_config={**cfg.lm.hf_config, **hf}))
    policy = make_policy(cfg, instructions=[SHORT, LONG])
    rng = np.random.default_rng(1)
    if tokenizer == "fast":
        t = np.linspace(0, 1, 4)[None, :, None]
        chunks = np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)), -1, 1)
        policy.action_tokenizer.fit(chunks)
    return policy.eval()


def all_paths(policy: VLAPolicy, inputs: dict) -> dict[str, torch.Tensor]:
    out = {"no_cache": decode_autoregressive(policy, inputs, use_cache=False),
           "lm_call": decode_autoregressive(policy, inputs, use_cache=True, layer_loop=False),
           "default": decode_autoregressive(policy, inputs, use_cache=True)}
    if layer_loop_unsupported(policy.lm) is None:
        out["layer_loop"] = decode_autoregressive(policy, inputs, use_cache=True, layer_loop=True)
    return out


def assert_all_equal(paths: dict[str, torch.Tensor]) -> None:
    ref = paths["no_cache"]
    for name, ids in paths.items():
        assert torch.equal(ids, ref), f"{name} differs from the no-cache reference"


CASES = [
    ("linear", "bins", "llama", "sdpa"),
    ("mlp", "bins", "llama", "sdpa"),
    ("pixel_shuffle", "bins", "llama", "sdpa"),
    ("resampler", "bins", "llama", "sdpa"),
    ("mlp", "fast", "llama", "sdpa"),
    ("mlp", "bins", "llama", "eager"),
    ("resampler", "fast", "qwen2", "sdpa"),
    ("mlp", "bins", "qwen2", "eager"),
    ("mlp", "bins", "qwen3", "sdpa"),
]


@pytest.mark.parametrize("projector, tokenizer, lm, attn", CASES)
def test_every_cached_path_equals_the_reference_and_generate(projector: str, tokenizer: str, lm: str,
                                                             attn: str) -> None:
    policy = build(projector, tokenizer, lm, attn)
    assert layer_loop_unsupported(policy.lm) is None
    # batch 2 with prompt padding: the short prompt's row has masked columns the long one does not
    obs = [make_obs(0, SHORT), make_obs(1, LONG)]
    padded = all_paths(policy, prepare(policy, obs))
    assert_all_equal(padded)
    assert bool(policy.action_logit_mask[padded["default"]].all())
    one = prepare(policy, obs[:1])  # batch 1, padding dropped: no mask at all on the lean path
    alone = decode_autoregressive(policy, one)
    assert torch.equal(alone, generate_baseline(policy, one))
    assert torch.equal(padded["default"][0, : alone.shape[1]], alone[0])  # padding is invisible to a row


def force_early_eos(policy: VLAPolicy, inputs: dict) -> None:
    """Make the untrained LM emit EOS where it would emit the token it picks at slot 1 of row 0."""
    first = decode_autoregressive(policy, inputs)
    head = policy.lm.get_output_embeddings().weight
    with torch.no_grad():
        head[policy.eos_id] = head[int(first[0, 1])] * 1.5


def test_fast_early_stop_is_identical_on_every_path() -> None:
    policy = build("mlp", "fast")
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG), make_obs(4, SHORT)])
    force_early_eos(policy, inputs)
    paths = all_paths(policy, inputs)
    assert_all_equal(paths)
    ids = paths["default"]
    eos = policy.eos_id
    assert ids.shape[1] < policy.num_action_tokens  # every row ended, the loop stopped early
    for row in ids.tolist():
        assert eos in row and all(t == eos for t in row[row.index(eos):])  # ended rows keep emitting EOS
    one = prepare(policy, [make_obs(0, SHORT)])
    assert torch.equal(decode_autoregressive(policy, one), generate_baseline(policy, one))


@pytest.mark.parametrize("xp", [torch, np], ids=["torch", "numpy"])
def test_greedy_bookkeeping_stops_when_every_row_has_ended(xp) -> None:
    """The one greedy loop serves the torch KV loop (tensors) and the graph runtimes (numpy) alike."""
    eos, offset = 7, 5
    # slot i's winner per row, as indices into the action block (offset + index = id): row 0 ends at
    # slot 1, row 1 at slot 3; row 0's later winners are ignored
    winners = np.array([[0, 2, 1, 1, 0, 0], [1, 0, 1, 2, 0, 0]])

    def scores(i: int):
        s = np.eye(3, dtype=np.float32)[winners[:, i]]  # [B, A=3] one-hot
        return torch.from_numpy(s) if xp is torch else s

    calls = []

    def step(tok, i: int):
        assert type(tok) is type(scores(0))  # stays in the backend's own array type
        calls.append(i)
        return scores(i + 1)

    ids = greedy(scores(0), step, n=6, offset=offset, eos=eos, xp=xp)
    assert ids.tolist() == [[5, 7, 7, 7], [6, 5, 6, 7]]
    assert calls == [0, 1, 2]  # no step after the last row ended
    fixed = greedy(scores(0), step, n=3, offset=offset, eos=None, xp=xp)  # bins: fixed length, no EOS handling
    assert fixed.tolist() == [[5, 7, 6], [6, 5, 6]]


def test_unsupported_lm_takes_the_lm_call_path() -> None:
    # dynamic RoPE rescales with the sequence length, so its rotary tables cannot be computed up front
    policy = build("mlp", "bins", "llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                                            "rope_theta": 10000.0})
    why = layer_loop_unsupported(policy.lm)
    assert why is not None and "dynamic" in why
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])
    with pytest.raises(ValueError, match="dynamic"):
        decode_autoregressive(policy, inputs, layer_loop=True)
    with pytest.raises(ValueError, match="use_cache"):
        decode_autoregressive(policy, inputs, use_cache=False, layer_loop=True)
    assert_all_equal(all_paths(policy, inputs))
    sliding = build("mlp", "bins", "qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=0)
    assert "sliding" in (layer_loop_unsupported(sliding.lm) or "")


def test_lora_wrapped_lm_decodes_like_its_merged_weights() -> None:
    from peft import LoraConfig, get_peft_model

    policy = build()
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])
    plain = decode_autoregressive(policy, inputs)
    policy.lm = get_peft_model(policy.lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # non-zero adapters, so a path that skipped them would decode differently
        for name, p in policy.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    assert layer_loop_unsupported(policy.lm) is None
    paths = all_paths(policy, inputs)
    assert_all_equal(paths)
    assert not torch.equal(paths["default"], plain)  # the adapters matter
    policy.lm = policy.lm.merge_and_unload()
    merged = decode_autoregressive(policy, inputs, use_cache=False)
    assert torch.equal(paths["default"], merged)


def test_training_still_works_after_inference_mode_decoding() -> None:
    # decoding runs under torch.inference_mode; nothing it creates may leak into a later backward pass
    policy = build()
    obs = [make_obs(0, SHORT), make_obs(1, LONG)]
    inputs = prepare(policy, obs)
    decode_autoregressive(policy, inputs)
    policy.train()
    ids, mask = io_of(policy).targets(np.zeros((2, 2, 7)))
    loss, _ = policy.compute_loss({**inputs, "action_ids": torch.from_numpy(ids), "action_mask": torch.from_numpy(mask)})
    loss.backward()
    assert policy.lm.get_output_embeddings().weight.grad is not None


@pytest.mark.parametrize("decoding", ["autoregressive", "parallel"])
def test_shipped_default_prefix_decodes_like_training_sees_it(decoding: str) -> None:
    """The shipped default's prefix (FiLM-conditioned image tokens with position embeddings, the aux pointer
    head, a state token): every decoding path equals the no-cache reference and the teacher-forced training
    forward, and generate() agrees."""
    base = debug_config(projector="pixel_shuffle", decoding=decoding)
    cfg = base.replace(visual_pos_embed=True, film=FiLMConfig(), aux=AuxConfig())
    assert (cfg.film, cfg.aux, cfg.visual_pos_embed) == (VLAConfig().film, VLAConfig().aux, True)
    policy = make_policy(cfg, instructions=[SHORT, LONG])
    with torch.no_grad():  # FiLM starts as the identity: make it act
        policy.film.proj.weight.normal_(0.0, 0.5)
    policy.eval()
    inputs = prepare(policy, [make_obs(0, SHORT), make_obs(1, LONG)])
    paths = all_paths(policy, inputs)
    assert_all_equal(paths)
    with torch.no_grad():  # teacher forcing with the decoded ids reproduces them: same masks in training
        logits = policy.forward(**inputs, action_ids=paths["default"], mode="autoregressive")
    assert torch.equal(policy.restrict(logits).argmax(-1), paths["default"])
    one = prepare(policy, [make_obs(0, SHORT)])
    assert torch.equal(generate_baseline(policy, one), decode_autoregressive(policy, one))
