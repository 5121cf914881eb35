"""The one runtime interface every backend implements (torch-free): observation -> action chunk.

    rt = make_runtime("onnx", "exports/x")        # deploy.runtimes: torch | onnx | tensorrt by name
    rt.reset()
    chunk = rt.infer(obs)                          # ActionChunk(actions float32 [H, 7] robot units, valid bool)
    rt.predict_action(obs)                         # just the actions (NaN rows when the chunk did not decode)
    rt.execute_steps                               # actions per chunk the checkpoint was evaluated with
    rt.last_timings                                # per-call stage timings in ms (backend-specific keys)

Backends: `vla.model.runtime.TorchRuntime`, `deploy.runtimes.onnx.OnnxRuntime`,
`deploy.runtimes.tensorrt.TensorRTRuntime`; `PolicyRuntime` adapts any callable (a scripted expert).
`obs` is the observation dict the bridge or a sim env delivers: camera name -> uint8 [H, W, 3],
"state" float32 [8], "instruction" str.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vla.policy_io import ActionChunk

ACTION_DIM = 7


def as_chunk(a: Any, source: str) -> np.ndarray:
    """float32 [H, 7] from an action [7] or a chunk [H, 7]; ValueError on any other shape."""
    c = np.asarray(a, dtype=np.float32)
    if c.shape == (ACTION_DIM,):
        c = c[None]
    if c.ndim != 2 or c.shape[1] != ACTION_DIM or c.shape[0] < 1:
        raise ValueError(f"{source} returned shape {c.shape}; expected [{ACTION_DIM}] or [H, {ACTION_DIM}]")
    return c


class Runtime(abc.ABC):
    """Subclasses implement `infer_batch`; everything else follows."""

    execute_steps: int | None = None  # the checkpoint's `action.execute_steps` (None: it does not say)

    def __init__(self) -> None:
        self.last_timings: dict[str, float] = {}

    @abc.abstractmethod
    def infer_batch(self, observations: Sequence[dict[str, Any]]) -> ActionChunk:
        """Observation dicts -> ActionChunk(actions [B, H, 7], valid [B])."""

    def infer(self, obs: dict[str, Any]) -> ActionChunk:
        c = self.infer_batch([obs])[0]
        return ActionChunk(as_chunk(c.actions, type(self).__name__), c.valid)

    def predict_action(self, obs: dict[str, Any]) -> np.ndarray:
        """One observation -> float32 [H, 7] in robot units (NaN rows: the chunk failed to decode)."""
        return self.infer(obs).actions

    def reset(self) -> None:  # noqa: B027 - stateless runtimes need nothing
        """Start of an episode (clears any internal state)."""


class PolicyRuntime(Runtime):
    """Adapts a callable obs -> action [7] / chunk [H, 7] (with optional `.reset()`); NaN rows are invalid."""

    def __init__(self, policy: Callable[[dict], Any]) -> None:
        super().__init__()
        self.policy = policy

    def infer_batch(self, observations: Sequence[dict[str, Any]]) -> ActionChunk:
        acts = np.stack([as_chunk(self.policy(o), type(self.policy).__name__) for o in observations])
        return ActionChunk(acts, np.isfinite(acts).all(axis=(1, 2)))

    def reset(self) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()
