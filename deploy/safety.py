"""Bridge-side action safety: validation, per-step clamps, a workspace box, and the watchdog.

    filt = SafetyFilter(SafetyConfig(max_translation_m=0.05))
    verdict = filt.check(action, ee_pos)      # Verdict(action float64 [7] | None, status, reason, clamped)
    floats, reason = filt.validate(action)    # the checks `check` rejects on, without clamping (on receipt)
    wd = Watchdog(timeout_s=0.2); wd.feed(now_ns); wd.check(now_ns) -> True when tripped

Everything here runs on the robot side, after the network: a policy on another machine can send
anything, so nothing it sends reaches the robot unfiltered. Action convention (DESIGN.md):
`[dx, dy, dz, drx, dry, drz, gripper]`, metres and axis-angle radians in the robot base frame,
gripper in [-1, 1] (-1 open). Rejected actions (NaN/inf, wrong shape) are never clamped into
something "valid": the bridge holds instead and reports the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ACTION_DIM = 7
_SHAPE = (ACTION_DIM,)


@dataclass(frozen=True)
class SafetyConfig:
    """Per-step limits. The translation/rotation clamps scale the vector down to the norm limit
    (direction kept); the workspace box clips the commanded tcp target `ee_pos + delta` per axis."""

    max_translation_m: float = 0.05  # per control step (0.5 m/s at 10 Hz)
    max_rotation_rad: float = 0.3  # per control step, axis-angle norm
    workspace_low: tuple[float, float, float] = (0.1, -0.5, 0.0)  # m, base frame
    workspace_high: tuple[float, float, float] = (0.85, 0.5, 0.6)
    watchdog_s: float = 0.2  # no valid action for this long => hold and report

    def __post_init__(self) -> None:
        if not self.max_translation_m > 0:
            raise ValueError(f"max_translation_m={self.max_translation_m}: must be > 0 m")
        if not self.max_rotation_rad > 0:
            raise ValueError(f"max_rotation_rad={self.max_rotation_rad}: must be > 0 rad")
        if len(self.workspace_low) != 3 or len(self.workspace_high) != 3:
            raise ValueError(f"workspace_low/high={self.workspace_low}/{self.workspace_high}: need 3 values each")
        if any(not lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise ValueError(f"workspace_low={self.workspace_low} must be < workspace_high={self.workspace_high} "
                             "on every axis")
        if not self.watchdog_s > 0:
            raise ValueError(f"watchdog_s={self.watchdog_s}: must be > 0 s")


@dataclass(frozen=True)
class Verdict:
    action: np.ndarray | None  # float64 [7] to execute, None when rejected
    status: str  # "ok" | "clamped" | "rejected"
    reason: str = ""


class SafetyFilter:
    def __init__(self, config: SafetyConfig) -> None:
        self.config = config
        self._low = [float(x) for x in config.workspace_low]
        self._high = [float(x) for x in config.workspace_high]

    def validate(self, action: Any) -> tuple[list[float] | None, str]:
        """What an action is rejected for (shape, dtype, NaN/inf), without clamping: the bridge checks
        this on receipt and clamps at execution, at the pose of that moment. Returns the action as 7
        python floats (a private copy: cheaper than numpy at this size) and "", or None and the reason."""
        a = action if type(action) is np.ndarray else np.asarray(action)
        if a.shape != _SHAPE:
            return None, f"action shape {a.shape}, expected ({ACTION_DIM},)"
        if a.dtype.kind not in "fiu":
            return None, f"action dtype {a.dtype} is not numeric"
        v = list(map(float, a.tolist()))
        if not all(map(math.isfinite, v)):
            return None, "action has NaN/inf"
        return v, ""

    def check(self, action: Any, ee_pos: np.ndarray | None) -> Verdict:
        """Validate and clamp one action. `ee_pos` (m, base frame) enables the workspace box."""
        v, why = self.validate(action)
        if v is None:
            return Verdict(None, "rejected", why)
        reasons = []
        cfg = self.config
        for lo, limit, what in ((0, cfg.max_translation_m, "translation"), (3, cfg.max_rotation_rad, "rotation")):
            n = math.sqrt(v[lo] ** 2 + v[lo + 1] ** 2 + v[lo + 2] ** 2)
            if n > limit:
                for i in range(lo, lo + 3):
                    v[i] *= limit / n
                reasons.append(f"{what} {n:.4g} > {limit:.4g}")
        if ee_pos is not None:
            # a tcp already outside the box may move back towards it but never further out
            clipped = False
            for i, p in enumerate(np.asarray(ee_pos, dtype=np.float64).reshape(3).tolist()):
                target = p + v[i]
                lo, hi = min(self._low[i], p), max(self._high[i], p)
                if not lo <= target <= hi:
                    v[i] = min(max(target, lo), hi) - p
                    clipped = True
            if clipped:
                reasons.append("workspace box")
        if not -1.0 <= v[6] <= 1.0:
            reasons.append(f"gripper {v[6]:.4g} outside [-1, 1]")
            v[6] = min(max(v[6], -1.0), 1.0)
        return Verdict(np.array(v), "clamped" if reasons else "ok", "; ".join(reasons))


class Watchdog:
    """Trips when no valid action was fed for `timeout_s`; counts trips (transitions into tripped)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_ns = int(timeout_s * 1e9)
        self.last_feed_ns: int | None = None
        self.tripped = True  # nothing fed yet: the robot holds until a controller speaks
        self.trips = 0

    def feed(self, now_ns: int) -> None:
        self.last_feed_ns = now_ns
        self.tripped = False

    def check(self, now_ns: int) -> bool:
        if not self.tripped and (self.last_feed_ns is None or now_ns - self.last_feed_ns > self.timeout_ns):
            self.tripped = True
            self.trips += 1
        return self.tripped

    def reset(self) -> None:
        self.last_feed_ns = None
        self.tripped = True
