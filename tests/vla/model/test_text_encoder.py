"""The pretrained instruction encoder (`VLAConfig.text_encoder`, vla.model.text_encoder): all-MiniLM-L6-v2 from the
package gives transformers' own features, padding does not move them; a policy with an encoder (both poolings,
both decodings) trains with the encoder frozen, caches exactly what it would compute, round-trips through a
checkpoint and exports to ONNX with parity; config errors name the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare, targets
from vla.config import FiLMConfig, TextConfig, TextEncoderConfig, VLAConfig, debug_config
from vla.model import VLAPolicy
from vla.model.text_encoder import TextEncoder, minilm_dir
from vla.policy_io import build_prompt

TINY_BERT = {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}
INSTRUCTIONS = ("lift the red cube", "push the green cube onto the blue disc please", "reach the blue cube")


def enc_cfg(decoding: str = "parallel", pooling: str = "mean", film: bool = False, **enc) -> VLAConfig:
    return debug_config(decoding=decoding).replace(
        prompt_template="{instruction}",
        text=TextConfig(kind="tokenizer_json", path=str(minilm_dir()), bos_id=101, pad_id=0, suffix_ids=(102,),
                        prompt_len=24),
        text_encoder=TextEncoderConfig(hf_config=TINY_BERT, pooling=pooling, **enc),
        film=FiLMConfig() if film else None)


def test_minilm_from_the_package_gives_transformers_features_whatever_the_padding():
    from transformers import AutoTokenizer, BertModel

    enc = TextEncoder(TextEncoderConfig(pretrained="minilm"), out_dim=8).eval()
    ref_model = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    text = "could you take the red cube off the table?"
    ref_in = tok(text, return_tensors="pt")
    with torch.no_grad():
        h = ref_model(**ref_in).last_hidden_state[0]  # [T, 384]
        ref = h.mean(0) / h.mean(0).norm()  # sentence-transformers: mean pooling, then Normalize
        ids = ref_in["input_ids"]
        t = ids.shape[1]
        padded = torch.cat([torch.zeros(1, 7, dtype=ids.dtype), ids], 1)  # left padding, as the policy pads
        mask = torch.cat([torch.zeros(1, 7, dtype=torch.bool), torch.ones(1, t, dtype=torch.bool)], 1)
        ours = enc.features(padded, mask)  # [1, 7 + T, 384], the sentence embedding at every position
    torch.testing.assert_close(ours[0, -1], ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[0, 0], ref, atol=1e-5, rtol=0)
    tokens = TextEncoder(TextEncoderConfig(pretrained="minilm", pooling="tokens"), out_dim=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(tokens.features(padded, mask)[0, 7:], h, atol=1e-5, rtol=0)


def test_the_policy_tokenizer_is_minilm_wordpiece_with_cls_and_sep():
    cfg = VLAConfig.load("tiny_minilm")
    policy = VLAPolicy.from_config(cfg, instructions=list(INSTRUCTIONS))
    ids = build_prompt(cfg, policy.text_tokenizer, "Pick up the RED cube")
    assert ids[0] == 101 and ids[-1] == 102 and 0 not in ids  # [CLS] ... [SEP], no padding of its own
    assert policy.text_tokenizer.backend.decode(ids) == "pick up the red cube"  # uncased WordPiece
    assert policy.text_vocab_size == 0 and policy.vocab_size == policy.action_block[1] - policy.action_block[0]
    assert not any(p.requires_grad for p in policy.text_encoder.encoder.parameters())


@pytest.mark.parametrize("pooling", ["mean", "tokens"])
@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_policy_with_an_encoder_trains_frozen_caches_exactly_and_round_trips(pooling, decoding, tmp_path):
    policy = make_policy(enc_cfg(decoding, pooling, film=True), instructions=INSTRUCTIONS)
    enc0 = {k: v.clone() for k, v in policy.text_encoder.encoder.state_dict().items()}
    obs = [make_obs(seed=s, instruction=INSTRUCTIONS[s % 3]) for s in range(3)]
    b = prepare(policy, obs)
    chunks = np.random.default_rng(0).uniform(-0.8, 0.8, (3, policy.cfg.action.horizon, 7)).astype(np.float32)
    b["action_ids"], b["action_mask"] = targets(policy, chunks)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    policy.train()
    loss0 = None
    for _ in range(6):
        loss, _ = policy.compute_loss(b)
        loss0 = float(loss.detach()) if loss0 is None else loss0
        opt.zero_grad()
        loss.backward()
        assert policy.text_encoder.proj.weight.grad.abs().sum() > 0  # the map into the LM trains
        opt.step()
    assert float(loss) < loss0
    for k, v in policy.text_encoder.encoder.state_dict().items():  # the encoder stays as loaded
        assert torch.equal(v, enc0[k]), k
    assert len(policy.text_encoder._cache) == 3  # three distinct prompts, each encoded once
    policy.eval()
    with torch.no_grad():  # what the cache returns is what the encoder computes
        cached = policy.text_encoder(b["prompt_ids"], b["prompt_mask"])
        fresh = policy.text_encoder.proj(policy.text_encoder.features(b["prompt_ids"], b["prompt_mask"]))
        torch.testing.assert_close(cached, fresh, atol=0, rtol=0)
        inputs = {k: b[k] for k in ("pixel_values", "prompt_ids", "prompt_mask", "state")}
        kw = {"action_ids": b["action_ids"]} if decoding == "autoregressive" else {}
        ref = policy.forward(**inputs, **kw)
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    again = VLAPolicy.from_pretrained(tmp_path / "ckpt")
    assert again.cfg.text_encoder.pretrained is None and again.cfg.text_encoder.hf_config["hidden_size"] == 32
    with torch.no_grad():
        torch.testing.assert_close(again.forward(**inputs, **kw), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_policy_with_an_encoder_exports_to_onnx_with_parity(decoding, tmp_path):
    from deploy.export import export_onnx
    from tests.deploy.export.test_fusion_onnx import assert_onnx_matches_torch

    policy = make_policy(enc_cfg(decoding, "tokens"), instructions=INSTRUCTIONS).eval()
    with torch.no_grad():  # a trained map: distinct prompts give distinct LM inputs
        policy.text_encoder.proj.weight.normal_(0, 0.5)
    manifest = export_onnx(policy, io_of(policy), tmp_path / "x")
    obs = [make_obs(seed=s, instruction=INSTRUCTIONS[s % 3]) for s in range(4)]
    assert_onnx_matches_torch(policy, tmp_path / "x", manifest, obs, decoding)


def test_text_encoder_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"TextEncoderConfig.pooling='max'"):
        TextEncoderConfig(hf_config=TINY_BERT, pooling="max")
    with pytest.raises(ValueError, match=r"TextEncoderConfig.pretrained=None"):
        TextEncoderConfig()
    with pytest.raises(ValueError, match=r"VLAConfig.text.kind='embedded'"):
        debug_config(text_encoder=TextEncoderConfig(hf_config=TINY_BERT))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TextEncoder(TextEncoderConfig(pretrained="/nonexistent/encoder"), out_dim=8)


def test_tensorrt_builds_the_encoder_graph_with_the_text_encoder(tmp_path):
    """The TensorRT(-RTX) parser and builder take the encoder graph with BERT inside (prompt ids in, the
    prefix embeddings out), so a Jetson engine can run the instruction encoder too."""
    import json

    from deploy.export import export_onnx
    from deploy.export.tensorrt_build import EngineBuildConfig, build_engines
    from deploy.trt import import_tensorrt

    import_tensorrt()  # a required part of the deploy extra (tensorrt-rtx here): never skipped
    policy = make_policy(enc_cfg("parallel", "mean"), instructions=INSTRUCTIONS).eval()
    export_onnx(policy, io_of(policy), tmp_path / "onnx", max_batch=2)
    build_engines(tmp_path / "onnx", tmp_path / "engines", EngineBuildConfig(graphs=("encoder",)))
    prof = json.loads((tmp_path / "engines" / "manifest.json").read_text())["graphs"]["encoder"]["profile"]
    t = policy.cfg.text.prompt_len
    assert prof["prompt_ids"] == [[1, t], [1, t], [2, t]]
