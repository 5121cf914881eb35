"""`vla sim`: scripted-expert demonstrations as a LeRobot v3.0 dataset, and expert rollout videos.

    vla sim demos --task PickCube --episodes 50 --out data/pick [--seed 0] [--noise 0.005 [--label clean]] [--video]
                  [--every-target]
    vla sim render --task PickCube --out pick.gif [--seed 0] [--hq]
    vla sim list

Heavy imports (mujoco via `sim`, the dataset writer) stay inside the handlers so `vla --help` is fast.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="MuJoCo Panda tasks: expert demonstrations and rollout videos")
    ssub = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    p.set_defaults(func=lambda args: _help(p))

    ls = ssub.add_parser("list", help="list the tasks with an example instruction and the success rule")
    ls.set_defaults(func=_list)

    d = ssub.add_parser(
        "demos",
        help="roll out the scripted expert and write a LeRobot v3.0 dataset (successful episodes only)",
        description=(
            "Roll out the scripted expert of a task and write a LeRobot v3.0 dataset (images embedded in "
            "parquet, or mp4 with --video). Only successful expert episodes are saved (failed ones are "
            "discarded and another seed is tried) unless --keep-failures. Episode k of a run uses seed "
            "--seed + scene number, so a run is reproducible."
        ),
    )
    d.add_argument(
        "--task", required=True, help="task name (see `python -c 'import sim; print(sim.list_tasks())'`)"
    )
    d.add_argument("--episodes", type=int, required=True, help="number of episodes to save")
    d.add_argument("--out", required=True, help="dataset root directory (must not hold a dataset yet)")
    d.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    d.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="std (m) of Gaussian noise on the expert's translation, for diverse demos (default 0)",
    )
    d.add_argument(
        "--label",
        choices=("clean", "executed"),
        default="clean",
        help="with --noise: record the expert's clean command (default; DART-style recovery labels) or the "
        "noisy action the arm executed",
    )
    d.add_argument("--image-size", type=int, default=128, help="square camera image size (default 128)")
    d.add_argument(
        "--split",
        choices=("train", "heldout"),
        default="train",
        help="instruction paraphrases and target positions (default train)",
    )
    d.add_argument(
        "--video", action="store_true", help="store camera streams as mp4 instead of PNG in parquet"
    )
    d.add_argument(
        "--file-mb",
        type=int,
        default=20,
        help="roll data parquet files at this size (default 20; each saved episode rewrites the open file, "
        "so smaller files keep long recordings fast)",
    )
    d.add_argument(
        "--every-target",
        action="store_true",
        help="record each scene once per cube, naming a different cube each time (contrastive demos: the same "
        "first image with different instructions and actions; ReachCube, PickCube). --episodes counts rollouts",
    )
    d.add_argument(
        "--hold-steps",
        type=int,
        default=0,
        help="keep recording this many expert steps after the task first succeeds (the expert settling on its "
        "goal) instead of ending the episode there, so a policy learns to stay at the goal, not only to reach "
        "it; the episode is saved only if it still succeeds at its last step (default 0)",
    )
    d.add_argument("--keep-failures", action="store_true", help="also save episodes the expert failed")
    d.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="give up after this many rollouts (default 2 * episodes + 10)",
    )
    d.set_defaults(func=_demos)

    r = ssub.add_parser("render", help="render an expert rollout to .gif or .mp4")
    r.add_argument("--task", required=True, help="task name")
    r.add_argument("--out", required=True, help="output file, .gif or .mp4")
    r.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    r.add_argument("--image-size", type=int, default=256, help="square image size (default 256)")
    r.add_argument("--wrist", action="store_true", help="show the wrist camera next to the agentview")
    r.add_argument(
        "--hq", action="store_true", help="detailed robot meshes and shadows (several times slower)"
    )
    r.add_argument("--split", choices=("train", "heldout"), default="train")
    r.add_argument("--every", type=int, default=1, help="keep every Nth frame (smaller gifs; default 1)")
    r.add_argument("--still", default=None, help="also save the last frame as this .png")
    r.set_defaults(func=_render)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _list(args: argparse.Namespace) -> int:
    import sim

    for name in sim.list_tasks():
        entry = sim.task_entry(name)
        cfg = entry.default_config()
        example = entry.env_cls.TRAIN_TEMPLATES[0].format(color="red", base="blue", pad="blue", zone="blue")
        print(f"{name:<10} horizon {cfg.horizon:>3}  e.g. '{example}'  success: {entry.success_rule}")
    return 0


def features(image_size: int) -> dict[str, dict]:
    """LeRobot feature spec of a sim demo dataset."""
    import sim

    img = {"dtype": "image", "shape": [image_size, image_size, 3], "names": ["height", "width", "channel"]}
    return {
        "observation.images.agentview": dict(img),
        "observation.images.wrist": dict(img),
        "observation.state": {"dtype": "float32", "shape": [8], "names": list(sim.STATE_NAMES)},
        "observation.environment_state": {"dtype": "float32", "shape": [6], "names": list(sim.TASK_STATE_NAMES)},
        "action": {"dtype": "float32", "shape": [7], "names": list(sim.ACTION_NAMES)},
    }


def _demos(args: argparse.Namespace) -> int:
    import itertools

    import numpy as np

    import sim
    from vla.data import LeRobotDatasetWriter
    from vla.progress import progress

    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: must be >= 1")
    if args.file_mb < 1:
        raise ValueError(f"--file-mb {args.file_mb}: must be >= 1")
    if args.hold_steps < 0:
        raise ValueError(f"--hold-steps {args.hold_steps}: must be >= 0")
    max_attempts = args.max_attempts if args.max_attempts is not None else 2 * args.episodes + 10
    # the loop below ends an episode --hold-steps steps after its first success (at it, by default), so the env
    # must not end it on success itself
    env = sim.make(args.task, image_size=args.image_size, split=args.split, terminate_on_success=False)
    fps = env.control_hz
    if float(fps) != int(fps):
        raise ValueError(f"control_hz={fps}: LeRobot datasets need an integer fps")
    if args.every_target and not env.unwrapped.TARGET_CHOICE:
        raise ValueError(f"--every-target: {args.task} does not take a target choice (ReachCube and PickCube do)")
    targets = list(range(env.unwrapped.config.n_cubes)) if args.every_target else [None]
    expert = sim.make_expert(args.task, env, noise=args.noise, seed=args.seed)
    saved = attempts = 0
    with (
        LeRobotDatasetWriter(
            args.out,
            fps=int(fps),
            robot_type="franka_panda",
            features=features(args.image_size),
            use_videos=args.video,
            data_files_size_in_mb=args.file_mb,
        ) as writer,
        progress(total=args.episodes, desc=f"{args.task} demos", unit="ep") as bar,
    ):
        # scene k uses seed --seed + k, once per target with --every-target (else once, naming cube 0)
        rollouts = ((args.seed + k, target) for k in itertools.count() for target in targets)
        for seed, target in rollouts:
            if saved >= args.episodes:
                break
            if attempts >= max_attempts:
                print(
                    f"vla sim demos: error: only {saved}/{args.episodes} successful episodes after {attempts} "
                    "attempts (the saved ones are valid); lower --noise or raise --max-attempts",
                    file=sys.stderr,
                )
                return 1
            attempts += 1
            expert.reset()
            obs, info = env.reset(seed=seed, options=None if target is None else {"target": target})
            held = -1  # steps recorded since the first success (-1: not yet succeeded)
            while True:
                action = np.asarray(expert(obs), dtype=np.float32)  # executed (noisy with --noise)
                label = expert.clean_action if args.label == "clean" else action
                writer.add_frame(
                    {
                        "observation.images.agentview": obs["agentview"],
                        "observation.images.wrist": obs["wrist"],
                        "observation.state": obs["state"],
                        "observation.environment_state": env.unwrapped.task_state(),
                        "action": label,
                    },
                    task=obs["instruction"],
                )
                obs, _, terminated, truncated, info = env.step(action)
                if held >= 0:
                    held += 1
                elif info["success"]:
                    held = 0
                if terminated or truncated or held == args.hold_steps:
                    break
            if info["success"] or args.keep_failures:
                writer.save_episode()
                saved += 1
                bar.update(1)
            else:
                writer.clear_episode()
            bar.set_postfix(attempts=attempts, success_rate=f"{saved / attempts:.2f}")
    env.close()
    print(f"wrote {saved} episodes ({attempts} rollouts) to {args.out}")
    return 0


def _render(args: argparse.Namespace) -> int:
    import sim

    overrides = {"image_size": args.image_size, "split": args.split}
    if args.hq:
        overrides.update(robot_meshes="visual", shadows=True)
    env = sim.make(args.task, **overrides)
    expert = sim.make_expert(args.task, env)
    if args.every < 1:
        raise ValueError(f"--every {args.every}: must be >= 1")
    result = sim.run_episode(env, expert, seed=args.seed, wrist=args.wrist)
    # hold the last frame for a second so the outcome is visible in a looping gif
    frames = result.frames[:: args.every] + [result.frames[-1]] * max(1, int(env.control_hz) // args.every)
    path = sim.write_video(args.out, frames, fps=env.control_hz / args.every)
    if args.still:
        import os

        from PIL import Image

        tmp = f"{args.still}.tmp.png"
        Image.fromarray(result.frames[-1]).save(tmp)
        os.replace(tmp, args.still)  # atomic: a crash never leaves a half-written png
    env.close()
    print(
        f"{args.task} seed {args.seed}: '{result.instruction}' success={result.success} "
        f"steps={result.length} -> {path}"
    )
    return 0
