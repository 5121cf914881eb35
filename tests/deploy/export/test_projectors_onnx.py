"""Every registered connector exports to ONNX with parity (ids identical, logits <= 1e-4) on observations
whose prompts differ in length, and the instruction-aware Q-Former's tokens depend on the instruction
where the resampler's do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.export import export_onnx
from deploy.runtimes.onnx import OnnxRuntime
from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare
from vla.model import PROJECTORS
from vla.model.decoding import decode_autoregressive

INSTRUCTIONS = ("pick up the red cube", "push the cube to the target", "stack the green cube on the blue cube")


@pytest.mark.parametrize("name", sorted(PROJECTORS) + ["resampler+no_key_pos", "qformer+no_key_pos"])
def test_every_projector_exports_with_parity(name, tmp_path):
    from vla.config import ProjectorConfig, debug_config

    cfg = debug_config(projector=name.split("+")[0], decoding="autoregressive")
    if name.endswith("+no_key_pos"):  # the queried connectors without patch positions on their keys
        cfg = cfg.replace(projector=ProjectorConfig(type=name.split("+")[0], num_queries=4, num_heads=2, key_pos_embed=False))
    policy = make_policy(cfg, instructions=INSTRUCTIONS).eval()
    export_onnx(policy, io_of(policy), tmp_path / "x")
    rt = OnnxRuntime(tmp_path / "x", providers=["CPUExecutionProvider"], threads=1)
    obs = [make_obs(seed=s, instruction=INSTRUCTIONS[s % 3]) for s in range(6)]
    ids, logits = rt.decode_ids(io_of(policy).inputs(obs), return_logits=True)
    inputs = prepare(policy, obs)
    with torch.no_grad():
        ref = decode_autoregressive(policy, inputs, use_cache=False)
        assert torch.equal(decode_autoregressive(policy, inputs, use_cache=True), ref)  # KV == no cache
        prefix, valid = policy.embed_prefix(inputs["pixel_values"], inputs["prompt_ids"], inputs["prompt_mask"],
                                            inputs.get("state"))
        enc = rt.encode(io_of(policy).inputs(obs))
    assert np.array_equal(ids, ref.numpy())
    np.testing.assert_allclose(enc[0], prefix.numpy(), atol=1e-4, rtol=0)
    assert np.isfinite(logits).all()


def test_qformer_tokens_read_the_instruction_and_the_resampler_tokens_do_not():
    for name, reads in (("qformer", True), ("resampler", False)):
        policy = make_policy(projector=name, instructions=INSTRUCTIONS).eval()
        a, b = make_obs(0, INSTRUCTIONS[0]), make_obs(0, INSTRUCTIONS[2])  # same image, another instruction
        with torch.no_grad():
            va = policy.forward(**{k: v for k, v in prepare(policy, [a]).items()
                                   if k in ("pixel_values", "prompt_ids", "prompt_mask", "state")},
                                mode="parallel", return_visual=True)[1]
            vb = policy.forward(**{k: v for k, v in prepare(policy, [b]).items()
                                   if k in ("pixel_values", "prompt_ids", "prompt_mask", "state")},
                                mode="parallel", return_visual=True)[1]
        assert (not torch.allclose(va, vb, atol=1e-6)) == reads, name
