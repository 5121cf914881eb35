"""Atomic file writes: readers see the old content or the new, never a torn file.

atomic_write_text(path, text); atomic_write_bytes(path, data); atomic_write_json(path, obj)
atomic_write_png(path, fig)   # a matplotlib figure
with atomic_directory("runs/x/checkpoint") as tmp: ...   # a whole directory, swapped in on success

Directories (`atomic_directory`): a reader sees the old directory or the complete new one, never a mix.
Everything is written into a temp sibling, fsynced and renamed onto the target (the old one, if any, is
removed afterwards). A failure inside the block leaves the target untouched and removes the temp dir. The
swap is two renames (old -> .old, tmp -> target), so a crash between them leaves `.<target>.old-*/ckpt`
holding the previous directory (recover it by hand) rather than a half-written one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json(path: str | os.PathLike, missing: str) -> Any:
    """Parse a JSON file; FileNotFoundError(`missing`) when it does not exist, ValueError naming it when broken."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(missing)
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then os.replace onto `path`. The file gets the
    permissions a plain open() would give (0666 minus the umask), not mkstemp's owner-only 0600."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_write_png(path: str | os.PathLike, fig: Any, dpi: int = 100) -> None:
    """A matplotlib figure rendered to PNG in memory, then written like `atomic_write_bytes`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            os.replace(target, old / "ckpt")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
