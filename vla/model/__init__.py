"""The unified-sequence VLA policy (vision tower -> projector -> causal LM -> action tokens).

    from vla.model import VLAConfig, VLAPolicy
    policy = VLAPolicy.from_config(VLAConfig.from_yaml("configs/model/tiny.yaml"))
    chunk = policy.predict_action(obs)          # [H, 7] robot units

Modules: `config` (dataclasses, example_batch), `vision`, `projectors` (registry), `text` (text tokenizer),
`transforms` (image/prompt/mask transforms shared with training and deploy), `policy`, `decoding`,
`checkpoint` (atomic directories).
"""

from vla.model.config import (
    OPENVLA_PROMPT,
    ActionConfig,
    LMConfig,
    ProjectorConfig,
    TextConfig,
    VisionConfig,
    VLAConfig,
)
from vla.model.policy import VLAPolicy
from vla.model.projectors import PROJECTORS, build_projector

__all__ = [
    "OPENVLA_PROMPT",
    "PROJECTORS",
    "ActionConfig",
    "LMConfig",
    "ProjectorConfig",
    "TextConfig",
    "VLAConfig",
    "VLAPolicy",
    "VisionConfig",
    "build_projector",
]
