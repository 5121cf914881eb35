"""The export manifest format (leaf module: imports nothing of `deploy`, no torch).

    m = load_manifest("exports/x")            # dict; FileNotFoundError / ValueError naming the problem
    policy_dir("exports/x", m)                # the weightless checkpoint dir (config, tokenizer, norm stats)

`manifest.json` is written by `deploy.export.onnx_export` and extended with a `tensorrt` section by
`deploy.export.tensorrt_build`; the runtimes in `deploy.runtimes` read it. Keys: `format`, `opset`,
`graphs` ({name: {file, inputs, outputs[, engine, profile]}}), `batch` ({min, opt, max}), `decoding`,
`sequence` (cameras, prefix_len, action_tokens, cache_capacity, action_id_start, eos_id, ...),
`tokenizer` ({dir: "policy", ...}), `normalization`, `image`, `model_config`, `versions`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "vla-onnx-export/1"
GRAPHS = ("encoder", "parallel", "prefill", "decode_step")


def load_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / "manifest.json"
    if not path.is_file():
        hint = " (it holds a policy checkpoint: use --runtime torch, or `vla export onnx` it first)" \
            if (directory / "model.safetensors").is_file() else " (run `vla export onnx` first)"
        raise FileNotFoundError(f"{path}: not an export directory{hint}")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {m.get('format') if isinstance(m, dict) else None!r}, "
                         f"expected {MANIFEST_FORMAT!r}")
    for key in ("graphs", "sequence", "tokenizer", "decoding", "batch"):
        if key not in m:
            raise ValueError(f"{path}: missing {key!r}")
    return m


def policy_dir(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    return Path(directory) / manifest["tokenizer"]["dir"]
