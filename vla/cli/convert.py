"""`vla convert`: another project's checkpoint -> a native vla checkpoint.

    vla convert openvla --checkpoint /models/openvla-7b --out runs/openvla-bridge --unnorm-key bridge_orig
        [--camera agentview] [--dtype bf16|fp16|fp32] [--prompt-len 64] [--restrict-logits]

The result runs in every workflow: `vla eval`, `vla export onnx|tensorrt`, `vla control`, `vla train`.
Nothing is downloaded and none of the checkpoint's Python files run (`vla.convert.openvla`).
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an OpenVLA checkpoint into a vla checkpoint")
    csub = p.add_subparsers(dest="convert_command", metavar="FORMAT", required=True)
    o = csub.add_parser("openvla", help="OpenVLA / Prismatic Hugging Face checkpoint dir -> vla checkpoint")
    o.add_argument("--checkpoint", required=True, metavar="SRC", help="local dir with config.json (model_type openvla)")
    o.add_argument("--out", required=True, metavar="DST")
    o.add_argument("--unnorm-key", help="dataset whose action statistics unnormalize the actions (needed when the "
                   "checkpoint has several)")
    o.add_argument("--camera", default="agentview", help="observation key of the image the policy reads")
    o.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"], help="dtype of the written weights")
    o.add_argument("--prompt-len", type=int, default=64, help="prompt tokens the policy takes (left-padded)")
    o.add_argument("--restrict-logits", action="store_true",
                   help="decode only action ids (vla's mask) instead of OpenVLA's argmax over the whole vocabulary")
    o.add_argument("--keep-case", action="store_true",
                   help="do not lower-case the instruction (OpenVLA's deployment code lower-cases it)")
    o.add_argument("--max-shard-gb", type=float, default=4.0, help="largest output weight shard")
    o.set_defaults(func=openvla_cmd)


def openvla_cmd(args: argparse.Namespace) -> int:
    from vla.convert.openvla import convert_openvla
    from vla.progress import progress

    bar = progress(total=None, desc="convert", unit="tensor")

    def tick(i: int, n: int) -> None:
        bar.total = n
        bar.update(i - bar.n)

    try:
        summary = convert_openvla(args.checkpoint, args.out, unnorm_key=args.unnorm_key, camera=args.camera,
                                  dtype=args.dtype, prompt_len=args.prompt_len, restrict_logits=args.restrict_logits,
                                  lowercase=not args.keep_case,
                                  max_shard_bytes=int(args.max_shard_gb * (1 << 30)), progress=tick)
    finally:
        bar.close()
    print(json.dumps({k: summary[k] for k in ("unnorm_key", "dtype", "towers", "tensors", "seconds")}))
    print(f"wrote {args.out}; next: vla export onnx --checkpoint {args.out} --out {args.out}_onnx")
    return 0
