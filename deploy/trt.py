"""TensorRT probing (leaf module: imports nothing of `deploy`): which TensorRT is installed, which GPU.

    trt, flavor = import_tensorrt()       # `tensorrt` (JetPack 6 = 10.3, datacenter) or `tensorrt_rtx` (RTX, CPU builds)
    gpu_description()                     # "NVIDIA H200 (sm_90)" or "none"
"""

from __future__ import annotations

import importlib
from typing import Any


def import_tensorrt() -> tuple[Any, str]:
    """(module, flavor) for whichever TensorRT is installed; ImportError naming both tries otherwise."""
    errors = []
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            return importlib.import_module(name), name
        except ImportError as e:  # noqa: PERF203 - two tries
            errors.append(f"{name}: {e}")
    raise ImportError("no TensorRT Python package: " + "; ".join(errors)
                      + " (Jetson: JetPack 6 ships python3-libnvinfer; RTX: pip install tensorrt-rtx)")


def gpu_description() -> str:
    """The CUDA device 0 name + compute capability, or 'none' when torch sees no GPU.

    torch is how the TensorRT runtime allocates device memory, so it is required here: without it this
    raises ImportError rather than pretending there is no GPU."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"gpu_description needs torch to query CUDA devices ({e}); install torch "
                          "(JetPack: NVIDIA's torch wheel)") from None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name} (sm_{p.major}{p.minor})"
    return "none"
