"""TensorRT engine build (CPU-only with tensorrt-rtx), engine manifest, compatibility refusal; execution on GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.vla.model.conftest import io_of, make_obs, make_policy


def _trt_or_skip():
    """The TensorRT builder is a required part of the `deploy` extra (tensorrt-rtx here): never skipped."""
    from deploy.trt import import_tensorrt

    return import_tensorrt()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    from deploy.export import export_onnx

    out = tmp_path_factory.mktemp("trt") / "onnx"
    policy = make_policy(projector="pixel_shuffle", decoding="parallel").eval()
    export_onnx(policy, io_of(policy), out, max_batch=4)
    return out


@pytest.fixture(scope="module")
def engine_dir(onnx_dir):
    _trt_or_skip()
    from deploy.export.tensorrt_build import build_engines

    out = onnx_dir.parent / "engines"
    build_engines(onnx_dir, out)
    return out


def test_builds_every_engine_with_manifest_and_trtexec(engine_dir, onnx_dir):
    trt, flavor = _trt_or_skip()
    m = json.loads((engine_dir / "manifest.json").read_text())
    assert set(m["graphs"]) == {"encoder", "parallel", "prefill", "decode_step"}
    for g in m["graphs"].values():
        assert (engine_dir / g["engine"]).stat().st_size > 0
    assert m["tensorrt"]["flavor"] == flavor and m["tensorrt"]["version"] == trt.__version__
    assert m["tensorrt"]["precision"] == "fp32" and m["tensorrt"]["gpu"]
    prof = m["graphs"]["decode_step"]["profile"]
    assert prof["cache_k"][0][1] == 1 and prof["cache_k"][2][1] == 4  # batch axis of the cache: min 1, max 4
    assert prof["write_index"] == [[1], [1], [1]]
    script = (engine_dir / "trtexec.sh").read_text()
    assert script.count("trtexec --onnx=") == 4 and "--maxShapes=prefix_embeds:4x" in script
    assert (engine_dir / "policy" / "norm_stats.json").is_file()  # the transforms travel with the engines


def test_rtx_refuses_weakly_typed_precisions(onnx_dir, tmp_path):
    _, flavor = _trt_or_skip()
    from deploy.export.tensorrt_build import EngineBuildConfig, build_engines

    if flavor != "tensorrt_rtx":
        pytest.skip("fp16 is a plain builder flag on tensorrt; only tensorrt_rtx refuses it")
    with pytest.raises(ValueError, match="strongly typed"):
        build_engines(onnx_dir, tmp_path / "e", EngineBuildConfig(precision="fp16"))


def test_rtx_builds_fp16_engines_from_an_fp16_export(tmp_path):
    """TensorRT-RTX is strongly typed: an fp16 export is what makes its engines fp16."""
    trt, flavor = _trt_or_skip()
    import torch

    from deploy.export import export_onnx
    from deploy.export.tensorrt_build import build_engines

    policy = make_policy(projector="pixel_shuffle", decoding="parallel").eval()
    io = io_of(policy)
    export_onnx(policy.to(torch.float16), io, tmp_path / "onnx16", max_batch=2)
    m = build_engines(tmp_path / "onnx16", tmp_path / "e16")
    assert m["tensorrt"]["graph_dtype"] == "fp16" and m["dtype"] == "fp16"
    assert all((tmp_path / "e16" / g["engine"]).stat().st_size > 0 for g in m["graphs"].values())


def test_build_config_validation():
    from deploy.export.tensorrt_build import EngineBuildConfig

    with pytest.raises(ValueError, match="precision"):
        EngineBuildConfig(precision="bf8")
    with pytest.raises(ValueError, match="workspace_mb"):
        EngineBuildConfig(workspace_mb=1)


def test_int8_needs_calibration_feeds_from_the_caller(onnx_dir, tmp_path):
    """The builder never runs a runtime: int8 without feeds is refused (on a GPU-less box: first for the GPU)."""
    from deploy.export.tensorrt_build import EngineBuildConfig, build_engines
    from deploy.trt import gpu_description

    _, flavor = _trt_or_skip()
    want = "strongly typed" if flavor == "tensorrt_rtx" else ("needs a GPU|none is present" if gpu_description() == "none"
                                                            else "calibration feeds")
    with pytest.raises(ValueError, match=want):
        build_engines(onnx_dir, tmp_path / "e", EngineBuildConfig(precision="int8"))


def test_mismatched_engines_are_refused_with_reason():
    from deploy.runtimes.tensorrt import check_engine_compatible

    m = {"tensorrt": {"flavor": "tensorrt", "version": "10.3.0", "gpu": "Orin (sm_87)"}}
    check_engine_compatible(m, "tensorrt", "10.3.0", "Orin (sm_87)")
    with pytest.raises(ValueError, match="do not port across TensorRT versions"):
        check_engine_compatible(m, "tensorrt", "10.7.0", "Orin (sm_87)")
    with pytest.raises(ValueError, match="do not port across GPUs"):
        check_engine_compatible(m, "tensorrt", "10.3.0", "NVIDIA GeForce RTX 4090 (sm_89)")
    with pytest.raises(ValueError, match="not engines"):
        check_engine_compatible({}, "tensorrt", "10.3.0", "Orin (sm_87)")


def test_calibration_feeds_match_graph_inputs(onnx_dir):
    from deploy.runtimes.calibration import calibration_feeds
    from deploy.runtimes.onnx import OnnxRuntime

    feeds = calibration_feeds(OnnxRuntime(onnx_dir, providers=["CPUExecutionProvider"]), [make_obs(0), make_obs(1)])
    m = json.loads((onnx_dir / "manifest.json").read_text())
    for graph, batches in feeds.items():
        assert len(batches) == 2
        for spec in m["graphs"][graph]["inputs"]:
            shape = [1 if d == "batch" else d for d in spec["shape"]]
            assert list(batches[0][spec["name"]].shape) == shape, (graph, spec["name"])


@pytest.mark.gpu
def test_tensorrt_runtime_matches_onnx_runtime(engine_dir, onnx_dir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: TensorRT engines need one to execute")
    from deploy.runtimes.onnx import OnnxRuntime
    from deploy.runtimes.tensorrt import TensorRTRuntime

    for mode in ("parallel", "autoregressive"):
        trt_rt, ort_rt = TensorRTRuntime(engine_dir, mode=mode), OnnxRuntime(onnx_dir, mode=mode)
        for s in range(20):
            inputs = ort_rt.io.inputs([make_obs(s)])
            a_ids, a_logits = trt_rt.decode_ids(inputs, return_logits=True)
            b_ids, b_logits = ort_rt.decode_ids(inputs, return_logits=True)
            np.testing.assert_array_equal(a_ids, b_ids)
            assert float(np.abs(a_logits - b_logits).max()) <= 1e-3  # TF32 / tactic differences
        assert any(k.startswith("trt_") for k in trt_rt.last_timings)


def test_export_tensorrt_cli_prints_trtexec(onnx_dir, tmp_path, capsys):
    _, flavor = _trt_or_skip()
    import argparse

    from vla.cli import export

    parser = argparse.ArgumentParser(prog="vla")
    export.register(parser.add_subparsers(dest="command"))
    argv = ["export", "tensorrt", "--onnx", str(onnx_dir), "--out", str(tmp_path / "e"), "--graphs", "encoder"]
    if flavor == "tensorrt_rtx":
        argv += ["--compute-capability", "SM89"]  # target an RTX 40xx from this GPU-less machine
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "trtexec --onnx=encoder.onnx --saveEngine=encoder.engine" in out
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert set(m["graphs"]) == {"encoder"} and (tmp_path / "e" / "encoder.engine").is_file()


@pytest.mark.parametrize("mode,text_guided", [("cross_attention", False), ("late", False), ("early", True)])
def test_fusion_mode_graphs_build_engines_and_calibrate(mode, text_guided, tmp_path):
    """The TensorRT(-RTX) parser and builder take every fusion mode's graphs (a stronger check than the op
    list), the engine profiles cover the fusion context inputs (vis_k / vis_v: batch on axis 1), and INT8
    calibration feeds carry the context the decoder graphs take."""
    from deploy.export import export_onnx
    from deploy.export.tensorrt_build import build_engines
    from deploy.runtimes.calibration import calibration_feeds
    from deploy.runtimes.onnx import OnnxRuntime
    from tests.vla.model.test_fusion import fusion_cfg

    _trt_or_skip()
    policy = make_policy(fusion_cfg(mode, text_guided, "parallel")).eval()
    export_onnx(policy, io_of(policy), tmp_path / "onnx", max_batch=4)
    build_engines(tmp_path / "onnx", tmp_path / "engines")
    m = json.loads((tmp_path / "engines" / "manifest.json").read_text())
    assert set(m["graphs"]) == {"encoder", "parallel", "prefill", "decode_step"}
    onnx_m = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    for name in onnx_m["sequence"]["context"]:
        prof = m["graphs"]["decode_step"]["profile"][name]
        axis = 1 if name.startswith("vis_") else 0
        assert (prof[0][axis], prof[2][axis]) == (1, 4), name
    feeds = calibration_feeds(OnnxRuntime(tmp_path / "onnx", providers=["CPUExecutionProvider"]), [make_obs(0)])
    for graph, batches in feeds.items():
        assert {i["name"] for i in onnx_m["graphs"][graph]["inputs"]} == set(batches[0]), graph
