"""`vla eval`: closed-loop evaluation of a checkpoint in a sim task (the composition root imports sim here).

    vla eval --checkpoint runs/tiny/checkpoint --task PickCube --episodes 20 --seed 0 \
        [--video pick.mp4] [--report report.json] [--heldout] [--decoding parallel] [--execute-steps 2] [--expert]
        [--image-size 128]
    vla eval --runtime onnx --checkpoint exports/tiny --task PickCube     # a `vla export onnx` dir

Prints success rate (Wilson 95% CI), mean episode length, latency p50/p99; `--report` writes the JSON
(success_rate, episodes, latency_ms_p50, ...); `--heldout` uses the task's held-out instruction
paraphrases and object positions (sim split "heldout").
"""

from __future__ import annotations

import argparse


def _handler(args: argparse.Namespace) -> int:
    import sim
    from deploy.runtimes import make_runtime
    from vla.evaluation import ChunkedPolicy, DelayedChunkPolicy, evaluate
    from vla.io import atomic_write_json

    if args.task not in sim.list_tasks():
        raise ValueError(f"unknown task {args.task!r}; available: {sim.list_tasks()}")
    if args.execute_steps is not None and args.execute_steps < 1:
        raise ValueError(f"--execute-steps {args.execute_steps}: must be >= 1")
    if args.threads and args.runtime == "torch":
        import torch

        torch.set_num_threads(args.threads)
    # every backend through the one factory and interface (vla.runtime.Runtime)
    policy = make_runtime(args.runtime, args.checkpoint, device=args.device, mode=args.decoding,
                          threads=args.threads if args.runtime == "onnx" else 0)
    split = "heldout" if args.heldout else "train"
    # one half of the held-out split alone: which of position / phrasing costs the success
    halves = {"position_split": "heldout" if args.heldout_positions else None,
              "instruction_split": "heldout" if args.heldout_instructions else None}
    if args.heldout and any(halves.values()):
        raise ValueError("--heldout already holds out positions and instructions; use it alone, or one of "
                         "--heldout-positions / --heldout-instructions")
    # render the cameras at the policy's input size by default: that is how `vla sim demos` records training
    # data for it (quickstart), and a 128 px render resized to 64 px is not the same image as a 64 px render
    image_size = args.image_size or int(policy.cfg.vision.image_size)  # sim.TaskConfig checks its range
    if args.delay_steps is not None and args.delay_steps < 0:
        raise ValueError(f"--delay-steps {args.delay_steps}: must be >= 0")
    if args.delay_steps is None and args.splice is not None:
        raise ValueError(f"--splice {args.splice} needs --delay-steps (a simulated inference latency)")
    runner = (ChunkedPolicy(policy, execute_steps=args.execute_steps) if args.delay_steps is None else
              DelayedChunkPolicy(policy, args.delay_steps, args.splice or "sync", execute_steps=args.execute_steps))
    expert = (lambda env: sim.make_expert(args.task, env)) if args.expert else None
    report = evaluate(runner, lambda: sim.make(args.task, split=split, image_size=image_size, **halves),
                      episodes=args.episodes, seed=args.seed,
                      video_path=args.video, write_video=sim.write_video, expert_factory=expert,
                      show_progress=not args.no_progress)
    halves = {k: v for k, v in halves.items() if v}
    report = {"task": args.task, "split": split, **halves, "checkpoint": str(args.checkpoint), "runtime": args.runtime,
              "image_size": image_size,
              "decoding": args.decoding or policy.cfg.action.decoding, **report}
    lo, hi = report["success_ci95"]
    label = split + "".join(f", {k.split('_')[0]}s heldout" for k in halves)
    print(f"{args.task} [{label}]: success {report['successes']}/{report['episodes']} = {report['success_rate']:.2f} "
          f"(95% CI {lo:.2f}-{hi:.2f}), mean length {report['mean_length']:.1f}, "
          f"step latency p50 {report['latency_ms_p50']:.2f} ms p99 {report['latency_ms_p99']:.2f} ms, "
          f"inference p50 {report['inference_ms_p50']:.1f} ms")
    if "delay_steps" in report:
        print(f"simulated latency {report['delay_steps']} steps, splice {report['splice']}: "
              f"seam jerk {report['seam_jerk']} over {report['seams']} seams")
    if "expert_success_rate" in report:
        print(f"expert success {report['expert_success_rate']:.2f}")
    if report.get("invalid_chunks"):
        print(f"warning: {report['invalid_chunks']} chunks failed to decode (held still instead)")
    if args.report:
        atomic_write_json(args.report, report)
        print(f"report: {args.report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="closed-loop success rate of a checkpoint in a sim task",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="torch: a policy checkpoint directory; onnx/tensorrt: a `vla export` directory")
    p.add_argument("--runtime", choices=["torch", "onnx", "tensorrt"], default="torch",
                   help="inference backend (default torch)")
    p.add_argument("--task", required=True, help="sim task name (vla sim list / sim.list_tasks())")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    p.add_argument("--video", default=None, help="rollout video (.mp4 or .gif) of the first 2 episodes")
    p.add_argument("--report", default=None, help="JSON report path")
    p.add_argument("--heldout", action="store_true", help="held-out paraphrases and object positions")
    p.add_argument("--heldout-positions", action="store_true",
                   help="held-out object positions (the other checkerboard cells) with the training phrasings")
    p.add_argument("--heldout-instructions", action="store_true",
                   help="held-out paraphrases with the training object positions")
    p.add_argument("--image-size", type=int, default=None,
                   help="camera render size (default: the policy's input size, as `vla sim demos --image-size` "
                   "records for it; the policy resizes any other size)")
    p.add_argument("--decoding", choices=["autoregressive", "parallel"], default=None,
                   help="override the checkpoint's decoding mode")
    p.add_argument("--execute-steps", type=int, default=None, help="actions executed per chunk before re-planning (default: the checkpoint's "
                        "action.execute_steps, else all H)")
    p.add_argument("--delay-steps", type=int, default=None,
                   help="simulate an inference latency of this many control steps on the sim's step clock "
                        "(deterministic; see --splice)")
    p.add_argument("--splice", choices=["sync", "switch", "ensemble", "prefix"], default=None,
                   help="with --delay-steps: sync (the arm waits for each plan; default) or asynchronous "
                        "inference spliced by switch | ensemble | prefix (vla.splicing, as vla control --async)")
    p.add_argument("--expert", action="store_true", help="also roll out the scripted expert on the same seeds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch / ONNX Runtime CPU threads (default 1: batch-1 decoding of small models gains little "
                   "from more, and oversubscribed threads on a shared CPU are far slower; 0 = the backend's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (tensorrt needs a GPU)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_handler)
