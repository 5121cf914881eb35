"""Training-run configuration: a frozen dataclass loaded from YAML, with CLI overrides.

    cfg = TrainConfig()                                   # the embedded default's recipe (= named "tiny")
    cfg = TrainConfig.load("tiny", overrides={"max_steps": 50})   # a named config (vla/configs/train) or a path
    cfg.model_config()        # the VLAConfig it trains (from `model`: a config name, a YAML path, or a mapping)

YAML keys are the field names below (`base:` inherits, see `vla.configs`); `model:` is a named model config,
a path (relative to the YAML file, then the working directory), or an inline model mapping. Optional parts
are None or a mapping: `augment` (None = no augmentation), `start_oversample`, `lora`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla.config import VLAConfig
from vla.configs import load_yaml, resolve


def _err(name: str, value: Any, why: str) -> ValueError:
    return ValueError(f"TrainConfig.{name}={value!r}: {why}")


@dataclass(frozen=True)
class AugmentConfig:
    """Image augmentation in torch (no torchvision): random scale-crop + shift, then colour jitter.

    Default: no random crop (image token positions carry where the cubes are), a small shift and jitter."""

    crop_scale: float = 1.0  # the crop covers [crop_scale, 1] of the side, resized back (1 = no crop)
    shift: float = 0.03  # extra random translation, as a fraction of the side
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1

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
class StartOversample:
    """The first `steps` frames of each episode are drawn `weight` times as often: they decide which object to
    go to (with contrastive demos this is what makes the policy read the colour word; BENCHMARKS.md, session 4)."""

    steps: int = 3
    weight: float = 10.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"StartOversample.steps={self.steps!r}: must be >= 1 (no oversampling: null)")
        if not self.weight > 0:
            raise ValueError(f"StartOversample.weight={self.weight!r}: must be > 0")


_SUBS = {"augment": AugmentConfig, "lora": LoraSettings, "start_oversample": StartOversample}


@dataclass(frozen=True)
class TrainConfig:
    """Defaults: the embedded default's recipe (`vla quickstart`; CPU, 2 threads, ~20 min)."""

    model: Any = "tiny"  # named model config, YAML path, or inline mapping of VLAConfig
    # fine-tune: a policy checkpoint dir (e.g. what `vla convert openvla` wrote) whose config and weights
    # replace `model`'s fresh init; its action / state statistics are refit on the training data
    init_from: str | None = None
    max_steps: int = 5000
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    bin_sigma: float = 2.0  # > 0: Gaussian soft targets over neighbouring bins (std in bins); bins tokenizer only
    start_oversample: StartOversample | None = field(default_factory=StartOversample)
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp32) | fp32 | bf16
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    freeze_vision: bool = False
    freeze_projector: bool = False
    freeze_lm: bool = False  # with lora: the LoRA adapters (and action-token rows) still train
    lora: LoraSettings | None = None
    val_fraction: float = 0.05  # held-out episodes; 0 = report metrics on the training episodes
    val_every: int = 1000
    val_batches: int = 2
    log_every: int = 25
    save_every: int = 1000
    seed: int = 0
    num_threads: int = 2  # torch CPU threads (both cores of the 2-core target box); 0 = torch's default
    # share of the prefix-conditioned chunks (model action.prefix_conditioning) given the policy's own earlier
    # prediction instead of the demo's next steps (vla.train.self_prefix; async prefix splicing's input)
    prefix_self: float = 0.0

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
        if self.bin_sigma < 0:
            raise _err("bin_sigma", self.bin_sigma, "must be >= 0 (0 = one-hot targets)")
        if not 0.0 <= self.prefix_self <= 1.0:
            raise _err("prefix_self", self.prefix_self, "must be in [0, 1]")
        if not isinstance(self.model, (str, dict)):
            raise _err("model", self.model, "must be a config name, a YAML path or an inline mapping")
        for name, cls in _SUBS.items():
            if not isinstance(getattr(self, name), (cls, type(None))):
                raise _err(name, getattr(self, name), f"must be null or a mapping of {cls.__name__} fields")

    def model_config(self) -> VLAConfig:
        if self.init_from is not None:
            from vla.meta import read_meta

            cfg = read_meta(self.init_from).cfg
        else:
            cfg = VLAConfig.from_dict(self.model) if isinstance(self.model, dict) else VLAConfig.load(self.model)
        if self.bin_sigma > 0 and cfg.action.tokenizer != "bins":
            raise _err("bin_sigma", self.bin_sigma, f"needs the bins tokenizer, the model uses {cfg.action.tokenizer!r} "
                       "(FAST tokens are not ordered values); set bin_sigma: 0")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.lora is not None:
            d["lora"]["target_modules"] = list(self.lora.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
        """`overrides` replace top-level keys; a dotted `model.KEY[.SUB]` key replaces a field of the model
        config (e.g. {"model.aux": None} trains without the auxiliary head)."""
        overrides = dict(overrides or {})
        nested = {k: overrides.pop(k) for k in [k for k in overrides if k.startswith("model.")]}
        d = {**d, **overrides}
        if nested:
            m = d.get("model", cls.model)
            m = dict(m) if isinstance(m, dict) else load_yaml("model", m)
            for key, value in nested.items():
                *path, last = key.split(".")[1:]
                node = m
                for part in path:
                    if not isinstance(node.get(part), dict):
                        node[part] = {} if node.get(part) is None else node[part]
                    node[part] = dict(node[part])
                    node = node[part]
                node[last] = value
            d["model"] = m
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        for name, sub in _SUBS.items():
            v = d.get(name)
            if isinstance(v, dict):
                names = {f.name for f in dataclasses.fields(sub)}
                if set(v) - names:
                    raise ValueError(f"TrainConfig.{name}: unknown keys {sorted(set(v) - names)} (known: {sorted(names)})")
                d[name] = sub(**v)
        return cls(**d)

    @classmethod
    def load(cls, name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """A named train config (vla/configs/train/NAME.yaml) or a YAML path; `model:` paths are resolved
        relative to the YAML that names them."""
        path = resolve("train", name_or_path)
        d = load_yaml("train", path)
        if isinstance(d.get("model"), str):
            d["model"] = _model_ref(d["model"], path.parent)
        return cls.from_dict(d, overrides)

    from_yaml = load


def _model_ref(ref: str, yaml_dir: Path) -> str:
    """A model name stays a name; a path becomes absolute (resolved next to the YAML first)."""
    try:
        p = resolve("model", ref, relative_to=yaml_dir)
    except FileNotFoundError as e:
        raise ValueError(f"TrainConfig.model={ref!r}: {e}") from None
    return ref if p.parent == resolve("model", "tiny").parent and p.stem == ref else str(p)
