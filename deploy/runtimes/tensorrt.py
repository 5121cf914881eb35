"""TensorRT backend: run an engine directory (`vla export tensorrt`) through the `Runtime` interface.

    rt = TensorRTRuntime("engines/x")                  # refuses engines built by another TensorRT / GPU
    chunk = rt.predict_action(obs)                     # float32 [H, 7]
    rt.last_timings                                    # prepare/encoder/decode/postprocess + per-engine GPU ms

The decoding loop and the model's transforms come from `deploy.runtimes.graph.GraphRuntime`; this class only
executes engines. I/O lives in torch CUDA tensors (torch is already a dependency; no pycuda); host inputs are
copied to the device per call and outputs back, except the KV cache, which stays on the device from prefill
through every decode step (`run_device`); each engine call is timed with CUDA events.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deploy.runtimes.graph import GraphRuntime
from deploy.trt import gpu_description, import_tensorrt


def check_engine_compatible(manifest: dict[str, Any], flavor: str, version: str, gpu: str) -> None:
    """ValueError with the reason when the engines were built by another TensorRT or for another GPU."""
    built = manifest.get("tensorrt")
    if built is None:
        raise ValueError("this directory holds ONNX graphs, not engines: use OnnxRuntime, or build engines with "
                         "`vla export tensorrt`")
    if (built["flavor"], built["version"]) != (flavor, version):
        raise ValueError(f"engines were built by {built['flavor']} {built['version']}, this process has {flavor} "
                         f"{version}: engines do not port across TensorRT versions; rebuild them on this machine "
                         "(`vla export tensorrt` or the trtexec.sh next to them)")
    if built["gpu"] != gpu and not (built["gpu"] == "none" and flavor == "tensorrt_rtx"):
        raise ValueError(f"engines were built for GPU {built['gpu']!r}, this machine has {gpu!r}: engines do not "
                         "port across GPUs; rebuild them here")


class TensorRTRuntime(GraphRuntime):
    def __init__(self, engine_dir: str | Path, mode: str | None = None, device: int = 0) -> None:
        import torch

        super().__init__(engine_dir, mode)
        trt, flavor = import_tensorrt()
        if not torch.cuda.is_available():
            raise ValueError("TensorRTRuntime needs a CUDA GPU; none is visible to torch")
        check_engine_compatible(self.manifest, flavor, trt.__version__, gpu_description())
        self.trt = trt
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self._engines: dict[str, tuple[Any, Any]] = {}
        self._dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                        trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool}

    def _engine(self, graph: str) -> tuple[Any, Any]:
        if graph not in self._engines:
            entry = self.manifest["graphs"].get(graph)
            if entry is None or "engine" not in entry:
                raise ValueError(f"{self.export_dir} has no engine for {graph!r}")
            engine = self.runtime.deserialize_cuda_engine((self.export_dir / entry["engine"]).read_bytes())
            if engine is None:
                raise ValueError(f"TensorRT could not deserialize {entry['engine']} (see the log above)")
            self._engines[graph] = (engine, engine.create_execution_context())
        return self._engines[graph]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_device(graph, feeds)

    def run_device(self, graph: str, feeds: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
        """Feeds that are CUDA tensors are bound as they are; outputs in `keep` stay CUDA tensors (the KV
        cache between decode steps), the rest are copied to the host."""
        import torch

        engine, ctx = self._engine(graph)
        trt = self.trt
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        alive, outputs = [], {}
        with torch.cuda.stream(self.stream):
            for n in names:
                if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT:
                    v, want = feeds[n], self._dtypes[engine.get_tensor_dtype(n)]
                    if isinstance(v, torch.Tensor):  # already on the device (a kept output): no host round trip
                        t = v.to(self.device, want).contiguous()
                    else:
                        t = torch.from_numpy(np.ascontiguousarray(v)).to(self.device, want)
                    ctx.set_input_shape(n, tuple(t.shape))
                    ctx.set_tensor_address(n, t.data_ptr())
                    alive.append(t)
            for n in names:
                if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT:
                    out = torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=self._dtypes[engine.get_tensor_dtype(n)],
                                      device=self.device)
                    ctx.set_tensor_address(n, out.data_ptr())
                    outputs[n] = out
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self.stream)
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to execute {graph}")
            end.record(self.stream)
        self.stream.synchronize()
        key = f"trt_{graph}_ms"
        self.last_timings[key] = self.last_timings.get(key, 0.0) + start.elapsed_time(end)
        return {n: (t if n in keep else t.cpu().numpy()) for n, t in outputs.items()}

    def infer_batch(self, observations, prefix_ids=None):
        for k in [k for k in self.last_timings if k.startswith("trt_")]:
            self.last_timings[k] = 0.0  # per-engine GPU time accumulates over the decode steps of one call
        return super().infer_batch(observations, prefix_ids=prefix_ids)
