"""`vla export`: policy checkpoint -> ONNX graphs (+ manifest) -> TensorRT engines.

    vla export onnx --checkpoint runs/x/checkpoint --out exports/x [--max-batch 8] [--opset 17] [--dtype fp16]
    vla export tensorrt --onnx exports/x --out engines/x --precision fp32|fp16|int8 [--calib-dataset DIR]

`onnx` checks every graph for TensorRT 10.3 portability and prints the manifest summary; `tensorrt` builds one
engine per graph with whichever TensorRT Python package is installed (tensorrt / tensorrt_rtx) and prints the
equivalent trtexec commands (run them on a Jetson: engines must be built on the device that runs them).
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a policy to ONNX graphs and TensorRT engines")
    esub = p.add_subparsers(dest="export_command", metavar="TARGET", required=True)
    o = esub.add_parser("onnx", help="checkpoint -> ONNX graphs + manifest.json (TensorRT 10.3 portable)")
    o.add_argument("--checkpoint", required=True, metavar="DIR", help="vla.model.VLAPolicy checkpoint")
    o.add_argument("--out", required=True, metavar="DIR")
    o.add_argument("--max-batch", type=int, default=8, help="largest batch the TensorRT profiles allow")
    o.add_argument("--opset", type=int, default=17, help="ONNX opset (<= 19 for TensorRT 10.3)")
    o.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="weights / activations of the graphs (fp16: TensorRT-RTX builds fp16 engines from it; "
                        "bf16: for TensorRT, ONNX Runtime's CPU provider has few bf16 kernels)")
    o.set_defaults(func=onnx_cmd)
    t = esub.add_parser("tensorrt", help="ONNX export dir -> TensorRT engines (+ trtexec commands)")
    t.add_argument("--onnx", required=True, metavar="DIR", help="directory written by `vla export onnx`")
    t.add_argument("--out", required=True, metavar="DIR")
    t.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    t.add_argument("--graphs", nargs="*", default=[], help="subset of graphs (default: all in the manifest)")
    t.add_argument("--calib-dataset", metavar="DIR", help="int8: LeRobot dataset to calibrate on")
    t.add_argument("--calib-samples", type=int, default=64)
    t.add_argument("--workspace-mb", type=int, default=1024)
    t.add_argument("--compute-capability", help="tensorrt_rtx without a GPU: target, e.g. SM89")
    t.set_defaults(func=tensorrt_cmd)


def onnx_cmd(args: argparse.Namespace) -> int:
    import torch

    from deploy.export import check_export_dir, export_onnx
    from vla.model.policy import VLAPolicy
    from vla.policy_io import PolicyIO

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    policy = VLAPolicy.from_pretrained(args.checkpoint, dtype=dtype)
    m = export_onnx(policy, PolicyIO.load(args.checkpoint), args.out, opset=args.opset, max_batch=args.max_batch)
    check_export_dir(args.out)
    summary = {"out": str(args.out), "opset": m["opset"], "decoding": m["decoding"], "dtype": m["dtype"],
               "graphs": {k: {"inputs": {i["name"]: i["shape"] for i in g["inputs"]},
                              "outputs": {o["name"]: o["shape"] for o in g["outputs"]}} for k, g in m["graphs"].items()}}
    print(json.dumps(summary, indent=2))
    return 0


def tensorrt_cmd(args: argparse.Namespace) -> int:
    from deploy.export.tensorrt_build import EngineBuildConfig, build_engines

    cfg = EngineBuildConfig(precision=args.precision, graphs=tuple(args.graphs), workspace_mb=args.workspace_mb,
                            compute_capability=args.compute_capability)
    calibration = None
    if args.precision == "int8":  # the composition root wires runtime -> builder (the builder imports no runtime)
        if not args.calib_dataset:
            raise ValueError("--precision int8 needs --calib-dataset DIR (a LeRobot dataset to calibrate on)")
        if args.calib_samples < 1:
            raise ValueError(f"--calib-samples {args.calib_samples}: must be >= 1")
        from deploy.runtimes.calibration import calibration_feeds, dataset_observations
        from deploy.runtimes.onnx import OnnxRuntime

        rt = OnnxRuntime(args.onnx, providers=["CPUExecutionProvider"])
        obs = dataset_observations(args.calib_dataset, list(rt.cfg.cameras), args.calib_samples)
        calibration = calibration_feeds(rt, obs)
    m = build_engines(args.onnx, args.out, cfg, calibration=calibration)
    print(json.dumps({"out": str(args.out), **{k: v for k, v in m["tensorrt"].items() if k != "trtexec"}}, indent=2))
    print("# equivalent trtexec commands (Jetson: run them on the device, next to the .onnx files):")
    for cmd in m["tensorrt"]["trtexec"]:
        print(cmd)
    return 0
