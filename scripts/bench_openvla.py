"""Per-action latency of a converted OpenVLA checkpoint: vla's KV loop and ONNX Runtime against generate()
(what OpenVLA's predict_action runs) on the same weights and inputs, batch 8 against 8 x batch 1, and the
peak memory of each path (each runs in a fresh child process).

    python scripts/bench_openvla.py --out benchmarks/openvla_latency.json               # ~0.5B, CPU
    python scripts/bench_openvla.py --preset 7b --device cuda --no-onnx --out ...       # GPU machine
    python scripts/bench_openvla.py --reference-python /work/refenv_openvla/bin/python \\
        --reference-code /tmp/openvla_ref ...                                             # + the reference itself

The checkpoint is synthetic (random weights in OpenVLA's exact format, `vla.convert.synthetic`), so the
numbers are about speed, not actions. Paths:
- `vla_kv`: `TorchRuntime` (KV-cached layer loop, `vla.model.decoding`), what `vla control --runtime torch` runs;
- `generate`: transformers `generate()` on the same converted weights (`generate_baseline`): the decoding
  predict_action does, without OpenVLA's code;
- `onnx`: `OnnxRuntime` over the exported graphs (CPU provider);
- `reference`: OpenVLA's own `predict_action` in its own environment (transformers 4.40.1, timm 0.9.10),
  when `--reference-python` and `--reference-code` are given (scripts/make_openvla_fixture.py builds it).
With `--bandwidth-gbs`, the roofline: bytes of weights read per decoded token / bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {  # synthetic shapes: towers (one width for both), Llama
    "mini": dict(tower_width=1024, tower_depth=6, dino_mlp=4096, siglip_mlp=4304, llm_hidden=1024, llm_layers=8,
                 llm_heads=16, llm_intermediate=2816),
    "tiny": dict(tower_width=64, tower_depth=3, dino_mlp=256, siglip_mlp=200, llm_hidden=64, llm_layers=2,
                 llm_heads=4, llm_intermediate=128),
    "7b": dict(tower_width=1024, tower_depth=24, dino_mlp=4096, siglip_mlp=4304, llm_hidden=4096, llm_layers=32,
               llm_heads=32, llm_intermediate=11008),
}
INSTRUCTIONS = ("pick up the red block", "put the spoon on the towel", "move the cube to the left",
                "open the drawer", "stack the blue cube on the green cube", "push the button", "wipe the table",
                "close the lid")


def _observations(n: int, camera: str = "agentview") -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [{camera: rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), "instruction": INSTRUCTIONS[i % 8]}
            for i in range(n)]


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def child(path: str, ckpt: str, onnx_dir: str, reps: int, device: str, threads: int) -> dict:
    """One measured path in this (fresh) process -> {"ms": [...], "batch8_ms": [...], "peak_rss": bytes}."""
    import torch

    torch.set_num_threads(threads)
    obs = _observations(8)
    res: dict = {"path": path}
    if path in ("vla_kv", "generate"):
        from vla.model.decoding import generate_baseline, to_tensors
        from vla.model.runtime import TorchRuntime

        dtype = torch.bfloat16 if device.startswith("cuda") else None
        rt = TorchRuntime.from_checkpoint(ckpt, device=device)
        if dtype is not None:
            rt.policy.to(dtype)
        if path == "vla_kv":
            one = lambda: rt.infer(obs[0])  # noqa: E731
            eight = lambda: rt.infer_batch(obs)  # noqa: E731
        else:
            feeds = to_tensors(rt.io.inputs(obs[:1]), rt.device)
            one = lambda: generate_baseline(rt.policy, feeds)  # noqa: E731
            eight = None  # generate_baseline (like OpenVLA's predict_action) runs batch 1 only
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    elif path == "onnx":
        from deploy.runtimes import make_runtime

        rt = make_runtime("onnx", onnx_dir)
        one = lambda: rt.infer(obs[0])  # noqa: E731
        eight = lambda: rt.infer_batch(obs)  # noqa: E731
        sync = lambda: None  # noqa: E731
    else:
        raise ValueError(path)
    with torch.inference_mode():
        one()  # warm-up
        res["ms"] = _time(lambda: (one(), sync()), reps)
        if eight is not None:
            eight()
            res["batch8_ms"] = _time(lambda: (eight(), sync()), max(2, reps // 2))
    res["peak_rss"] = _hwm_bytes()
    if device.startswith("cuda"):
        res["peak_cuda"] = int(torch.cuda.max_memory_allocated())
    return res


REFERENCE_CHILD = r'''
import json, sys, time, importlib.util, numpy as np, torch
from pathlib import Path
from PIL import Image
script, code, ckpt, reps, key, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
spec = importlib.util.spec_from_file_location("make_openvla_fixture", script)
fx = importlib.util.module_from_spec(spec); spec.loader.exec_module(fx)
fx._torchvision_shim()
# the reference builds its towers from the timm ids alone: give timm the synthetic checkpoint's sizes
from safetensors import safe_open
index = Path(ckpt) / "model.safetensors.index.json"
if index.is_file():
    idx = json.loads(index.read_text())["weight_map"]
else:
    with safe_open(str(Path(ckpt) / "model.safetensors"), "pt") as f:
        idx = {k: "model.safetensors" for k in f.keys()}
def shape(name):
    with safe_open(str(Path(ckpt) / idx[name]), "pt") as f:
        return f.get_slice(name).get_shape()
cfg = json.loads((Path(ckpt) / "config.json").read_text())
for i, tid in enumerate(cfg["timm_model_ids"]):
    p = "vision_backbone." + ("featurizer." if i == 0 else "fused_featurizer.")
    width = shape(p + "pos_embed")[-1]
    depth = 1 + max(int(k.split(".")[3]) for k in idx if k.startswith(p + "blocks."))
    fx.TOWER_OVERRIDES[tid] = {"depth": depth, "embed_dim": width, "mlp_ratio": shape(p + "blocks.0.mlp.fc1.weight")[0] / width}
fx.patch_timm_create_model()
_, mdl, prc = fx.import_reference(Path(code))
from transformers import AutoTokenizer
torch.set_num_threads(threads)
model = mdl.OpenVLAForActionPrediction.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
proc = prc.PrismaticProcessor(prc.PrismaticImageProcessor.from_pretrained(ckpt), AutoTokenizer.from_pretrained(ckpt))
img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))
inputs = proc("In: What action should the robot take to pick up the red block?\nOut:", img)
def run():
    with torch.inference_mode():
        model.predict_action(**inputs, unnorm_key=key, do_sample=False)
run()
ms = []
for _ in range(reps):
    t = time.perf_counter(); run(); ms.append((time.perf_counter() - t) * 1e3)
hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"path": "reference", "ms": ms, "peak_rss": hwm}))
'''


def _stats(ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": float(np.median(a)), "mean_ms": float(a.mean()), "min_ms": float(a.min()),
            "max_ms": float(a.max())}


def _run_child(args: list[str]) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args[:4]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/openvla_latency.json")
    ap.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    ap.add_argument("--work", help="scratch dir (default: a temp dir, removed)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], help="paths not to measure (kept from --merge)")
    ap.add_argument("--merge", help="a previous JSON whose results fill in the skipped paths")
    ap.add_argument("--reference-python", help="python of the reference venv (transformers 4.40.1, timm 0.9.10)")
    ap.add_argument("--reference-code", help="dir with OpenVLA's prismatic/extern/hf/*.py (not committed)")
    ap.add_argument("--bandwidth-gbs", type=float, help="memory bandwidth for the roofline (H200: 4800)")
    ap.add_argument("--child", nargs=4, metavar=("PATH", "CKPT", "ONNX", "REPS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        path, ckpt, onnx_dir, reps = args.child
        print(json.dumps(child(path, ckpt, onnx_dir, int(reps), args.device, args.threads)))
        return 0

    import torch

    from vla.convert.openvla import convert_openvla
    from vla.convert.safetensors_stream import read_header, shard_files
    from vla.convert.synthetic import make_synthetic_openvla

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_openvla_"))
    work.mkdir(parents=True, exist_ok=True)
    shape = PRESETS[args.preset]
    src, ckpt, onnx_dir = work / "src", work / "ckpt", work / "onnx"
    if not src.exists():
        make_synthetic_openvla(src, fused=True, unnorm_keys=("bridge_orig",), max_shard_bytes=2 << 30, **shape)
    if not ckpt.exists():
        convert_openvla(src, ckpt, dtype="fp32" if args.device == "cpu" else "bf16")
    results = {}
    if not args.no_onnx and not onnx_dir.exists():
        from deploy.export import export_onnx
        from vla.model.policy import VLAPolicy
        from vla.policy_io import PolicyIO

        t = time.perf_counter()
        export_onnx(VLAPolicy.from_pretrained(ckpt), PolicyIO.load(ckpt), onnx_dir)
        results["export_s"] = round(time.perf_counter() - t, 1)
    me = [sys.executable, str(Path(__file__).resolve()), "--device", args.device, "--threads", str(args.threads)]
    paths = [p for p in ["vla_kv", "generate"] + ([] if args.no_onnx else ["onnx"]) if p not in args.skip]
    for p in paths:
        r = _run_child([*me, "--child", p, str(ckpt), str(onnx_dir), str(args.reps)])
        results[p] = {"batch1": _stats(r["ms"]), "peak_rss_bytes": r["peak_rss"]}
        if "batch8_ms" in r:
            b8 = _stats(r["batch8_ms"])
            results[p]["batch8"] = b8
            results[p]["batch8_speedup"] = 8 * results[p]["batch1"]["p50_ms"] / b8["p50_ms"]
        if "peak_cuda" in r:
            results[p]["peak_cuda_bytes"] = r["peak_cuda"]
        print(p, json.dumps(results[p]))
    if args.reference_python and args.reference_code:
        r = _run_child([args.reference_python, "-c", REFERENCE_CHILD, str(ROOT / "scripts" / "make_openvla_fixture.py"),
                        args.reference_code, str(src), str(args.reps), "bridge_orig", str(args.threads)])
        results["reference"] = {"batch1": _stats(r["ms"]), "peak_rss_bytes": r["peak_rss"]}
        print("reference", json.dumps(results["reference"]))
    if args.merge:
        old = json.loads(Path(args.merge).read_text())["results"]
        for k, v in old.items():
            results.setdefault(k, v)
    paths = [p for p in ("vla_kv", "generate", "onnx") if p in results]
    base = results.get("reference", results["generate"])["batch1"]["p50_ms"]
    ratios = {p: base / results[p]["batch1"]["p50_ms"] for p in paths if p in results}
    lm_bytes = sum(i.nbytes for f in shard_files(ckpt) for k, i in read_header(f)[0].items() if k.startswith("lm."))
    report = {
        "command": " ".join(["python", "scripts/bench_openvla.py", *(argv if argv is not None else sys.argv[1:])]),
        "preset": args.preset, "shape": shape, "device": args.device, "threads": args.threads,
        "params": {"lm_bytes": lm_bytes, "total_bytes": sum(f.stat().st_size for f in shard_files(ckpt))},
        "results": results, "speedup_vs": "reference" if "reference" in results else "generate", "speedup": ratios,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
    }
    if args.bandwidth_gbs:
        report["roofline_ms_per_token"] = lm_bytes / (args.bandwidth_gbs * 1e9) * 1e3
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps({"speedup": ratios, "out": str(out)}))
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
