"""safetensors read and written one tensor at a time, without memory-mapping whole files (torch).

    header = read_header(path)                       # {name: TensorInfo(dtype, shape, start, end)}, metadata
    t = read_tensor(path, header["x"])               # one tensor, read with seek + readinto
    with ShardedWriter(out, max_shard_bytes=4 << 30) as w:   # plan every tensor first, then stream them
        w.plan("x", torch.float32, (2, 3)); ...
        w.open(); w.write("x", tensor); ...          # in plan order; shards fill to max_shard_bytes

Why not `safetensors.torch.load_file` / `save_file`: loading maps a whole shard (its pages count as
resident once touched) and saving serializes every tensor of the file into bytes before writing, so
converting a 7B checkpoint would need a shard's size two or three times over. Here the peak is about one
tensor (plus its dtype conversion), whatever the shard size: the header of each output shard is written
first (all shapes are known), then each tensor's bytes are appended as it is converted.

The format: an 8-byte little-endian header length, a JSON header {name: {"dtype", "shape", "data_offsets":
[start, end]}} (offsets relative to the end of the header, which is padded with spaces to 8 bytes), then
the data. Several shards come with `model.safetensors.index.json` ({"metadata": {"total_size"},
"weight_map": {name: file}}), as transformers writes them.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vla.meta import read_safetensors_header

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """-> ({name: TensorInfo}, metadata); ValueError naming the file when it is no (complete) safetensors."""
    path = Path(path)
    raw, base, size = read_safetensors_header(path)
    out: dict[str, TensorInfo] = {}
    for name, v in raw.items():
        if name == "__metadata__":
            continue
        if v.get("dtype") not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {v.get('dtype')!r}, not one of {sorted(DTYPES)}")
        s, e = v["data_offsets"]
        info = TensorInfo(DTYPES[v["dtype"]], tuple(int(x) for x in v["shape"]), base + int(s), base + int(e))
        n_el = 1
        for d in info.shape:
            n_el *= d
        if info.nbytes != n_el * torch.empty((), dtype=info.dtype).element_size():
            raise ValueError(f"{path}: corrupt header: tensor {name!r} of shape {list(info.shape)} {v['dtype']} "
                             f"spans {info.nbytes} bytes")
        if info.end > size:
            raise ValueError(f"{path}: truncated: tensor {name!r} ends at byte {info.end}, the file has {size} "
                             "(an interrupted copy or download?)")
        out[name] = info
    return out, dict(raw.get("__metadata__") or {})


def read_tensor(path: str | Path, info: TensorInfo) -> torch.Tensor:
    """One tensor of a safetensors file, read into fresh memory (no mapping of the file)."""
    buf = torch.empty(info.nbytes, dtype=torch.uint8)
    with open(path, "rb") as f:
        f.seek(info.start)
        got = f.readinto(memoryview(buf.numpy()))
    if got != info.nbytes:
        raise ValueError(f"{path}: short read of a tensor ({got} of {info.nbytes} bytes)")
    if info.dtype == torch.bool:
        return buf.view(torch.bool).reshape(info.shape)
    return buf.view(info.dtype).reshape(info.shape)


def shard_files(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint: the shards its index names, or its single `model.safetensors`."""
    directory = Path(directory)
    index = directory / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{index}: not a safetensors index (no 'weight_map')") from None
        files = [directory / f for f in sorted(set(weight_map.values()))]
    else:
        files = [directory / "model.safetensors"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: weight file missing from the checkpoint")
    return files


class ShardedWriter:
    """Writes planned tensors into `model-XXXXX-of-YYYYY.safetensors` shards (or one `model.safetensors`)
    plus the index, each shard's header first and then its tensors as they come. Plan all, `open`, then
    `write` every planned tensor in plan order; `close` checks that nothing was left out."""

    def __init__(self, directory: str | Path, max_shard_bytes: int = 4 << 30) -> None:
        self.directory = Path(directory)
        self.max_shard_bytes = int(max_shard_bytes)
        self._plan: list[tuple[str, torch.dtype, tuple[int, ...]]] = []
        self._shards: list[list[int]] = []
        self._next = 0
        self._file: Any = None
        self._shard = -1

    @staticmethod
    def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
        n = 1
        for s in shape:
            n *= int(s)
        return n * torch.empty((), dtype=dtype).element_size()

    def plan(self, name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
        if self._file is not None or self._shards:
            raise RuntimeError("ShardedWriter.plan after open")
        if dtype not in NAMES:
            raise ValueError(f"cannot write dtype {dtype}")
        self._plan.append((name, dtype, tuple(int(s) for s in shape)))

    def _name(self, i: int) -> str:
        k = len(self._shards)
        return "model.safetensors" if k == 1 else f"model-{i + 1:05d}-of-{k:05d}.safetensors"

    def open(self) -> None:
        cur: list[int] = []
        size = 0
        for i, (_, dt, shape) in enumerate(self._plan):
            b = self._nbytes(dt, shape)
            if cur and size + b > self.max_shard_bytes:
                self._shards.append(cur)
                cur, size = [], 0
            cur.append(i)
            size += b
        self._shards.append(cur)
        self._start_shard(0)

    def _start_shard(self, k: int) -> None:
        if self._file is not None:
            self._file.close()
        self._shard = k
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        off = 0
        for i in self._shards[k]:
            name, dt, shape = self._plan[i]
            b = self._nbytes(dt, shape)
            header[name] = {"dtype": NAMES[dt], "shape": list(shape), "data_offsets": [off, off + b]}
            off += b
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._file = open(self.directory / self._name(k), "wb")
        self._file.write(struct.pack("<Q", len(raw)))
        self._file.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._plan):
            raise RuntimeError(f"ShardedWriter: {name!r} was never planned")
        want, dt, shape = self._plan[self._next]
        if name != want or tensor.dtype != dt or tuple(tensor.shape) != shape:
            raise RuntimeError(f"ShardedWriter: expected {want!r} {dt} {shape}, got {name!r} {tensor.dtype} "
                               f"{tuple(tensor.shape)}")
        if self._next not in self._shards[self._shard]:
            self._start_shard(self._shard + 1)
        t = tensor.detach().contiguous().cpu()
        flat = t.reshape(-1).view(torch.uint8) if t.numel() else t.reshape(-1).to(torch.uint8)
        self._file.write(memoryview(flat.numpy()))
        self._next += 1

    def close(self) -> dict[str, str]:
        """Finish the last shard and write the index (several shards) -> {tensor: file}."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._next != len(self._plan):
            raise RuntimeError(f"ShardedWriter: {len(self._plan) - self._next} planned tensors were not written "
                               f"(next: {self._plan[self._next][0]!r})")
        weight_map = {self._plan[i][0]: self._name(k) for k, shard in enumerate(self._shards) for i in shard}
        if len(self._shards) > 1:
            total = sum(self._nbytes(dt, s) for _, dt, s in self._plan)
            (self.directory / INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        return weight_map

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
