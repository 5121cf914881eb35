"""The unified-sequence VLA policy (vision tower -> projector -> causal LM -> action tokens), in torch.

    from vla.model import VLAConfig, VLAPolicy, TorchRuntime
    rt = TorchRuntime.from_checkpoint("runs/x/checkpoint")
    chunk = rt.predict_action(obs)          # [H, 7] robot units

Modules: `vision`, `projectors` (registry), `film`, `sequence` (attention masks, position ids,
example_batch), `policy` (VLAPolicy: embed /
forward / loss / save / load), `decoding` (greedy KV loop, parallel), `lm` (LM family table), `runtime`
(TorchRuntime). The names below are imported lazily, so `import vla.config` needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "OPENVLA_PROMPT": "vla.config", "ActionConfig": "vla.config", "LMConfig": "vla.config",
    "ProjectorConfig": "vla.config", "TextConfig": "vla.config", "VisionConfig": "vla.config",
    "VLAConfig": "vla.config", "AuxConfig": "vla.config", "FiLMConfig": "vla.config",
    "FastConfig": "vla.config",
    "VLAPolicy": "vla.model.policy", "TorchRuntime": "vla.model.runtime",
    "PROJECTORS": "vla.model.projectors", "build_projector": "vla.model.projectors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla.model' has no attribute {name!r}")
