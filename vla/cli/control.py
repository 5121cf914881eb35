"""`vla control`: run a policy in a fixed-rate control loop against a robot bridge.

    vla control --connect tcp://127.0.0.1:5555 --expert PickCube --episodes 3          # scripted expert
    vla control --connect tcp://robot:5555 --checkpoint runs/policy --hz 10 --chunk-mode ensemble
    vla control --connect tcp://robot:5555 --runtime tensorrt --checkpoint engines/policy      # exported model
    vla control --connect tcp://robot:5555 --checkpoint runs/ar --async --splice prefix       # slow policy
    vla control ... --inject-latency-ms 190          # every inference takes >= 190 ms (experiments)

Receding horizon (the default chunk mode) re-plans every `--replan-every` steps; left out, the checkpoint's
`action.execute_steps` (how its `vla eval` results were measured), else every step.

--async runs inference in a worker thread on the newest observation while the current chunk keeps playing;
a chunk that arrives d ticks late is spliced in with --splice switch | ensemble | prefix (prefix-forced
decoding: the committed actions' tokens start the new chunk; autoregressive token policies, or parallel
ones trained with action.prefix_conditioning). See
deploy.control and vla.splicing.

Prints one JSON line per episode (success, steps, action statuses, tick-period stats) and a summary;
--out writes them as JSON. Exit status 1 when the bridge stops answering (the error names it).
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("control", help="run a policy against a robot bridge at a fixed rate")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR",
                     help="torch: a VLAPolicy checkpoint; onnx: a `vla export onnx` dir; tensorrt: an engine dir")
    src.add_argument("--expert", metavar="TASK", help="the sim task's scripted expert as the policy")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx", "tensorrt"],
                   help="backend that runs --checkpoint (see deploy.runtimes.make_runtime)")
    p.add_argument("--connect", default="tcp://127.0.0.1:5555")
    p.add_argument("--hz", type=float, default=None, help="control rate (default: the bridge's)")
    p.add_argument("--chunk-mode", default="receding", choices=["open_loop", "receding", "ensemble"])
    p.add_argument("--replan-every", type=int, default=None,
                   help="receding horizon: re-plan every k steps (default: the checkpoint's action.execute_steps, else 1)")
    p.add_argument("--ensemble-m", type=float, default=0.01)
    p.add_argument("--async", dest="async_inference", action="store_true",
                   help="infer in a worker while the current chunk plays (for policies slower than the tick)")
    p.add_argument("--splice", default="switch", choices=["switch", "ensemble", "prefix"],
                   help="--async: how a late chunk meets the playing one (default switch)")
    p.add_argument("--inject-latency-ms", type=float, default=None,
                   help="pad every inference to at least this many ms (a slow policy for experiments)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="first episode seed (then seed+1, ...)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-latency-ms", type=float, default=200.0)
    p.add_argument("--timeout", type=float, default=2.0, help="per-request timeout, s")
    p.add_argument("--curve-keys", metavar="DIR")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="inference threads (ONNX Runtime intra-op; torch set_num_threads); 0 = the backend's default")
    p.add_argument("--out", help="write the episode reports as JSON here")
    p.set_defaults(func=control_cmd)


def control_cmd(args: argparse.Namespace) -> int:
    from deploy.bridge import BridgeClient, BridgeError
    from deploy.control import BridgeUnavailable, ControlConfig, ControlLoop
    from deploy.runtimes import make_runtime
    from vla.runtime import PolicyRuntime

    if args.replan_every is not None and args.replan_every < 1:
        raise ValueError(f"--replan-every {args.replan_every}: must be >= 1")
    # the policy first: a bad --checkpoint is reported as such, before any network is touched
    if args.inject_latency_ms is not None and not args.inject_latency_ms >= 0:
        raise ValueError(f"--inject-latency-ms {args.inject_latency_ms}: must be >= 0")
    if args.splice != "switch" and not args.async_inference:
        raise ValueError(f"--splice {args.splice} needs --async (synchronous chunks follow --chunk-mode)")
    if args.threads < 0:
        raise ValueError(f"--threads {args.threads}: must be >= 0")
    if args.threads and args.runtime == "torch" and not args.expert:
        import torch

        torch.set_num_threads(args.threads)
    runtime = None if args.expert else make_runtime(args.runtime, args.checkpoint, device=args.device,
                                                    threads=args.threads)
    with BridgeClient(args.connect, timeout_s=args.timeout, curve_keys=args.curve_keys) as client:
        try:
            hello = client.hello()
        except TimeoutError as e:
            print(f"vla control: error: {e}", file=sys.stderr)
            return 1
        robot = hello["robot"]
        if args.expert:
            from deploy.robot import SimExpertPolicy

            if robot.get("task") != args.expert:
                raise ValueError(f"--expert {args.expert!r} but the bridge serves {robot.get('task') or robot['robot']!r}")
            expert = SimExpertPolicy(args.expert, **robot.get("overrides", {}))
            expert.prepare()  # seconds of env building, before the first tick's deadline starts running
            runtime = PolicyRuntime(expert)
        if args.inject_latency_ms is not None:
            from deploy.runtimes.latency import DelayedRuntime

            runtime = DelayedRuntime(runtime, args.inject_latency_ms)
        replan = args.replan_every if args.replan_every is not None else (runtime.execute_steps or 1)
        cfg = ControlConfig(hz=args.hz or float(hello["control_hz"]), chunk_mode=args.chunk_mode,
                            replan_every=replan, ensemble_m=args.ensemble_m,
                            max_latency_s=args.max_latency_ms / 1000.0, max_steps=args.max_steps,
                            privileged=bool(args.expert), async_inference=args.async_inference,
                            splice=args.splice)
        loop = ControlLoop(client, runtime, cfg)
        reports = []
        try:
            for i in range(args.episodes):
                seed = None if args.seed is None else args.seed + i
                rep = loop.run_episode(seed=seed).to_dict()
                reports.append(rep)
                print(json.dumps(rep), flush=True)
        except (BridgeUnavailable, BridgeError) as e:
            print(f"vla control: error: {e}", file=sys.stderr)
            return 1
    lat = [r["inference_ms"]["p50_ms"] for r in reports if r["inference_ms"]]
    jerk = [r["seam_jerk"] for r in reports if r["seam_jerk"] is not None]
    summary = {"episodes": len(reports), "success_rate": sum(r["success"] for r in reports) / max(1, len(reports)),
               "inference_ms_p50": float(sorted(lat)[len(lat) // 2]) if lat else None,
               "seam_jerk": sum(jerk) / len(jerk) if jerk else None}
    print(json.dumps(summary))
    if args.out:
        from vla.io import atomic_write_json

        atomic_write_json(args.out, {"summary": summary, "episodes": reports})
    return 0
