"""ONNX export + ONNX Runtime parity against the torch policy (tiny configs, CPU, ~30 s)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import io_of, make_obs, make_policy, prepare, runtime
from vla.config import VLAConfig

INSTRUCTIONS = ("pick up the red cube", "push the block onto the goal, then stop", "lift", "stack the cubes")
# (projector, the policy's configured decoding): both graphs are checked on each export. "default" is the
# shipped embedded default itself, VLAConfig() (CoordConv ResNet at 64 px, FiLM-conditioned, position-embedded
# image tokens, the aux pointer head, parallel decoding of 4-step chunks).
CASES = [("mlp", "autoregressive"), ("resampler", "parallel"), ("default", "parallel")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{p}-{m}" for p, m in CASES])
def exported(request, tmp_path_factory):
    import deploy.export.onnx_export as ox

    projector, mode = request.param
    if projector == "default":
        assert VLAConfig().action.decoding == mode
        policy = make_policy(VLAConfig(), instructions=INSTRUCTIONS).eval()
        with torch.no_grad():  # zero-initialised FiLM is the identity: give it weights that do something
            policy.film.proj.weight.normal_(0.0, 0.5)
    else:
        policy = make_policy(projector=projector, decoding=mode).eval()
    out = tmp_path_factory.mktemp(f"export-{projector}") / "export"
    mp = pytest.MonkeyPatch()
    if projector == "resampler":  # exercise external weight files on one export
        mp.setattr(ox, "EXTERNAL_DATA_THRESHOLD", 0)
    try:
        ox.export_onnx(policy, io_of(policy), out)
    finally:
        mp.undo()
    return policy, out


def _observations(n: int) -> list[dict]:
    return [make_obs(seed=s, instruction=INSTRUCTIONS[s % len(INSTRUCTIONS)]) for s in range(n)]


@pytest.mark.parametrize("mode", ["autoregressive", "parallel"])
def test_ort_matches_torch_on_100_observations(exported, mode):
    from deploy.runtimes.onnx import OnnxRuntime
    from vla.model.decoding import decode_autoregressive, decode_parallel

    policy, out = exported
    rt = OnnxRuntime(out, mode=mode, providers=["CPUExecutionProvider"], threads=1)
    obs = _observations(100)  # prompts of different lengths: padding in play
    inputs = prepare(policy, obs)
    ids, logits = rt.decode_ids(io_of(policy).inputs(obs), return_logits=True)  # [100, n], [100, n, A]
    with torch.no_grad():
        if mode == "parallel":
            ref_ids = decode_parallel(policy, inputs)
            ref = policy.forward(**inputs, mode="parallel")
        else:
            ref_ids = decode_autoregressive(policy, inputs, use_cache=True)
            ref = policy.forward(**inputs, action_ids=ref_ids, mode="autoregressive")  # the logits each step saw
    ref = policy.restrict(ref)[..., policy.vocab_size - policy.cfg.action.num_reserved_ids:].numpy()
    assert ids.shape == (100, policy.num_action_tokens)
    np.testing.assert_array_equal(ids, ref_ids.numpy())
    assert logits.shape == ref.shape
    assert float(np.abs(logits - ref).max()) <= 1e-4


def test_predict_action_equals_policy(exported):
    from deploy.runtimes.onnx import OnnxRuntime

    policy, out = exported
    rt = OnnxRuntime(out, threads=1)  # the policy's own decoding mode, batch 1 as the control loop runs it
    for obs in _observations(4):
        chunk = rt.predict_action(obs)
        assert chunk.shape == (policy.cfg.action.horizon, 7) and chunk.dtype == np.float32
        np.testing.assert_allclose(chunk, runtime(policy).predict_action(obs), rtol=0, atol=1e-6)
    assert set(rt.last_timings) == {"prepare_ms", "encoder_ms", "decode_ms", "postprocess_ms"}


def test_export_leaves_the_policy_untouched(tmp_path):
    """Exporting must not change the torch policy: the default's BatchNorm running statistics once moved when the
    exporter restored its graph wrappers' training mode (then torch and the exported graph disagreed)."""
    from deploy.export import export_onnx

    policy = make_policy(VLAConfig(), instructions=INSTRUCTIONS).eval()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    export_onnx(policy, io_of(policy), tmp_path / "x")
    assert not policy.training and not any(m.training for m in policy.modules())
    after = policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_manifest_describes_graphs_without_checkpoint(exported):
    policy, out = exported
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["graphs"]) == {"encoder", "parallel", "prefill", "decode_step"}
    assert m["opset"] <= 19 and m["decoding"] == policy.cfg.action.decoding
    seq = m["sequence"]
    assert seq["cache_capacity"] == seq["prefix_len"] + seq["action_tokens"]
    step = {i["name"]: i for i in m["graphs"]["decode_step"]["inputs"]}
    assert step["cache_k"]["shape"][1] == "batch" and step["cache_k"]["shape"][3] == seq["cache_capacity"]
    assert step["kv_mask"]["dtype"] == "bool" and step["write_index"]["shape"] == [1]
    par = {o["name"]: o for o in m["graphs"]["parallel"]["outputs"]}
    assert par["action_logits"]["shape"] == ["batch", seq["action_tokens"], seq["action_id_count"]]
    assert not (out / "policy" / "model.safetensors").exists()  # the runtime needs no weights but the graphs
    assert {"tokenizer.json", "config.json", "norm_stats.json"} <= {p.name for p in (out / "policy").iterdir()}
    if policy.cfg.projector.type == "resampler":
        assert all((out / g["external_data"]).is_file() for g in m["graphs"].values())


def test_graphs_pass_tensorrt_10_3_check(exported):
    from deploy.export import check_export_dir

    _, out = exported
    used = check_export_dir(out)
    for ops in used.values():
        assert "If" not in ops and "Attention" not in ops
    assert "Softmax" in used["parallel"] and "MatMul" in used["decode_step"]


def test_opcheck_rejects_if_contrib_and_new_opsets():
    from onnx import TensorProto, helper

    from deploy.export.opcheck import check_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 0])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 0])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "b", [], [y])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
             helper.make_node("FusedMatMul", ["x", "x"], ["z"], domain="com.microsoft"),
             helper.make_node("Attention", ["x", "x", "x"], ["w"])]
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    model = helper.make_model(helper.make_graph(nodes, "g", [x, c], [y]),
                              opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)])
    problems = "\n".join(check_model(model))
    for needle in ("opset 23", "com.microsoft", "control-flow If", "op Attention", "zero-length"):
        assert needle in problems


def test_runtime_refuses_bad_mode_and_missing_dir(exported, tmp_path):
    from deploy.runtimes.onnx import OnnxRuntime

    _, out = exported
    with pytest.raises(ValueError, match="mode"):
        OnnxRuntime(out, mode="beam")
    with pytest.raises(ValueError, match="providers"):
        OnnxRuntime(out, providers=["NoSuchExecutionProvider"])
    with pytest.raises(FileNotFoundError, match="vla export onnx"):
        OnnxRuntime(tmp_path)


def test_fast_tokens_export_autoregressive_only(tmp_path):
    from deploy.export import export_onnx
    from deploy.runtimes.onnx import OnnxRuntime
    from vla.model.decoding import decode_autoregressive

    policy = make_policy(tokenizer="fast", horizon=4).eval()
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 4)[None, :, None]
    policy.action_tokenizer.fit(np.clip(rng.uniform(-0.5, 0.5, (64, 1, 7)) * t + rng.uniform(-0.3, 0.3, (64, 1, 7)),
                                        -1, 1))
    m = export_onnx(policy, io_of(policy), tmp_path / "fast")
    assert "parallel" not in m["graphs"] and m["sequence"]["eos_id"] == policy.eos_id
    rt = OnnxRuntime(tmp_path / "fast", threads=1)
    obs = _observations(20)
    with torch.no_grad():
        ref = decode_autoregressive(policy, prepare(policy, obs))
    np.testing.assert_array_equal(rt.decode_ids(io_of(policy).inputs(obs)), ref.numpy())
    one = make_obs(5)
    np.testing.assert_allclose(rt.predict_action(one), runtime(policy).predict_action(one), rtol=0, atol=1e-6)  # NaN == NaN
    with pytest.raises(ValueError, match="no parallel graph"):
        OnnxRuntime(tmp_path / "fast", mode="parallel")


def test_bench_runtimes_reports_every_runtime(exported):
    from deploy.bench import bench_runtimes

    policy, out = exported
    r = bench_runtimes(policy, io_of(policy), out, make_obs(0), iters=2, warmup=0, ort_threads=1)
    assert {"hf_generate", "torch_kv_cache", "ort_autoregressive", "ort_parallel"} <= set(r["runtimes"])
    assert set(r["speedup_vs_generate"]) == set(r["runtimes"]) - {"hf_generate"}
    assert all(v["per_action_ms_p99"] >= v["per_action_ms_p50"] > 0 for v in r["runtimes"].values())
