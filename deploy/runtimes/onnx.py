"""ONNX Runtime backend: run an export directory (`vla export onnx`) through the runtime interface. No torch:
a robot computer with onnxruntime, numpy and tokenizers runs `predict_action` from an export directory.

    rt = OnnxRuntime("exports/x")                      # CPU EP; CUDA EP first when onnxruntime-gpu has it
    rt = OnnxRuntime("exports/x", mode="parallel")      # override the policy's decoding mode
    rt = OnnxRuntime("exports/x", device_cache=True)    # IO binding: the KV cache never leaves the provider
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
                 threads: int = 0, device_cache: bool | None = None) -> None:
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
        # IO binding: the KV cache stays in the provider's memory between decode steps (None: on CUDA only)
        self.cache_device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.device_cache = (self.cache_device == "cuda") if device_cache is None else bool(device_cache)
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

    def run_device(self, graph: str, feeds: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
        """IO binding: OrtValue feeds are bound as they are, `keep` outputs stay OrtValues in the provider's
        memory (the GPU on CUDA), the rest come back as numpy."""
        if not self.device_cache:
            return self.run(graph, feeds)
        import onnxruntime as ort

        sess = self.session(graph)
        binding = sess.io_binding()
        for name, v in feeds.items():
            if isinstance(v, ort.OrtValue):
                binding.bind_ortvalue_input(name, v)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(v))
        names = [o.name for o in sess.get_outputs()]
        for name in names:
            binding.bind_output(name, self.cache_device if name in keep else "cpu")
        sess.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {n: (v if n in keep else v.numpy()) for n, v in zip(names, values, strict=True)}
