"""scripts/bench_transport.py without openpi-client: the openpi baseline is skipped up front (one message, the
JSON says why) and the other baselines still run, instead of a 120 s wait on a server child that died."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_transport.py"

# a sitecustomize that makes openpi_client unimportable in the process and in every child it spawns
BLOCKER = textwrap.dedent(
    """
    import sys

    class _BlockOpenpi:
        def find_spec(self, name, path=None, target=None):
            if name == "openpi_client" or name.startswith("openpi_client."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _BlockOpenpi())
    """
)


@pytest.fixture
def blocked_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    check = subprocess.run([sys.executable, "-c", "import openpi_client"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "openpi_client" in check.stderr  # the blocker works
    return env


def _run(argv, env, cwd, timeout):
    """subprocess.run, but on a timeout the whole process group goes (the script's spawned servers too)."""
    with subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_transport_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_openpi_missing_names_the_package_and_the_install(monkeypatch):
    mod = _load_script()
    monkeypatch.setitem(sys.modules, "openpi_client", None)  # import openpi_client -> ImportError
    for name in [m for m in sys.modules if m.startswith("openpi_client.")]:
        monkeypatch.delitem(sys.modules, name)
    why = mod.openpi_missing()
    assert why is not None
    assert "openpi-client" in why and "pip install --no-deps openpi-client" in why


def test_without_openpi_the_baseline_is_skipped_and_the_rest_runs(blocked_env, tmp_path):
    out = tmp_path / "transport.json"
    argv = [sys.executable, str(SCRIPT), "--out", str(out), "--iters", "1", "--rounds", "1", "--warmup", "0",
            "--jitter-s", "0"]
    t0 = time.monotonic()
    proc = _run(argv, blocked_env, tmp_path, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 30, elapsed  # was: 120 s waiting on the dead server child, then a traceback
    assert "Traceback" not in proc.stderr, proc.stderr
    skip_lines = [line for line in proc.stderr.splitlines() if "openpi" in line]
    assert len(skip_lines) == 1, proc.stderr
    assert "skipping the openpi baseline" in skip_lines[0]
    assert "pip install --no-deps openpi-client" in skip_lines[0]

    report = json.loads(out.read_text())
    latency = report["latency"]
    assert latency["openpi_ws_tcp"]["skipped"] is True
    assert "openpi-client" in latency["openpi_ws_tcp"]["reason"]
    assert not any("openpi" in k for k in report["ratios"])
    for row in ("bridge_tcp", "bridge_step_tcp", "bridge_step_lockstep_ipc", "raw_zmq_tcp", "raw_zmq_step_copy_ipc"):
        assert latency[row]["n"] == 1 and latency[row]["p50_us"] > 0, row
    assert "bridge_step_vs_raw_zmq_step_tcp_p50" in report["ratios"]
    assert report["jitter"] == {}  # --jitter-s 0


def test_a_server_child_that_dies_fails_fast_instead_of_waiting(blocked_env):
    """_start itself (the openpi server child importing openpi_client and dying) raises within seconds."""
    code = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, "scripts")
        import bench_transport
        t0 = time.monotonic()
        try:
            bench_transport._start(bench_transport._ws_server, timeout_s=60)
        except RuntimeError as e:
            print("raised after", round(time.monotonic() - t0, 1), "s:", e)
            sys.exit(0)
        sys.exit("the server started although openpi_client is blocked")
        """
    )
    proc = _run([sys.executable, "-c", code], blocked_env, ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "_ws_server exited with code 1 before it was up" in proc.stdout
    assert float(proc.stdout.split("raised after ")[1].split()[0]) < 20
