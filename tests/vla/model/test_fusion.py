"""Every fusion mode of the registry (`vla.model.fusion.FUSION_MODES`), with and without text-guided vision
encoding: trains a step and decodes; KV-cached decoding equals the no-cache reference, the full-LM step and
transformers' generate(); the gates start closed (a fresh block is the identity) and, once open, the
observation reaches the actions; the LM's own modules are untouched; config errors name the field."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.vla.model.conftest import make_policy
from vla.config import FusionConfig, LMConfig, VisionConfig, debug_config
from vla.model.decoding import decode_autoregressive, decode_parallel, generate_baseline
from vla.model.fusion import FUSION_MODES, TextGuidedEncoding
from vla.model.sequence import example_batch

VARIANTS = [(mode, tg) for mode in FUSION_MODES for tg in (False, True)]
LM3 = LMConfig(hf_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                          "num_key_value_heads": 1, "max_position_embeddings": 256})


def fusion_cfg(mode: str, text_guided: bool, decoding: str = "autoregressive", **fusion):
    cfg = debug_config(decoding=decoding, fusion=FusionConfig(mode=mode, text_guided=text_guided, **fusion))
    vit3 = dataclasses.replace(cfg.vision, hf_config={**cfg.vision.hf_config, "num_hidden_layers": 3})
    return cfg.replace(lm=LM3, vision=vit3)


def open_gates(policy, std: float = 0.5) -> None:
    """Give every zero-initialised fusion parameter a value, as training would (so fusion changes outputs)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if name.endswith(("attn_gate", "ffn_gate")) or name.startswith("fusion.mix.2"):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def batch(policy, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    out = example_batch(policy.cfg, b, text_vocab=policy.text_vocab_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    out["action_ids"] = torch.randint(*policy.action_block, (b, policy.num_action_tokens), generator=g)
    out["action_mask"] = torch.ones(b, policy.num_action_tokens, dtype=torch.bool)
    return out


def obs_only(b: dict) -> dict:
    return {k: b[k] for k in ("pixel_values", "prompt_ids", "prompt_mask", "state")}


@pytest.mark.parametrize("mode,text_guided", VARIANTS)
@pytest.mark.parametrize("decoding", ["autoregressive", "parallel"])
def test_every_mode_trains_a_step_and_decodes(mode, text_guided, decoding):
    policy = make_policy(fusion_cfg(mode, text_guided, decoding))
    open_gates(policy)
    b = batch(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    loss0, _ = policy.compute_loss(b)
    loss0.backward()
    fusion_params = [p for n, p in policy.named_parameters() if n.startswith(("fusion.", "text_guide."))]
    assert (mode == "early" and not text_guided) or any(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion_params)
    opt.step()
    opt.zero_grad()
    for _ in range(5):
        loss, _ = policy.compute_loss(b)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert float(loss) < float(loss0)  # it learns (6 steps on one batch)
    policy.eval()
    ids = decode_parallel(policy, b) if decoding == "parallel" else decode_autoregressive(policy, b)
    lo, hi = policy.action_block
    assert ids.shape == (3, policy.num_action_tokens) and bool(((ids >= lo) & (ids < hi)).all())


@pytest.mark.parametrize("mode,text_guided", VARIANTS)
def test_kv_cache_equals_no_cache_and_generate(mode, text_guided):
    policy = make_policy(fusion_cfg(mode, text_guided)).eval()
    open_gates(policy)
    b = obs_only(batch(policy))
    ref = decode_autoregressive(policy, b, use_cache=False)
    assert torch.equal(decode_autoregressive(policy, b, use_cache=True), ref)  # lean layer loop
    assert torch.equal(decode_autoregressive(policy, b, use_cache=True, layer_loop=False), ref)  # the full LM call
    assert torch.equal(generate_baseline(policy, {k: v[:1] for k, v in b.items()}), ref[:1])
    # the teacher-forced forward scores the decoded ids as their argmax (the training path agrees too)
    with torch.no_grad():
        logits = policy.restrict(policy.forward(**b, action_ids=ref.clone(), mode="autoregressive"))
    assert torch.equal(logits.argmax(-1), ref)


@pytest.mark.parametrize("mode", [m for m in FUSION_MODES if m != "early"])
def test_gates_start_closed_and_vision_arrives_once_open(mode):
    policy = make_policy(fusion_cfg(mode, False)).eval()
    b1, b2 = obs_only(batch(policy, seed=0)), obs_only(batch(policy, seed=0))
    b2["pixel_values"] = -b2["pixel_values"]  # another image, the same prompt and state
    with torch.no_grad():
        l1, l2 = (policy.forward(**x, mode="parallel") for x in (b1, b2))
        assert torch.equal(l1, l2)  # closed gates / zero mix: the LM ignores vision, exactly
        open_gates(policy)
        l1, l2 = (policy.forward(**x, mode="parallel") for x in (b1, b2))
    assert (l1 - l2).abs().max() > 1e-3
    assert policy.num_visual_tokens == 0 and policy.num_image_tokens == 2 * policy.projector.num_tokens
    assert policy.prefix_len == policy.cfg.text.prompt_len + 1  # [prompt][state]: no visual tokens in the LM


def test_cross_attention_blocks_sit_before_every_kth_layer_and_leave_the_lm_untouched():
    early = make_policy(fusion_cfg("early", False))
    xattn = make_policy(fusion_cfg("cross_attention", False, every=2, heads=4))
    assert xattn.fusion.layers == (0, 2) and len(xattn.fusion.blocks) == 2 and xattn.fusion.blocks[0].heads == 4
    assert set(xattn.lm.state_dict()) == set(early.lm.state_dict())  # LoRA / freezing see the same LM names
    # each block runs exactly once per forward, before its layer: count calls through a wrapper hook
    calls = []
    for j, blk in enumerate(xattn.fusion.blocks):
        blk.register_forward_hook(lambda m, a, o, j=j: calls.append(j))
    with torch.no_grad():
        xattn.eval().forward(**obs_only(batch(xattn)), mode="parallel")
    assert calls == [0, 1]
    with pytest.raises(RuntimeError, match="fusion_context"):  # the LM alone, without the observation: refused
        xattn.lm(inputs_embeds=torch.zeros(1, 3, 32))


def test_text_guided_tower_reads_the_instruction_and_ignores_padding():
    policy = make_policy(fusion_cfg("early", True)).eval()
    tg: TextGuidedEncoding = policy.text_guide
    assert torch.allclose(tg.gates.detach(), torch.tensor([-6.0, -3.0, 0.0]))  # one gate per ViT layer, rising
    px = torch.rand(2, 3, 32, 32) * 2 - 1
    txt = torch.randn(2, 6, 32)
    mask = torch.tensor([[False, False, True, True, True, True]] * 2)
    with torch.no_grad():
        base = tg(policy.vision, px, txt, mask)
        garbage = txt.clone()
        garbage[:, :2] = torch.randn(2, 2, 32) * 10  # the padded positions hold anything
        assert torch.allclose(tg(policy.vision, px, garbage, mask), base, atol=1e-6)
        other = txt.clone()
        other[:, 3] = torch.randn(2, 32)  # one real token changes
        assert (tg(policy.vision, px, other, mask) - base).abs().max() > 1e-4
        assert base.shape == policy.vision(px).shape  # the same patch tokens the projector takes


def test_fusion_config_errors_name_the_field():
    with pytest.raises(ValueError, match="FusionConfig.mode"):
        FusionConfig(mode="middle")
    with pytest.raises(ValueError, match="FusionConfig.every"):
        FusionConfig(mode="late", every=2)
    with pytest.raises(ValueError, match="FusionConfig.heads"):
        FusionConfig(mode="cross_attention", heads=0)
    assert FusionConfig(mode="cross_attention").every == 1
    cfg = debug_config()
    with pytest.raises(ValueError, match="FusionConfig.text_guided.*film"):
        cfg.replace(vision=VisionConfig(), fusion=FusionConfig(text_guided=True))  # the default conv tower
    with pytest.raises(ValueError, match="heads"):
        make_policy(fusion_cfg("cross_attention", False, heads=5))  # 32 is not divisible by 5
    d = fusion_cfg("cross_attention", True, every=2).to_dict()
    assert dataclasses.asdict(type(cfg).from_dict(d).fusion) == {"mode": "cross_attention", "every": 2, "heads": None,
                                                                  "text_guided": True}


@pytest.mark.parametrize("mode", [m for m in FUSION_MODES if m != "early"])
def test_lora_and_a_frozen_lm_keep_the_fusion_hooks_and_train_the_fusion_modules(mode):
    from vla.train.config import LoraSettings, TrainConfig
    from vla.train.loop import _apply_trainability, merged_state_dict

    policy = make_policy(fusion_cfg(mode, False))
    open_gates(policy)
    _apply_trainability(policy, TrainConfig(lora=LoraSettings(r=2)))
    assert all(p.requires_grad for p in policy.fusion.parameters())
    assert not any(p.requires_grad for n, p in policy.lm.named_parameters() if "lora_" not in n)
    b1, b2 = obs_only(batch(policy)), obs_only(batch(policy))
    b2["pixel_values"] = -b2["pixel_values"]
    with torch.no_grad():
        assert (policy.forward(**b1, mode="parallel") - policy.forward(**b2, mode="parallel")).abs().max() > 1e-3
    merged = merged_state_dict(policy)
    assert any(k.startswith("fusion.") for k in merged) and not any("lora_" in k for k in merged)
