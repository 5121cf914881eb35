"""Deploy export path: policy -> ONNX graphs (+ manifest) -> TensorRT engines.

    from deploy.export import export_onnx, check_export_dir
    export_onnx(policy, io, "exports/x")        # graphs + manifest.json + weightless policy/ dir
    check_export_dir("exports/x")               # TensorRT 10.3 portability check (ValueError on problems)
    build_engines("exports/x", "engines/x", EngineBuildConfig(precision="fp16"))   # deploy.export.tensorrt_build

CLI: `vla export onnx ...`, `vla export tensorrt ...` (vla/cli/export.py). Runtimes live in
deploy/runtimes/ (the exporter never imports them).
"""

from deploy.export.onnx_export import export_onnx
from deploy.export.opcheck import check_export_dir, check_graph
from deploy.manifest import MANIFEST_FORMAT, load_manifest

__all__ = ["MANIFEST_FORMAT", "check_export_dir", "check_graph", "export_onnx", "load_manifest"]
