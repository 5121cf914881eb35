"""The one runtime interface every backend implements (torch-free): observation -> action chunk.

    rt = make_runtime("onnx", "exports/x")        # deploy.runtimes: torch | onnx | tensorrt by name
    rt.reset()
    chunk = rt.infer(obs)                          # ActionChunk(actions float32 [H, 7] robot units, valid, ids)
    rt.predict_action(obs)                         # just the actions (NaN rows when the chunk did not decode)
    rt.infer(obs, prefix_ids=io.action_ids(acts))  # force the first k*7 action tokens (rt.supports_prefix)
    rt.execute_steps                               # actions per chunk the checkpoint was evaluated with
    rt.last_timings                                # per-call stage timings in ms (backend-specific keys)

Backends: `vla.model.runtime.TorchRuntime`, `deploy.runtimes.onnx.OnnxRuntime`,
`deploy.runtimes.tensorrt.TensorRTRuntime`; `PolicyRuntime` adapts any callable (a scripted expert).
`obs` is the observation dict the bridge or a sim env delivers: camera name -> uint8 [H, W, 3],
"state" float32 [8], "instruction" str.

Prefix forcing (asynchronous chunk inference): the actions that execute while the next chunk is inferred
are known, so their token ids (`PolicyIO.action_ids`) are forced as the first tokens of the new chunk and
decoding continues from them. Runtimes that decode tokens (torch, ONNX Runtime, TensorRT) have
`supports_prefix` True; the others raise ValueError on a non-empty `prefix_ids` (an empty one is no prefix).
`chunk.ids` holds the token ids a chunk was decoded from (bins; None otherwise).
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
    supports_prefix: bool = False  # can force the first action tokens of a chunk (`prefix_ids`)

    def __init__(self) -> None:
        self.last_timings: dict[str, float] = {}

    @abc.abstractmethod
    def infer_batch(self, observations: Sequence[dict[str, Any]], prefix_ids: Any = None) -> ActionChunk:
        """Observation dicts -> ActionChunk(actions [B, H, 7], valid [B], ids [B, n] or None).

        prefix_ids: int64 [B, k] action token ids forced as the first k tokens of each chunk (None or k = 0:
        none); only where `supports_prefix` (see `check_prefix`)."""

    def check_prefix(self, prefix_ids: Any) -> np.ndarray | None:
        """prefix_ids as an array, or None when absent or empty; ValueError if this runtime cannot force tokens.

        Shape, batch and id range are checked by the decoder, which knows its slots and action block."""
        if prefix_ids is None:
            return None
        p = np.asarray(prefix_ids)
        if p.size == 0:
            return None
        if not self.supports_prefix:
            raise ValueError(f"{type(self).__name__} does not support prefix_ids (forced action tokens): only "
                             "runtimes that decode action tokens do (supports_prefix is False here)")
        return p

    def infer(self, obs: dict[str, Any], prefix_ids: Any = None) -> ActionChunk:
        """One observation -> ActionChunk(actions [H, 7], valid, ids [n] or None); prefix_ids [k] or [1, k]."""
        prefix = self.check_prefix(prefix_ids)
        if prefix is None:
            c = self.infer_batch([obs])[0]  # subclasses without prefix support may not take the argument
        else:
            if prefix.ndim == 1:
                prefix = prefix[None]  # [1, k]
            if prefix.ndim != 2 or prefix.shape[0] != 1:
                raise ValueError(f"infer takes prefix_ids [k] or [1, k], got shape {prefix.shape}")
            c = self.infer_batch([obs], prefix_ids=prefix)[0]
        return ActionChunk(as_chunk(c.actions, type(self).__name__), c.valid, c.ids)

    def predict_action(self, obs: dict[str, Any], prefix_ids: Any = None) -> np.ndarray:
        """One observation -> float32 [H, 7] in robot units (NaN rows: the chunk failed to decode)."""
        return self.infer(obs, prefix_ids).actions

    def reset(self) -> None:  # noqa: B027 - stateless runtimes need nothing
        """Start of an episode (clears any internal state)."""


class PolicyRuntime(Runtime):
    """Adapts a callable obs -> action [7] / chunk [H, 7] (with optional `.reset()`); NaN rows are invalid.

    It decodes no tokens: `supports_prefix` is False and its chunks have `ids` None."""

    def __init__(self, policy: Callable[[dict], Any]) -> None:
        super().__init__()
        self.policy = policy

    def infer_batch(self, observations: Sequence[dict[str, Any]], prefix_ids: Any = None) -> ActionChunk:
        self.check_prefix(prefix_ids)  # a callable decodes no tokens: a non-empty prefix is a ValueError
        acts = np.stack([as_chunk(self.policy(o), type(self.policy).__name__) for o in observations])
        return ActionChunk(acts, np.isfinite(acts).all(axis=(1, 2)))

    def reset(self) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()
