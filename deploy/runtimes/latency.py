"""A slow policy on demand: `DelayedRuntime` pads every inference of a runtime to a fixed latency, for
experiments and tests of control under a policy slower than the control period (`vla control
--inject-latency-ms`, `scripts/bench_async.py`). Torch-free.

    rt = DelayedRuntime(make_runtime("onnx", "exports/x"), latency_ms=190)   # every infer takes >= 190 ms
    rt.last_timings["injected_ms"]                                            # the sleep added to the last call

The wrapped runtime's own time counts towards the latency (the call sleeps only the remainder), so
`latency_ms` is what a user reads off their real policy ("OpenVLA takes 336 ms on the Orin"). A policy
already slower than it is not slowed further.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from vla.policy_io import ActionChunk
from vla.runtime import Runtime


class DelayedRuntime(Runtime):
    def __init__(self, inner: Runtime, latency_ms: float) -> None:
        super().__init__()
        if not latency_ms >= 0:
            raise ValueError(f"latency_ms={latency_ms}: must be >= 0")
        self.inner, self.latency_s = inner, latency_ms / 1000.0
        self.execute_steps = inner.execute_steps
        self.io = getattr(inner, "io", None)  # the transforms, where the runtime has them (token ids per step)
        self.mode = getattr(inner, "mode", None)  # its decoding mode override, where it has one

    @property
    def supports_prefix(self) -> bool:
        return bool(getattr(self.inner, "supports_prefix", False))

    def infer_batch(self, observations: Sequence[dict[str, Any]], prefix_ids: Any = None) -> ActionChunk:
        t0 = time.perf_counter()
        out = (self.inner.infer_batch(observations) if prefix_ids is None
               else self.inner.infer_batch(observations, prefix_ids=prefix_ids))
        rest = self.latency_s - (time.perf_counter() - t0)
        if rest > 0:
            time.sleep(rest)
        self.last_timings = {**self.inner.last_timings, "injected_ms": max(0.0, rest) * 1e3}
        return out

    def reset(self) -> None:
        self.inner.reset()
