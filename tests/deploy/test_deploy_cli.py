"""CLI modules: parsers, keygen, and `vla control` against a bridge (exit codes, clear errors)."""

from __future__ import annotations

import argparse

import pytest

from deploy.robot import KinematicRobot


def _parse(argv):
    from vla.cli import bridge, control, teleop

    p = argparse.ArgumentParser(prog="vla")
    sub = p.add_subparsers(dest="command")
    for m in (bridge, control, teleop):
        m.register(sub)
    return p.parse_args(argv)


def test_parsers():
    a = _parse(["bridge", "--task", "PickCube", "--lockstep", "--record", "d", "--curve-keys", "k"])
    assert (a.task, a.lockstep, a.record, a.curve_keys, a.bind) == ("PickCube", True, "d", "k", "tcp://127.0.0.1:5555")
    a = _parse(["control", "--expert", "PickCube", "--connect", "tcp://h:1", "--hz", "10", "--chunk-mode", "ensemble"])
    assert (a.expert, a.hz, a.chunk_mode) == ("PickCube", 10.0, "ensemble")
    assert _parse(["teleop", "--connect", "tcp://h:1"]).func.__name__ == "teleop_cmd"
    with pytest.raises(SystemExit):
        _parse(["control", "--connect", "tcp://h:1"])  # needs --checkpoint or --expert


def test_keygen_cmd(tmp_path):
    a = _parse(["bridge", "keygen", "--out", str(tmp_path / "k")])
    assert a.func(a) == 0
    assert (tmp_path / "k" / "server.key_secret").is_file()
    assert (tmp_path / "k" / "authorized_clients" / "client.key").is_file()
    with pytest.raises(FileExistsError):
        a.func(a)


def test_bridge_cmd_needs_one_robot():
    a = _parse(["bridge"])
    with pytest.raises(ValueError, match="exactly one"):
        a.func(a)


def test_control_cmd_unreachable_bridge_exits_1(capsys):
    a = _parse(["control", "--expert", "PickCube", "--connect", "tcp://127.0.0.1:1", "--timeout", "0.2"])
    assert a.func(a) == 1
    err = capsys.readouterr().err
    assert "vla control: error:" in err and "tcp://127.0.0.1:1" in err


def test_control_cmd_expert_task_mismatch(make_bridge):
    server = make_bridge(robot=KinematicRobot(image_size=16))
    a = _parse(["control", "--expert", "PickCube", "--connect", server.endpoint])
    with pytest.raises(ValueError, match="KinematicRobot"):
        a.func(a)


def test_control_cmd_expert_end_to_end(make_bridge, tmp_path, capsys):
    from deploy.robot import SimRobot

    server = make_bridge(robot=SimRobot("ReachCube"), lockstep=True)
    out = tmp_path / "report.json"
    a = _parse(["control", "--expert", "ReachCube", "--connect", server.endpoint, "--hz", "200", "--episodes", "2",
                "--seed", "0", "--out", str(out)])
    assert a.func(a) == 0
    import json

    rep = json.loads(out.read_text())
    assert {k: rep["summary"][k] for k in ("episodes", "success_rate")} == {"episodes": 2, "success_rate": 1.0}
    assert rep["summary"]["inference_ms_p50"] > 0  # the measured latency of the policy
    assert all(e["inference_ms"]["n"] == e["counts"]["plans"] for e in rep["episodes"])


def test_control_reports_a_bad_checkpoint_before_touching_the_network(tmp_path, capsys):
    """`vla control --runtime onnx --checkpoint DIR` with a DIR that is no export names the directory, instead of
    waiting for (and blaming) a bridge that is not there."""
    from vla.cli import main

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"")  # a torch checkpoint, not an export
    rc = main(["control", "--runtime", "onnx", "--checkpoint", str(tmp_path / "ckpt"),
               "--connect", "tcp://127.0.0.1:9", "--timeout", "30"])
    err = capsys.readouterr().err
    assert rc == 2 and "not an export directory" in err and "--runtime torch" in err
    assert "bridge" not in err
