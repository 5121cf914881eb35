"""Policy runtimes: one small interface for every backend the control loop can run.

    rt = TorchRuntime.from_checkpoint("runs/policy")          # vla.model.VLAPolicy.from_pretrained
    rt = PolicyRuntime(SimExpertPolicy("PickCube"))           # any callable obs -> action [7] or chunk [H, 7]
    rt = make_runtime("onnx", "exports/policy")                # torch | onnx | tensorrt by name
    rt.reset(); chunk = rt.predict_action(obs)                 # float32 [H, 7], robot units

`obs` is the observation dict the bridge delivers: camera name -> uint8 [H, W, 3], "state" float32
[8], "instruction" str (plus extras such as "sim_state" when asked for). ONNX Runtime / TensorRT
runtimes implement the same `Runtime` interface in their own modules (deploy/onnx_runtime.py,
deploy/tensorrt_runtime.py); `make_runtime` picks one by name for the CLIs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ACTION_DIM = 7
RUNTIMES = ("torch", "onnx", "tensorrt")


def as_chunk(a: Any, source: str) -> np.ndarray:
    """float32 [H, 7] from an action [7] or a chunk [H, 7]; ValueError on any other shape."""
    c = np.asarray(a, dtype=np.float32)
    if c.shape == (ACTION_DIM,):
        c = c[None]
    if c.ndim != 2 or c.shape[1] != ACTION_DIM or c.shape[0] < 1:
        raise ValueError(f"{source} returned shape {c.shape}; expected [{ACTION_DIM}] or [H, {ACTION_DIM}]")
    return c


class Runtime(abc.ABC):
    @abc.abstractmethod
    def predict_action(self, obs: dict[str, Any]) -> np.ndarray:
        """One observation -> float32 [H, 7] action chunk in robot units (NaN rows = failed decode)."""

    def reset(self) -> None:  # noqa: B027 - stateless runtimes need nothing
        """Start of an episode (clears any internal state)."""

    @property
    def execute_steps(self) -> int | None:
        """Actions per chunk the policy was evaluated with before re-planning (its checkpoint's
        `action.execute_steps`); None when the policy does not say."""
        cfg = getattr(self, "cfg", None)
        return None if cfg is None else cfg.action.execute_steps


class PolicyRuntime(Runtime):
    """Adapts a callable obs -> action [7] / chunk [H, 7] (with optional `.reset()`)."""

    def __init__(self, policy: Callable[[dict], Any]) -> None:
        self.policy = policy

    def predict_action(self, obs: dict[str, Any]) -> np.ndarray:
        return as_chunk(self.policy(obs), type(self.policy).__name__)

    def reset(self) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()


class TorchRuntime(Runtime):
    """A torch module with `predict_action(obs) -> [H, 7]` (vla.model.VLAPolicy), run without grad."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def cfg(self) -> Any:
        return getattr(self.model, "cfg", None)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str = "cpu") -> TorchRuntime:
        from vla.model import VLAPolicy  # lazy: torch/transformers only when a checkpoint is used

        return cls(VLAPolicy.from_pretrained(directory, map_location=device))

    def predict_action(self, obs: dict[str, Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.predict_action(obs)
        return as_chunk(out.detach().cpu().numpy() if hasattr(out, "detach") else out, "TorchRuntime")


def make_runtime(kind: str, path: str | Path, device: str = "cpu") -> Runtime:
    """`torch`: a checkpoint dir; `onnx`: a `vla export onnx` dir; `tensorrt`: a `vla export tensorrt` dir."""
    if kind == "torch":
        return TorchRuntime.from_checkpoint(path, device=device)
    if kind == "onnx":
        from deploy.onnx_runtime import OnnxRuntime

        providers = ["CPUExecutionProvider"] if device == "cpu" else None  # None: CUDA EP first when present
        return OnnxRuntime(path, providers=providers)
    if kind == "tensorrt":
        from deploy.tensorrt_runtime import TensorRTRuntime

        return TensorRTRuntime(path, device=int(device.split(":")[1]) if device.startswith("cuda:") else 0)
    raise ValueError(f"unknown runtime {kind!r}; available: {RUNTIMES}")
