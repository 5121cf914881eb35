"""The one reader of checkpoint metadata (torch-free): `config.json` of a policy checkpoint, of the weightless
`policy/` directory inside an export, and of a TensorRT engine directory's copy of it.

    meta = read_meta("runs/x/checkpoint")         # CheckpointMeta(cfg, text_vocab_size, vocab_size, ...)
    write_meta(tmp, cfg, text_vocab_size=..., vocab_size=..., action_tokenizer=tok.to_config())
    check_safetensors("runs/x/checkpoint/model.safetensors")   # ValueError naming a truncated / corrupt file

Served to `VLAPolicy.from_pretrained` (weights), `PolicyIO.load` (transforms) and the export manifest, so a
checkpoint is parsed in one place. Checkpoints of format `vla-policy/1` (before the config redesign) are
migrated on read (`vla.config.migrate_v1`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla.config import CONFIG_FORMAT, VLAConfig, checkpoint_fields, migrate_v1
from vla.io import read_json

OLD_FORMATS = {"vla-policy/1": migrate_v1}


@dataclass(frozen=True)
class CheckpointMeta:
    directory: Path
    cfg: VLAConfig
    text_vocab_size: int  # ids [0, text_vocab_size) are text; the action block follows
    vocab_size: int  # the LM's whole vocabulary
    action_tokenizer: dict[str, Any] | None  # `ActionTokenizer.to_config()` (FAST: only once fitted)


def read_meta(directory: str | Path) -> CheckpointMeta:
    directory = Path(directory)
    path = directory / "config.json"
    meta = read_json(path, f"{path}: not a policy checkpoint (no config.json)")
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt in OLD_FORMATS:
        meta = {**meta, "policy": OLD_FORMATS[fmt](meta.get("policy") or {})}
    elif fmt != CONFIG_FORMAT:
        raise ValueError(f"{path}: format {fmt!r}, expected {CONFIG_FORMAT!r} (or an older {sorted(OLD_FORMATS)})")
    for key in ("policy", "text_vocab_size", "vocab_size"):
        if key not in meta:
            raise ValueError(f"{path}: missing {key!r}")
    try:
        cfg = VLAConfig.from_dict(checkpoint_fields(meta["policy"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return CheckpointMeta(directory, cfg, int(meta["text_vocab_size"]), int(meta["vocab_size"]),
                          meta.get("action_tokenizer"))


def write_meta(directory: str | Path, cfg: VLAConfig, text_vocab_size: int, vocab_size: int,
               action_tokenizer: dict[str, Any] | None) -> None:
    """config.json into `directory` (the caller writes the directory atomically)."""
    meta = {"format": CONFIG_FORMAT, "policy": cfg.to_dict(), "text_vocab_size": int(text_vocab_size),
            "vocab_size": int(vocab_size), "action_tokenizer": action_tokenizer}
    (Path(directory) / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def read_safetensors_header(path: str | Path) -> tuple[dict[str, Any], int, int]:
    """-> (the JSON header, the byte offset where the data starts, the file size); ValueError naming the
    file when it is no safetensors file or its header is cut short or corrupt. The format is an 8-byte
    little-endian header length, a JSON header giving each tensor's byte range, then the data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file ({size} bytes; truncated?)")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ValueError(f"{path}: truncated or not a safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path}: corrupt safetensors header") from None
    return header, 8 + n, size


def check_safetensors(path: str | Path) -> None:
    """Refuse a missing, truncated or corrupt safetensors file with a message naming it: a file shorter than
    the last byte range its header promises (an interrupted copy) is truncated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint has no weights")
    header, base, size = read_safetensors_header(path)
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if base + end > size:
        raise ValueError(f"{path}: truncated: {size} bytes, its header promises {base + end} "
                         "(an interrupted copy or download?); copy the checkpoint again")
