"""Build TensorRT engines from an ONNX export directory (`vla export tensorrt`).

    m = build_engines("exports/x", "engines/x", EngineBuildConfig(precision="fp16"))
    vla export tensorrt --onnx exports/x --out engines/x --precision fp16 [--calib-dataset data/pick]
    build_engines("exports/x", "engines/x", EngineBuildConfig(precision="int8"), calibration=feeds)

Uses the TensorRT Python API: `tensorrt` (Jetson / JetPack 6 ships 10.3, datacenter GPUs) or `tensorrt_rtx`
(RTX GPUs; `pip install tensorrt-rtx`; its builder runs without a GPU), whichever imports first.
One optimization profile per engine, batch min/opt/max from the manifest (every other axis is static).
A timing cache (`timing.cache`) is loaded and saved so rebuilds are fast. The engine directory holds the
engines, the export's manifest with a `tensorrt` section recording what built them (flavor, version, GPU,
precision), the `policy/` transforms dir, and `trtexec.sh`: the equivalent trtexec commands for building
on a Jetson, where the engine must be built (engines never port across GPUs or TensorRT versions).

Precision: fp32 everywhere. `tensorrt`: fp16 sets the FP16 flag; int8 sets INT8 (+FP16 fallback) and runs
entropy calibration on feeds the caller computes (`deploy.runtimes.calibration`; needs a GPU). `tensorrt_rtx` is strongly
typed and takes precision from the graph, so fp16/int8 there are refused with the reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.manifest import load_manifest
from deploy.trt import gpu_description, import_tensorrt

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineBuildConfig:
    precision: str = "fp32"
    graphs: tuple[str, ...] = ()  # empty: every graph in the manifest
    workspace_mb: int = 1024
    compute_capability: str | None = None  # tensorrt_rtx without a GPU: target SM, e.g. "SM89"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"EngineBuildConfig.precision={self.precision!r}: must be one of {PRECISIONS}")
        if self.workspace_mb < 16:
            raise ValueError(f"EngineBuildConfig.workspace_mb={self.workspace_mb}: must be >= 16")


def profile_shapes(entry: dict[str, Any], batch: dict[str, int]) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """Manifest graph entry -> {input: (min, opt, max) shapes} with the batch axis from the manifest."""
    out = {}
    for i in entry["inputs"]:
        shapes = tuple([batch[k] if d == "batch" else int(d) for d in i["shape"]] for k in ("min", "opt", "max"))
        out[i["name"]] = shapes
    return out


def trtexec_command(graph: str, entry: dict[str, Any], batch: dict[str, int], precision: str) -> str:
    def fmt(k: int) -> str:
        return ",".join(f"{n}:{'x'.join(map(str, s[k]))}" for n, s in profile_shapes(entry, batch).items())

    flags = {"fp32": "", "fp16": " --fp16", "int8": " --int8 --fp16 --calib=calibration.cache"}[precision]
    return (f"trtexec --onnx={entry['file']} --saveEngine={graph}.engine --minShapes={fmt(0)} --optShapes={fmt(1)}"
            f" --maxShapes={fmt(2)} --timingCacheFile=timing.cache{flags}")


def _calibrator(trt: Any, batches: list[dict[str, np.ndarray]], cache_path: Path) -> Any:
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.it = iter(batches)
            self.keep: list[torch.Tensor] = []

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            b = next(self.it, None)
            if b is None:
                return None
            self.keep = [torch.from_numpy(np.ascontiguousarray(b[n])).cuda() for n in names]
            return [t.data_ptr() for t in self.keep]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            from vla.io import atomic_write_bytes

            atomic_write_bytes(cache_path, bytes(cache))

    return Calibrator()


def build_engines(onnx_dir: str | Path, out: str | Path, cfg: EngineBuildConfig = EngineBuildConfig(),
                  calibration: dict[str, list[dict[str, np.ndarray]]] | None = None) -> dict[str, Any]:
    """Build one engine per graph into `out` (atomically); returns the engine manifest.

    int8 needs `calibration`: per-graph lists of input feeds, computed by the caller
    (`deploy.runtimes.calibration.calibration_feeds`; the builder never runs a runtime itself)."""
    from vla.io import atomic_directory, atomic_write_bytes

    trt, flavor = import_tensorrt()
    onnx_dir = Path(onnx_dir)
    manifest = load_manifest(onnx_dir)
    graphs = cfg.graphs or tuple(manifest["graphs"])
    unknown = set(graphs) - set(manifest["graphs"])
    if unknown:
        raise ValueError(f"unknown graphs {sorted(unknown)}; the export has {sorted(manifest['graphs'])}")
    if flavor == "tensorrt_rtx" and cfg.precision != "fp32":
        raise ValueError(f"precision={cfg.precision!r}: TensorRT-RTX builds strongly typed networks, precision comes "
                         "from the graph: build fp16 from an fp16 export (`vla export onnx --dtype fp16`) with "
                         "--precision fp32 (no flag; int8 would need a Q/DQ-quantized graph)")
    gpu = gpu_description()
    if cfg.precision == "int8":
        if gpu == "none":
            raise ValueError("precision='int8': calibration runs the network on a GPU; none is present")
        if not calibration or any(not calibration.get(g) for g in graphs):
            raise ValueError(f"precision='int8' needs calibration feeds for every graph {list(graphs)} "
                             "(vla export tensorrt --calib-dataset DIR computes them)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_file = Path(out) / "timing.cache"
    cache_bytes = cache_file.read_bytes() if cache_file.is_file() else b""
    entries: dict[str, Any] = {}
    with atomic_directory(out) as tmp:
        for name in graphs:
            entry = manifest["graphs"][name]
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(onnx_dir / entry["file"])):
                errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise ValueError(f"TensorRT could not parse {entry['file']}: {errs}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
            if flavor == "tensorrt_rtx" and cfg.compute_capability:
                known = [n for n in dir(trt.ComputeCapability) if n.startswith("SM")]
                if cfg.compute_capability not in known:
                    raise ValueError(f"compute_capability={cfg.compute_capability!r}: {flavor} knows {known}")
                config.num_compute_capabilities = 1
                config.set_compute_capability(getattr(trt.ComputeCapability, cfg.compute_capability), 0)
            if gpu != "none":  # a timing cache records measured tactics: without a GPU there is nothing to time
                config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
            if cfg.precision in ("fp16", "int8"):
                config.set_flag(trt.BuilderFlag.FP16)
            if cfg.precision == "int8":
                config.set_flag(trt.BuilderFlag.INT8)
                config.int8_calibrator = _calibrator(trt, calibration[name], tmp / f"{name}.calib.cache")
            profile = builder.create_optimization_profile()
            for inp, (lo, opt, hi) in profile_shapes(entry, manifest["batch"]).items():
                profile.set_shape(inp, lo, opt, hi)
            config.add_optimization_profile(profile)
            if cfg.precision == "int8":
                config.set_calibration_profile(profile)  # dynamic batch: calibration batches (B=1) use this profile
            plan = builder.build_serialized_network(network, config)
            if plan is None:
                raise ValueError(f"TensorRT failed to build {name} (see the log above)")
            atomic_write_bytes(tmp / f"{name}.engine", bytes(plan))
            if gpu != "none":
                cache_bytes = bytes(config.get_timing_cache().serialize())
            entries[name] = {"engine": f"{name}.engine", "profile": profile_shapes(entry, manifest["batch"])}
        if cache_bytes:
            atomic_write_bytes(tmp / "timing.cache", cache_bytes)
        shutil.copytree(onnx_dir / manifest["tokenizer"]["dir"], tmp / manifest["tokenizer"]["dir"])
        cmds = [trtexec_command(g, manifest["graphs"][g], manifest["batch"], cfg.precision) for g in graphs]
        (tmp / "trtexec.sh").write_text("#!/bin/sh\n# build on the target device, next to the .onnx files\nset -e\n"
                                        + "\n".join(cmds) + "\n")
        manifest["graphs"] = {g: {**manifest["graphs"][g], **entries[g]} for g in graphs}
        manifest["tensorrt"] = {"flavor": flavor, "version": trt.__version__, "precision": cfg.precision,
                                "graph_dtype": manifest.get("dtype", "fp32"),
                                "gpu": gpu, "compute_capability": cfg.compute_capability,
                                "timing_cache": bool(cache_bytes), "trtexec": cmds}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
