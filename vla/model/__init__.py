"""The unified-sequence VLA policy (vision tower -> projector -> causal LM -> action tokens), in torch.

    from vla.model import VLAConfig, VLAPolicy, TorchRuntime
    rt = TorchRuntime.from_checkpoint("runs/x/checkpoint")
    chunk = rt.predict_action(obs)          # [H, 7] robot units

Modules: `config` (dataclasses, example_batch; torch-free), `text` (text tokenizer; torch-free), `vision`,
`projectors` (registry), `film`, `sequence` (attention masks, position ids), `policy` (VLAPolicy: embed /
forward / loss / save / load), `decoding` (greedy KV loop, parallel), `lm` (LM family table), `runtime`
(TorchRuntime). The names below are imported lazily, so `import vla.model.config` needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OPENVLA_PROMPT": "vla.model.config", "ActionConfig": "vla.model.config", "LMConfig": "vla.model.config",
    "ProjectorConfig": "vla.model.config", "TextConfig": "vla.model.config", "VisionConfig": "vla.model.config",
    "VLAConfig": "vla.model.config", "AuxConfig": "vla.model.config", "FiLMConfig": "vla.model.config",
    "FastConfig": "vla.model.config",
    "VLAPolicy": "vla.model.policy", "TorchRuntime": "vla.model.runtime",
    "PROJECTORS": "vla.model.projectors", "build_projector": "vla.model.projectors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla.model' has no attribute {name!r}")
