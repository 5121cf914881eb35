"""Every fusion mode (and text-guided encoding) exports to ONNX with parity: ids identical to the torch KV
loop and the parallel pass, logits <= 1e-4, on observations whose prompts differ in length; the graphs pass
the TensorRT 10.3 op check (export_onnx refuses otherwise); the cross-attention keys / values of the visual
tokens are computed once per observation (in the encoder graph), never inside the per-token decode step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.export import export_onnx
from deploy.export.opcheck import check_model
from deploy.runtimes.onnx import OnnxRuntime
from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare
from tests.vla.model.test_fusion import VARIANTS, fusion_cfg, open_gates
from vla.model.decoding import decode_autoregressive

INSTRUCTIONS = ("lift", "push the red cube onto the green target please", "stack the green cube on the blue cube")


def assert_onnx_matches_torch(policy, directory, manifest, obs, decoding) -> None:
    """ONNX Runtime on the export in `directory` against torch on `obs`: ids identical (the torch KV loop
    equal to no-cache for autoregressive), logits <= 1e-4; every graph passes the TensorRT 10.3 op check."""
    import onnx

    rt = OnnxRuntime(directory, providers=["CPUExecutionProvider"], threads=1)
    ids, logits = rt.decode_ids(io_of(policy).inputs(obs), return_logits=True)
    inputs = {k: v for k, v in prepare(policy, obs).items() if k in ("pixel_values", "prompt_ids", "prompt_mask", "state")}
    with torch.no_grad():
        if decoding == "parallel":
            ref_logits = policy.forward(**inputs, mode="parallel")
            ref = policy.restrict(ref_logits).argmax(-1)
        else:
            ref = decode_autoregressive(policy, inputs, use_cache=True)
            assert torch.equal(ref, decode_autoregressive(policy, inputs, use_cache=False))
            ref_logits = policy.forward(**inputs, action_ids=ref.clone(), mode="autoregressive")
    lo, hi = policy.action_block
    assert np.array_equal(ids, ref.numpy())
    np.testing.assert_allclose(logits, ref_logits[..., lo:hi].float().numpy(), atol=1e-4, rtol=0)
    for name, entry in manifest["graphs"].items():
        assert check_model(onnx.load(str(Path(directory) / entry["file"])), name) == []


@pytest.mark.parametrize("mode,text_guided", VARIANTS)
@pytest.mark.parametrize("decoding", ["autoregressive", "parallel"])
def test_every_fusion_mode_exports_with_parity(mode, text_guided, decoding, tmp_path):
    import onnx

    policy = make_policy(fusion_cfg(mode, text_guided, decoding), instructions=INSTRUCTIONS).eval()
    open_gates(policy)
    manifest = export_onnx(policy, io_of(policy), tmp_path / "x")
    assert manifest["sequence"]["fusion"] == mode and manifest["sequence"]["text_guided"] == text_guided
    obs = [make_obs(seed=s, instruction=INSTRUCTIONS[s % 3]) for s in range(4)]
    assert_onnx_matches_torch(policy, tmp_path / "x", manifest, obs, decoding)
    decoder_inputs = {i["name"] for i in manifest["graphs"]["decode_step"]["inputs"]}
    assert decoder_inputs >= set(manifest["sequence"]["context"])
    if mode == "cross_attention":
        assert manifest["sequence"]["context"] == ["vis_k", "vis_v"]
        step = onnx.load(str(tmp_path / "x" / "decode_step.onnx"))
        enc = onnx.load(str(tmp_path / "x" / "encoder.onnx"))
        # each block has three LayerNorms: the query side's and the FFN's run per token, the visual side's
        # (kv_norm, before the key / value projections) only in the encoder: the step never recomputes them
        blocks = len(policy.fusion.blocks)
        def layer_norms(m):
            return sum(n.op_type == "LayerNormalization" for n in m.graph.node)
        assert layer_norms(step) == 2 * blocks
        assert layer_norms(enc) == blocks + layer_norms_of_tower(policy)


def layer_norms_of_tower(policy) -> int:
    return sum(isinstance(m, torch.nn.LayerNorm) for m in policy.vision.modules())


def test_cross_attention_behind_a_perceiver_resampler_exports_with_parity(tmp_path):
    """Flamingo's layout: a resampler compresses the patches to K queries, which the gated blocks read."""
    cfg = fusion_cfg("cross_attention", False, "autoregressive", every=2)
    cfg = cfg.replace(projector=type(cfg.projector)(type="resampler", num_queries=3, num_heads=2))
    policy = make_policy(cfg, instructions=INSTRUCTIONS).eval()
    open_gates(policy)
    export_onnx(policy, io_of(policy), tmp_path / "x")
    rt = OnnxRuntime(tmp_path / "x", providers=["CPUExecutionProvider"], threads=1)
    obs = [make_obs(seed=s, instruction=INSTRUCTIONS[s % 3]) for s in range(3)]
    ids = rt.decode_ids(io_of(policy).inputs(obs))
    with torch.no_grad():
        ref = decode_autoregressive(policy, prepare(policy, obs))
    assert np.array_equal(ids, ref.numpy())
    assert rt.manifest["graphs"]["prefill"]["inputs"][2]["shape"] == [2, "batch", 2, 2 * 3, 16]  # [blocks (layers 0, 2), B, H, C*K, hd]
