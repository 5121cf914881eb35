"""Installable as a package, not only as a checkout: build the wheel, install it into a fresh venv outside
the repository and run the README's main command there (`vla quickstart --smoke`; about 2 min on a busy
2-core box; in the default suite, so CI proves it).

The new venv reuses this interpreter's installed dependencies through a `.pth` file that appends its
site-packages to sys.path. A path line in a `.pth` adds the folder only: the `.pth` files inside it (the
checkout's editable install of vla, `__editable__.vla-*.pth`) are not run, so nothing points back at the
checkout, and the venv's own site-packages (the wheel) come first anyway. The test checks both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from vla.cli.quickstart import DEFAULT_TASKS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vla", "sim", "deploy")  # [tool.setuptools.packages.find] include
BUILD_FILES = ("pyproject.toml", "README.md")  # README.md: the project's `readme`
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (f"{cmd} exited with {r.returncode}\n--- stdout\n{r.stdout[-6000:]}"
                               f"\n--- stderr\n{r.stderr[-6000:]}")
    return r


def _data_files(root: Path) -> set[str]:
    """The non-.py files of the packages, as wheel member names ('vla/configs/model/tiny.yaml')."""
    return {p.relative_to(root).as_posix() for pkg in PACKAGES for p in (root / pkg).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


# ~100 s on 2 cores (build, install, a two-task quickstart smoke): in the default suite on purpose, CI must
# prove the package installs and runs outside a checkout
def test_wheel_installs_outside_the_checkout_and_runs_quickstart(tmp_path):
    # a clean copy of the sources: the build writes build/ and *.egg-info next to them, and a stale egg-info's
    # SOURCES.txt could add files the package-data rules miss
    src = tmp_path / "src"
    for f in BUILD_FILES:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=IGNORE)

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env["PYTHONNOUSERSITE"] = "1"
    env["MUJOCO_GL"] = os.environ.get("MUJOCO_GL", "egl")

    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-w", dist, src], cwd=tmp_path, env=env, timeout=300)
    (wheel,) = dist.glob("vla-*.whl")
    members = set(zipfile.ZipFile(wheel).namelist())
    data = _data_files(src)
    assert {"vla/configs/model/tiny.yaml", "vla/configs/train/tiny.yaml", "sim/assets/scene.xml"} <= data
    assert data <= members, f"package data missing from the wheel: {sorted(data - members)}"
    assert not any(m.startswith(("tests/", "scripts/")) for m in members)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env, timeout=120)
    py, vla_bin = venv / "bin" / "python", venv / "bin" / "vla"
    # installed before the dependencies' .pth exists, so pip sees an empty venv (not the editable vla)
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", wheel], cwd=tmp_path, env=env, timeout=300)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env, timeout=60).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # this interpreter's
    (site / "_vla_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)

    # the wheel's copy is the one imported, configs included; nothing resolves into the checkout
    probe = ("import json, vla, sim, deploy, vla.configs as c; print(json.dumps({'files': [vla.__file__, "
             "sim.__file__, deploy.__file__], 'root': str(c.CONFIG_ROOT), 'model': c.names('model'), "
             "'train': c.names('train')}))")
    got = json.loads(_run([py, "-c", probe], cwd=tmp_path, env=env, timeout=120).stdout.strip().splitlines()[-1])
    for f in [*got["files"], got["root"]]:
        assert Path(f).resolve().is_relative_to(site.resolve()), f"{f} is not inside the new venv ({site})"
        assert not Path(f).resolve().is_relative_to(REPO), f"{f} resolves into the checkout"
    assert "tiny" in got["model"] and "vla_945m" in got["model"] and "tiny" in got["train"]
    assert vla_bin.is_file()

    help_text = _run([vla_bin, "train", "--help"], cwd=tmp_path, env=env, timeout=120).stdout
    assert "named training config" in help_text

    out = tmp_path / "qs"
    r = _run([vla_bin, "quickstart", "--smoke", "--out", out], cwd=tmp_path, env=env, timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    tasks = summary["tasks"]
    assert tasks == list(DEFAULT_TASKS) and summary["smoke"] is True
    for stage in ("eval", "eval_onnx", "control"):
        assert set(summary[stage]) == set(tasks), (stage, summary[stage], r.stdout[-3000:])
    assert all(summary["eval"][t]["episodes"] == 2 for t in tasks)
    assert all(summary["control"][t]["episodes"] == 1 for t in tasks)
    assert (out / "policy" / "checkpoint" / "model.safetensors").is_file()
    assert (out / "onnx" / "manifest.json").is_file()
