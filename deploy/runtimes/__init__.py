"""The runtime backends and their one factory.

    rt = make_runtime("torch", "runs/x/checkpoint")             # vla.model.runtime.TorchRuntime
    rt = make_runtime("onnx", "exports/x")                      # deploy.runtimes.onnx.OnnxRuntime (no torch)
    rt = make_runtime("tensorrt", "engines/x", device="cuda:0") # deploy.runtimes.tensorrt.TensorRTRuntime
    chunk = rt.infer(obs)                                       # vla.runtime.Runtime interface

`vla eval` and `vla control` both take `--runtime` through this factory. Each backend is imported only
when asked for, so the ONNX Runtime path never loads torch.
"""

from __future__ import annotations

from pathlib import Path

from vla.runtime import Runtime

RUNTIMES = ("torch", "onnx", "tensorrt")


def make_runtime(kind: str, path: str | Path, device: str = "cpu", mode: str | None = None,
                 threads: int = 0) -> Runtime:
    """`torch`: a checkpoint dir; `onnx`: a `vla export onnx` dir; `tensorrt`: a `vla export tensorrt` dir.

    device: "cpu" or "cuda[:N]"; `mode` overrides the checkpoint's decoding (autoregressive | parallel);
    `threads`: ONNX Runtime intra-op threads (0 = its default)."""
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runtime {kind!r}; available: {RUNTIMES}")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"device={device!r}: expected cpu, cuda or cuda:N")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"--checkpoint {path}: no such directory")
    if kind == "torch":
        from vla.model.runtime import TorchRuntime

        return TorchRuntime.from_checkpoint(path, device=device, mode=mode)
    if kind == "onnx":
        from deploy.runtimes.onnx import OnnxRuntime

        providers = ["CPUExecutionProvider"] if device == "cpu" else ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return OnnxRuntime(path, mode=mode, providers=providers, threads=threads)
    if device == "cpu":
        raise ValueError("runtime 'tensorrt' runs engines on a CUDA GPU: pass device cuda or cuda:N, not cpu "
                         "(for CPU inference use --runtime onnx)")
    from deploy.runtimes.tensorrt import TensorRTRuntime

    return TensorRTRuntime(path, mode=mode, device=int(device.split(":")[1]) if ":" in device else 0)
