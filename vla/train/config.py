"""Training-run configuration: a frozen dataclass loaded from YAML, with CLI overrides.

    cfg = TrainConfig.from_yaml("configs/train/tiny.yaml", overrides={"max_steps": 50})
    cfg.model_config()        # the VLAConfig it trains (from `model`: a YAML path or an inline mapping)

YAML keys are the field names below; `model:` is a path relative to the YAML file (or the working
directory), or an inline model mapping. `lora:` is null (full fine-tuning of unfrozen parts) or a mapping
of `LoraConfig` fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla.model.config import VLAConfig


def _err(name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"TrainConfig.{name}={value!r}: {why}")


@dataclass(frozen=True)
class AugmentConfig:
    """Image augmentation in torch (no torchvision): random scale-crop + shift, then colour jitter."""

    enabled: bool = True
    crop_scale: float = 0.9  # the crop covers [crop_scale, 1] of the side, resized back
    shift: float = 0.06  # extra random translation, as a fraction of the side
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        if not 0.1 <= self.crop_scale <= 1.0:
            raise ValueError(f"AugmentConfig.crop_scale={self.crop_scale!r}: must be in [0.1, 1]")
        for k in ("shift", "brightness", "contrast", "saturation"):
            v = getattr(self, k)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"AugmentConfig.{k}={v!r}: must be in [0, 1)")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoraSettings.r={self.r!r}: must be >= 1")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))


@dataclass(frozen=True)
class TrainConfig:
    model: Any = "configs/model/tiny.yaml"  # YAML path or inline mapping of VLAConfig
    max_steps: int = 1000
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    aux_weight: float = 1.0  # weight of the auxiliary task-state loss (models with VLAConfig.aux_state_dim > 0)
    bin_sigma: float = 0.0  # > 0: Gaussian soft targets over neighbouring bins (std in bins); bins tokenizer only
    start_steps: int = 0  # the first start_steps frames of each episode are sampled start_weight times as often
    start_weight: float = 1.0  # (they decide which object to go to; see vla.train.data.sampling_weights)
    start_until: int = 0  # > 0: oversample only for steps < start_until, then uniform (ground first, then servo)
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | fp32 | bf16
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    freeze_vision: bool = False
    freeze_projector: bool = False
    freeze_lm: bool = False  # with lora: the LoRA adapters (and action-token rows) still train
    lora: LoraSettings | None = None
    val_fraction: float = 0.1  # held-out episodes; 0 = report metrics on the training episodes
    val_every: int = 200
    val_batches: int = 4
    log_every: int = 10
    save_every: int = 500
    seed: int = 0
    num_threads: int = 0  # torch CPU threads; 0 = leave torch's default
    base_dir: str = "."  # where a relative `model` path is resolved first (the YAML's directory)

    def __post_init__(self) -> None:
        for k in ("max_steps", "batch_size", "val_every", "val_batches", "log_every", "save_every"):
            if getattr(self, k) < 1:
                raise _err(k, getattr(self, k), "must be >= 1")
        if self.lr <= 0:
            raise _err("lr", self.lr, "must be > 0")
        if self.warmup_steps < 0:
            raise _err("warmup_steps", self.warmup_steps, "must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise _err("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise _err("precision", self.precision, "must be auto, fp32 or bf16")
        if not 0.0 <= self.val_fraction < 1.0:
            raise _err("val_fraction", self.val_fraction, "must be in [0, 1)")
        if self.num_threads < 0:
            raise _err("num_threads", self.num_threads, "must be >= 0")
        if self.aux_weight < 0:
            raise _err("aux_weight", self.aux_weight, "must be >= 0")
        if self.start_steps < 0:
            raise _err("start_steps", self.start_steps, "must be >= 0")
        if self.start_until < 0:
            raise _err("start_until", self.start_until, "must be >= 0 (0 = the whole run)")
        if self.start_weight <= 0:
            raise _err("start_weight", self.start_weight, "must be > 0 (1 = uniform sampling)")
        if self.bin_sigma < 0:
            raise _err("bin_sigma", self.bin_sigma, "must be >= 0 (0 = one-hot targets)")
        if not isinstance(self.model, (str, dict)):
            raise _err("model", self.model, "must be a YAML path or an inline mapping")

    def model_config(self) -> VLAConfig:
        if isinstance(self.model, dict):
            return VLAConfig.from_dict(self.model)
        p = Path(self.model)
        for cand in ([p] if p.is_absolute() else [Path(self.base_dir) / p, p]):
            if cand.is_file():
                return VLAConfig.from_yaml(cand)
        raise FileNotFoundError(f"TrainConfig.model: {self.model} not found (looked in {self.base_dir} and .)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.lora is not None:
            d["lora"]["target_modules"] = list(self.lora.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
        d = {**d, **(overrides or {})}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**d["augment"])
        if isinstance(d.get("lora"), dict):
            d["lora"] = LoraSettings(**d["lora"])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        import yaml

        path = Path(path)
        with open(path) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        d.setdefault("base_dir", str(path.parent))
        return cls.from_dict(d, overrides)
