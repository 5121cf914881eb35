"""The `vla` command: the composition root (the only place in `vla/` that imports `sim/` and `deploy/`).

Each workflow lives in a module of this package that exposes `register(subparsers)`; the module
keeps heavy imports (torch, mujoco) inside its handlers so `vla --help` stays fast.

    vla --help
    vla quickstart            # the main job on the embedded default
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in the order `vla --help` lists them
COMMAND_MODULES = (
    "vla.cli.quickstart",
    "vla.cli.sim",
    "vla.cli.tokenizer",
    "vla.cli.train",
    "vla.cli.eval",
    "vla.cli.bridge",
    "vla.cli.control",
    "vla.cli.teleop",
    "vla.cli.export",
    "vla.cli.convert",
)


def build_parser() -> argparse.ArgumentParser:
    from vla import __version__

    parser = argparse.ArgumentParser(
        prog="vla",
        description="Robot VLA policy runtime: demos -> train -> eval -> export -> control loop.",
    )
    parser.add_argument("--version", action="version", version=f"vla {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"vla {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
