"""`vla teleop`: drive a robot bridge from the terminal keyboard (the bridge records with --record).

    vla bridge --task PickCube --record runs/demos     # terminal 1
    vla teleop --connect tcp://127.0.0.1:5555          # terminal 2; keys: deploy/teleop.py docstring

w/s a/d r/f move x/y/z, u/o i/k j/l rotate, space toggles the gripper, n ends the episode
(the bridge saves it), q quits.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teleop", help="drive a robot bridge from the keyboard (records demos via the bridge)")
    p.add_argument("--connect", default="tcp://127.0.0.1:5555")
    p.add_argument("--hz", type=float, default=None, help="command rate (default: the bridge's)")
    p.add_argument("--step-m", type=float, default=0.01, help="translation per key press, m")
    p.add_argument("--step-rad", type=float, default=0.05, help="rotation per key press, rad")
    p.add_argument("--episodes", type=int, default=None, help="stop after this many episodes")
    p.add_argument("--curve-keys", metavar="DIR")
    p.set_defaults(func=teleop_cmd)


def teleop_cmd(args: argparse.Namespace) -> int:
    from deploy.bridge import BridgeClient
    from deploy.teleop import KeyboardTeleop, run_teleop

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with BridgeClient(args.connect, curve_keys=args.curve_keys) as client:
        hello = client.hello()
        o = client.observe()
        log(f"connected to {hello['robot'].get('task') or hello['robot']['robot']} ({args.connect}); "
            f"instruction: {o.obs['instruction']!r}. w/s a/d r/f move, u/o i/k j/l rotate, space gripper, "
            f"n next episode, q quit")
        source = KeyboardTeleop(args.step_m, args.step_rad)
        try:
            counts = run_teleop(client, source, hz=args.hz or float(hello["control_hz"]),
                                episodes=args.episodes, log=log)
        finally:
            source.close()
    log(f"teleop done: {counts}")
    return 0
