"""Resumable training state without pickle: optimizer tensors in safetensors, the rest in JSON.

    save_train_state(run / "train_state", optimizer, step=123, extra={"best": 0.9}, model=trainable_module)
    step, extra = load_train_state(run / "train_state", optimizer, model=trainable_module)

`model` is only written when the training module differs from the inference checkpoint (LoRA adapters
before merging); otherwise the checkpoint directory already holds the weights. The directory is written
atomically (`vla.io.atomic_directory`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vla.io import atomic_directory


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_train_state(directory: str | Path, optimizer: torch.optim.Optimizer, step: int,
                     extra: dict[str, Any] | None = None, model: torch.nn.Module | None = None) -> None:
    tensors, meta = _flatten_optimizer(optimizer)
    meta.update({"step": int(step), "extra": extra or {}, "has_model": model is not None})
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        if model is not None:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}  # clone: no shared storage
            save_file(state, str(tmp / "model.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_train_state(directory: str | Path, optimizer: torch.optim.Optimizer,
                     model: torch.nn.Module | None = None) -> tuple[int, dict[str, Any]]:
    directory = Path(directory)
    meta_path = directory / "state.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no training state to resume from")
    meta = json.loads(meta_path.read_text())
    flat = load_file(str(directory / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if meta.get("has_model"):
        if model is None:
            raise ValueError(f"{directory} holds training weights (LoRA) but no module was given to load them")
        missing, unexpected = model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
        if missing or unexpected:
            raise ValueError(f"{directory}: training weights do not match the module "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return int(meta["step"]), meta.get("extra", {})
