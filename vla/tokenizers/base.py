"""The action-tokenizer interface every tokenizer implements.

An action tokenizer maps continuous actions (normalized, usually in [-1, 1]) onto a block of
*reserved* ids of an LLM vocabulary and back:

    ids = tok.encode(actions)          # actions [..., D] float -> ids (int64)
    dec = tok.decode(ids)              # -> Decoded(actions [..., D] float32, valid [...] bool)
    tok.action_token_ids               # sorted int64 array: every id this tokenizer may emit
    tok.to_config() / from_config(cfg) # JSON-serializable round trip (registry key "type")

Decoding never fails silently: ids that do not decode (outside the reserved range, a malformed
chunk) come back with `valid=False` and the corresponding actions set to NaN, so a caller must
look at the flag (and count it) instead of executing a made-up zero action.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Decoded:
    """Decoded actions and a validity mask over the leading (non-action-dim) shape."""

    actions: np.ndarray  # [..., D] float32 (NaN where invalid)
    valid: np.ndarray  # [...] bool

    @property
    def num_invalid(self) -> int:
        return int(np.size(self.valid) - np.count_nonzero(self.valid))


class ActionTokenizer(abc.ABC):
    """Base class: continuous actions <-> reserved vocabulary ids."""

    #: registry key written into `to_config()["type"]`
    type_name: ClassVar[str]

    @property
    @abc.abstractmethod
    def action_dim(self) -> int | None:
        """Action dimension D this tokenizer was built/fitted for (None = any)."""

    @property
    @abc.abstractmethod
    def action_token_ids(self) -> np.ndarray:
        """Sorted int64 array of every vocabulary id this tokenizer can emit."""

    @abc.abstractmethod
    def encode(self, actions: Any) -> Any:
        """Actions [..., D] -> token ids. Raises ValueError on NaN/inf or a wrong last dimension."""

    @abc.abstractmethod
    def decode(self, ids: Any) -> Decoded:
        """Token ids -> Decoded(actions, valid)."""

    @abc.abstractmethod
    def to_config(self) -> dict:
        """JSON-serializable config; `tokenizer_from_config(cfg)` rebuilds an equal tokenizer."""

    # ---- shared helpers -------------------------------------------------------------------

    @property
    def id_range(self) -> tuple[int, int]:
        """(lowest, highest) reserved id, inclusive."""
        ids = self.action_token_ids
        return int(ids[0]), int(ids[-1])

    def is_action_id(self, ids: Any) -> np.ndarray:
        """Bool mask: which of `ids` are reserved action ids."""
        arr = np.asarray(ids)
        return np.isin(arr, self.action_token_ids)

    def logits_mask(self, vocab_size: int) -> np.ndarray:
        """Bool [vocab_size], True at the ids this tokenizer may emit (for constrained decoding)."""
        lo, hi = self.id_range
        if hi >= vocab_size:
            raise ValueError(f"tokenizer reserves ids up to {hi}, but vocab_size is {vocab_size}")
        mask = np.zeros(vocab_size, dtype=bool)
        mask[self.action_token_ids] = True
        return mask


def check_actions(actions: np.ndarray, action_dim: int | None, what: str = "actions") -> np.ndarray:
    """Validate a float action array: finite, ndim >= 1, last dim == action_dim (when set)."""
    arr = np.asarray(actions)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what} must have at least one dimension (the action dim), got a scalar")
    if action_dim is not None and arr.shape[-1] != action_dim:
        raise ValueError(f"{what} last dimension must be {action_dim}, got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} contain NaN/inf (first at index {tuple(int(i) for i in bad)})")
    return arr
