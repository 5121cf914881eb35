"""The inference worker of asynchronous control: one thread runs `runtime.infer` while the control loop keeps
ticking. Torch-free (the runtime brings its own backend).

    planner = AsyncPlanner(runtime).start()
    planner.submit(req, obs)            # req: vla.splicing.PlanRequest; the newest submission wins
    for r in planner.poll():            # PlanResult(request, chunk, latency_s): finished since the last poll
        splicer.deliver(r.request, r.chunk, t)
    planner.close()

Newest wins: a submission that the worker has not started yet is replaced by a newer one (the replaced one
comes back from `poll` with `chunk=None, superseded=True`), so the worker never plans on an observation older
than the newest it was given. A running inference cannot be interrupted; its result is delivered and the
splicer decides whether it is still useful. An exception in the runtime is re-raised by the next `poll`
(never swallowed into a silent hold).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from vla.policy_io import ActionChunk
from vla.runtime import Runtime


@dataclass(frozen=True)
class PlanResult:
    request: Any  # the PlanRequest submitted
    chunk: ActionChunk | None  # None: superseded before it started
    latency_s: float  # submit -> result (queueing included)
    superseded: bool = False


class AsyncPlanner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._cv = threading.Condition()
        self._pending: tuple[Any, dict, float] | None = None
        self._running = False
        self._done: list[PlanResult] = []
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> AsyncPlanner:
        self._thread = threading.Thread(target=self._work, name="planner", daemon=True)
        self._thread.start()
        return self

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running or self._pending is not None

    def submit(self, request: Any, obs: dict) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("planner is closed")
            if self._pending is not None:  # not started yet: the newer observation replaces it
                old, _, t0 = self._pending
                self._done.append(PlanResult(old, None, time.perf_counter() - t0, superseded=True))
            self._pending = (request, obs, time.perf_counter())
            self._cv.notify()

    def poll(self) -> list[PlanResult]:
        """Results finished since the last poll (oldest first); re-raises an error of the runtime."""
        with self._cv:
            if self._error is not None:
                err, self._error = self._error, None
                raise RuntimeError(f"the policy failed in the inference worker: {type(err).__name__}: {err}") from err
            out, self._done = self._done, []
            return out

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running (tests); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not (self._running or self._pending), timeout)

    def close(self, timeout: float = 600.0) -> None:
        """Stop the worker; an inference in progress cannot be interrupted, so this waits for it to end (a
        worker still running after `timeout` s is an error: the runtime would be shared by two episodes)."""
        with self._cv:
            self._closed = True
            self._pending = None
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the inference worker did not finish its request within {timeout:g} s")
            self._thread = None

    def __enter__(self) -> AsyncPlanner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                (req, obs, t0), self._pending = self._pending, None
                self._running = True
            try:
                prefix = getattr(req, "prefix_ids", None)
                chunk = self.runtime.infer(obs, prefix_ids=prefix) if prefix is not None else self.runtime.infer(obs)
                result, error = PlanResult(req, chunk, time.perf_counter() - t0), None
            except BaseException as e:  # reported to the control thread by poll()
                result, error = None, e
            with self._cv:
                self._running = False
                if error is not None:
                    self._error = error
                else:
                    self._done.append(result)
                self._cv.notify_all()
