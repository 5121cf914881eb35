"""Fine-tuning a VLA policy on LeRobot-format demonstrations.

    from vla.train import TrainConfig, train
    summary = train(TrainConfig.load("tiny"), "data/demos", "runs/tiny")

CLI: `vla train --config FILE --dataset DIR --out RUN_DIR [--max-steps N] [--resume]`; see `vla.train.loop`.
"""

from vla.train.config import AugmentConfig, LoraSettings, TrainConfig
from vla.train.loop import train

__all__ = ["AugmentConfig", "LoraSettings", "TrainConfig", "train"]
