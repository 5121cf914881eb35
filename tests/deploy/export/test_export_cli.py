"""`vla export onnx|tensorrt` handlers and `make_runtime` (the `--runtime` option of `vla control`)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from tests.vla.model.conftest import io_of, make_obs, make_policy, runtime


def _parse(argv: list[str]) -> argparse.Namespace:
    from vla.cli import export

    parser = argparse.ArgumentParser(prog="vla")
    export.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_export_onnx_cli_then_runtime_by_name(tmp_path, capsys):
    from deploy.runtimes import make_runtime

    policy = make_policy(projector="linear", decoding="autoregressive", horizon=1).eval()
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    args = _parse(["export", "onnx", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "onnx"),
                   "--max-batch", "2"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["graphs"]["decode_step"]["inputs"]["write_index"] == [1]
    rt = make_runtime("onnx", tmp_path / "onnx")
    obs = make_obs(3)
    np.testing.assert_allclose(rt.predict_action(obs), runtime(policy).predict_action(obs), rtol=0, atol=1e-6)
    par = make_runtime("onnx", tmp_path / "onnx", mode="parallel")
    np.testing.assert_allclose(par.predict_action(obs), runtime(policy, "parallel").predict_action(obs),
                               rtol=0, atol=1e-6)
    torch_rt = make_runtime("torch", tmp_path / "ckpt")  # the same factory serves every backend
    np.testing.assert_array_equal(torch_rt.predict_action(obs), runtime(policy).predict_action(obs))
    from vla.evaluation import ChunkedPolicy  # what `vla eval --runtime onnx` would wrap

    assert ChunkedPolicy(rt)(obs).shape == (7,)
    assert rt.execute_steps == policy.cfg.action.execute_steps  # `vla control`'s default re-planning


def test_make_runtime_rejects_unknown_kind(tmp_path):
    from deploy.runtimes import make_runtime

    with pytest.raises(ValueError, match="available"):
        make_runtime("tflite", tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        make_runtime("onnx", tmp_path / "missing")
    with pytest.raises(ValueError, match="not cpu"):  # TensorRT never silently runs elsewhere than asked
        make_runtime("tensorrt", tmp_path, device="cpu")
    with pytest.raises(ValueError, match="device="):
        make_runtime("torch", tmp_path, device="gpu0")
    (tmp_path / "model.safetensors").write_bytes(b"")  # a checkpoint given to --runtime onnx
    with pytest.raises(FileNotFoundError, match="policy checkpoint: use --runtime torch"):
        make_runtime("onnx", tmp_path)


def test_control_cli_has_runtime_option():
    from vla.cli import control

    parser = argparse.ArgumentParser(prog="vla")
    control.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["control", "--checkpoint", "x", "--runtime", "onnx"])
    assert args.runtime == "onnx"
    with pytest.raises(SystemExit):
        parser.parse_args(["control", "--checkpoint", "x", "--runtime", "tflite"])
