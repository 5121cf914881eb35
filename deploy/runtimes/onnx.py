"""ONNX Runtime backend: run an export directory (`vla export onnx`) through the runtime interface. No torch:
a robot computer with onnxruntime, numpy and tokenizers runs `predict_action` from an export directory.

    rt = OnnxRuntime("exports/x")                      # CPU EP; CUDA EP first when onnxruntime-gpu has it
    rt = OnnxRuntime("exports/x", mode="parallel")      # override the policy's decoding mode
    chunk = rt.predict_action(obs)                      # float32 [H, 7], the torch runtime's actions
    rt.last_timings                                     # {"prepare_ms", "encoder_ms", "decode_ms", "postprocess_ms"}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtimes.graph import GraphRuntime


class OnnxRuntime(GraphRuntime):
    """ONNX Runtime sessions, created on first use of each graph."""

    def __init__(self, export_dir: str | Path, mode: str | None = None, providers: Sequence[str] | None = None,
                 threads: int = 0) -> None:
        import onnxruntime as ort

        super().__init__(export_dir, mode)
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            raise ValueError(f"ONNX Runtime providers {missing} are not available (have {available})")
        self.providers = list(providers)
        self.threads = int(threads)
        self._sessions: dict[str, Any] = {}

    def session(self, graph: str) -> Any:
        if graph not in self._sessions:
            import onnxruntime as ort

            if graph not in self.manifest["graphs"]:
                raise ValueError(f"{self.export_dir} has no {graph!r} graph (has {sorted(self.manifest['graphs'])})")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads  # 0 = ORT's default (all cores)
            opts.log_severity_level = 3
            path = self.export_dir / self.manifest["graphs"][graph]["file"]
            self._sessions[graph] = ort.InferenceSession(str(path), opts, providers=self.providers)
        return self._sessions[graph]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.session(graph)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, feeds), strict=True))
