"""A converted OpenVLA checkpoint (synthetic weights in OpenVLA's format) through the deploy path: ONNX
export (TensorRT 10.3 op check included) equal to torch, and served by `vla control` over the bridge with
a MuJoCo task, meeting its deadlines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.bridge import BridgeClient
from deploy.control import ControlConfig, ControlLoop
from deploy.export import export_onnx
from deploy.robot import SimRobot
from deploy.runtimes import make_runtime
from deploy.runtimes.onnx import OnnxRuntime
from vla.convert.openvla import convert_openvla
from vla.convert.synthetic import make_synthetic_openvla
from vla.model.decoding import decode_autoregressive, to_tensors
from vla.model.policy import VLAPolicy
from vla.model.sequence import position_ids
from vla.policy_io import PolicyIO


@pytest.fixture(scope="module", params=["fused", "single-letterbox"])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp(request.param)
    fused = request.param == "fused"
    src = make_synthetic_openvla(d / "src", fused=fused, resize="resize-naive" if fused else "letterbox",
                                 unnorm_keys=("bridge_orig",), seed=1)
    ckpt = d / "ckpt"
    convert_openvla(src, ckpt, dtype="fp32", restrict_logits=not fused)  # one of each decoding range
    out = d / "onnx"
    export_onnx(VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt), out)
    return ckpt, out


def test_onnx_runtime_matches_torch_ids_and_logits(exported):
    ckpt, out = exported
    policy, io = VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt)
    ort = make_runtime("onnx", out)
    assert ort.manifest["sequence"]["score_id_count"] == (256 if io.cfg.action.restrict_logits else 32064)
    rng = np.random.default_rng(0)
    seqs = set()
    for i, text in enumerate(("Pick up the RED block", "put the spoon on the towel", "move the cube left")):
        obs = [{"agentview": rng.integers(0, 256, (180 + 20 * i, 240, 3), dtype=np.uint8), "instruction": text}
               for _ in range(2)]  # batch 2: OpenVLA's own code refuses batches
        feeds = io.inputs(obs)
        ids, logits = ort.decode_ids(feeds, return_logits=True)
        t = to_tensors(feeds)
        ref = decode_autoregressive(policy, t, use_cache=False).numpy()
        assert np.array_equal(ids, ref)
        # the torch logits of slot 0 over the same id range
        prefix, valid = policy.embed_prefix(t["pixel_values"], t["prompt_ids"], t["prompt_mask"])
        with torch.no_grad():
            mask = policy.lm_mask(policy.sequence_mask(valid, prefix.shape[1]), prefix.dtype)
            out0 = policy.lm(inputs_embeds=prefix, attention_mask=mask, position_ids=position_ids(valid),
                             use_cache=False).logits[:, -1].float()
        lo, hi = policy.score_range
        np.testing.assert_allclose(logits[:, 0], out0[:, lo:hi].numpy(), atol=1e-4, rtol=0)
        seqs.update(tuple(r) for r in ids.tolist())
    assert len(seqs) >= 2  # the inputs matter


def test_served_over_the_bridge_with_a_sim_task_meets_deadlines(exported, make_bridge):
    ckpt, out = exported
    rt = make_runtime("onnx", out)
    t = rt.infer({"agentview": np.zeros((224, 224, 3), np.uint8), "instruction": "reach the cube"})  # warm
    assert t.actions.shape == (1, 7)
    server = make_bridge(robot=SimRobot("ReachCube", seed=0, image_size=224), lockstep=False)
    with BridgeClient(server.endpoint, timeout_s=5.0) as c:
        c.hello()
        loop = ControlLoop(c, rt, ControlConfig(hz=5, max_steps=8, max_latency_s=0.5))
        rep = loop.run_episode(seed=0)
        stats = c.stats()
    assert rep.steps == 8 and rep.counts.get("plans", 0) >= 1
    # every action the bridge took arrived in time: none executed after its deadline, none rejected
    assert stats.get("act.old", 0) == 0 and stats.get("act.rejected", 0) == 0
    if rt.io.cfg.action.restrict_logits:  # valid chunks: the random policy's actions are executed (clamped)
        assert stats["executed"] >= 1


def test_io_binding_keeps_the_kv_cache_off_the_host_and_decodes_alike(exported):
    """The CPU-visible half of the device-resident cache (on CUDA the handles live on the GPU): with IO
    binding every decode step gets the previous step's cache as an OrtValue, never as numpy, and the ids and
    logits equal the plain numpy path."""
    import onnxruntime as ort

    ckpt, out = exported
    plain = make_runtime("onnx", out)
    bound = OnnxRuntime(out, providers=["CPUExecutionProvider"], device_cache=True)
    seen: list[type] = []
    run_device = bound.run_device

    def spy(graph, feeds, keep=()):
        if graph == "decode_step":
            seen.extend(type(feeds[k]) for k in ("cache_k", "cache_v"))
        return run_device(graph, feeds, keep)

    bound.run_device = spy
    feeds = plain.io.inputs([{"agentview": np.full((224, 224, 3), 90, np.uint8), "instruction": "open the drawer"}])
    a_ids, a_logits = plain.decode_ids(feeds, return_logits=True)
    b_ids, b_logits = bound.decode_ids(feeds, return_logits=True)
    assert np.array_equal(a_ids, b_ids) and np.array_equal(a_logits, b_logits)
    assert len(seen) == 2 * (a_ids.shape[1] - 1) and all(t is ort.OrtValue for t in seen)
