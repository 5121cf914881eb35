"""`vla bridge`: serve a robot (a sim task, or a real arm through your driver) over ZeroMQ.

    vla bridge --task PickCube --bind tcp://127.0.0.1:5555 [--lockstep] [--record DIR] [--curve-keys DIR]
    vla bridge --driver mypkg.arm:MyArmDriver --instruction "pick up the red cube"   # a real arm
    vla bridge keygen --out keys/                                                    # CurveZMQ key pairs

Binds loopback unless --bind says otherwise. Ctrl-C (or SIGTERM) stops it cleanly and saves the
episode being recorded. Protocol: docs/protocol.md.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bridge", help="serve a robot (sim task or real arm) to control loops over ZeroMQ")
    p.add_argument("--task", help="sim task name (see `vla sim list`)")
    p.add_argument("--driver", help="real arm: 'module:Class' implementing deploy.robot.EEDeltaDriver")
    p.add_argument("--instruction", help="real arm: the task instruction recorded with every frame")
    p.add_argument("--kinematic", action="store_true", help="numpy stand-in robot (protocol tests, benchmarks)")
    p.add_argument("--bind", default="tcp://127.0.0.1:5555")
    p.add_argument("--lockstep", action="store_true", help="advance the sim per action instead of on a wall clock")
    p.add_argument("--record", metavar="DIR", help="record executed steps to a LeRobot dataset here")
    p.add_argument("--curve-keys", metavar="DIR", help="CurveZMQ: encrypt + refuse peers not in DIR/authorized_clients")
    p.add_argument("--seed", type=int, default=None, help="seed of the episode seed sequence")
    p.add_argument("--image-size", type=int, default=None, help="sim camera resolution override")
    p.add_argument("--control-hz", type=float, default=None, help="sim/real control rate override")
    p.add_argument("--watchdog-ms", type=float, default=200.0)
    p.add_argument("--max-translation", type=float, default=0.05, help="m per step")
    p.add_argument("--max-rotation", type=float, default=0.3, help="rad per step")
    p.add_argument("--workspace", type=float, nargs=6, metavar=("XLO", "YLO", "ZLO", "XHI", "YHI", "ZHI"),
                   help="tcp box in m, base frame")
    p.set_defaults(func=bridge_cmd)
    bsub = p.add_subparsers(dest="bridge_command", metavar="ACTION")
    k = bsub.add_parser("keygen", help="create CurveZMQ server/client key pairs")
    k.add_argument("--out", required=True)
    k.add_argument("--overwrite", action="store_true")
    k.set_defaults(func=keygen_cmd)


def keygen_cmd(args: argparse.Namespace) -> int:
    from deploy.keys import generate_keys

    out = generate_keys(args.out, overwrite=args.overwrite)
    print(f"keys in {out}: bridge uses server.key_secret + authorized_clients/; copy client.key, "
          f"client.key_secret and server.key to the control machine and pass --curve-keys there")
    return 0


def _robot(args: argparse.Namespace):
    chosen = [n for n in ("task", "driver", "kinematic") if getattr(args, n)]
    if len(chosen) != 1:
        raise ValueError(f"choose exactly one of --task, --driver, --kinematic (got {chosen or 'none'})")
    if args.kinematic:
        from deploy.robot import KinematicRobot

        return KinematicRobot(image_size=args.image_size or 224, control_hz=args.control_hz or 10.0)
    if args.driver:
        from deploy.robot import RealArmRobot

        mod_name, _, cls_name = args.driver.partition(":")
        if not cls_name:
            raise ValueError(f"--driver {args.driver!r}: expected 'module:Class'")
        driver = getattr(importlib.import_module(mod_name), cls_name)()
        return RealArmRobot(driver, instruction=args.instruction or "", control_hz=args.control_hz or 10.0)
    from deploy.robot import SimRobot

    overrides = {}
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.control_hz:
        overrides["control_hz"] = args.control_hz
    return SimRobot(args.task, seed=args.seed, **overrides)


def bridge_cmd(args: argparse.Namespace) -> int:
    from deploy.bridge import BridgeConfig, BridgeServer
    from deploy.safety import SafetyConfig

    safety = {"max_translation_m": args.max_translation, "max_rotation_rad": args.max_rotation,
              "watchdog_s": args.watchdog_ms / 1000.0}
    if args.workspace:
        safety.update(workspace_low=tuple(args.workspace[:3]), workspace_high=tuple(args.workspace[3:]))
    cfg = BridgeConfig(bind=args.bind, lockstep=args.lockstep, safety=SafetyConfig(**safety),
                       record_dir=args.record, curve_keys=args.curve_keys)
    server = BridgeServer(_robot(args), cfg)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())  # serving on this thread: stop() only flags
    mode = "lock-step" if cfg.lockstep else f"real-time {server.robot.control_hz:g} Hz"
    print(f"bridge serving {server.robot.info().get('task', type(server.robot).__name__)} on {server.endpoint} "
          f"({mode}{', recording to ' + args.record if args.record else ''}"
          f"{', CURVE' if args.curve_keys else ''}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print(f"bridge stopped; stats: {dict(server.stats)}", file=sys.stderr)
    return 0
