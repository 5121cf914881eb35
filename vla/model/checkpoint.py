"""Atomic checkpoint directories: a reader sees the old directory or the complete new one, never a mix.

    with atomic_directory("runs/x/checkpoint") as tmp:
        (tmp / "config.json").write_text(...)        # write everything into tmp
    # on exit: tmp is fsynced and renamed onto the target (the old one, if any, is removed afterwards)

A failure inside the block leaves the target untouched and removes tmp. The swap is two renames
(old -> .old, tmp -> target), so a crash between them leaves `.<target>.old-*/ckpt` holding the
previous checkpoint (recover it by hand) rather than a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
