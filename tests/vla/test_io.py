"""vla.io atomic writes: the content lands whole, and the file is readable like one open() would write."""

from __future__ import annotations

import json
import os
import stat

from vla.io import atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_uses_umask_permissions(tmp_path):
    path = tmp_path / "sub" / "report.json"
    old = os.umask(0o022)
    try:
        atomic_write_json(path, {"success_rate": 0.9})
        atomic_write_json(path, {"success_rate": 1.0})  # replaces, leaves no temp file behind
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"success_rate": 1.0}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: other users can read a report


def test_atomic_write_text_exact(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_bytes() == "héllo\n".encode()


def test_atomic_write_png_writes_a_whole_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vla.io import atomic_write_png

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    atomic_write_png(tmp_path / "plot.png", fig, dpi=50)
    plt.close(fig)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
