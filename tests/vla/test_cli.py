"""The `vla` command: help lists every workflow; errors become exit code 2 with a message."""

import subprocess
import sys

from vla.cli import COMMAND_MODULES, build_parser, main


def test_help_lists_all_registered_subcommands():
    out = subprocess.run([sys.executable, "-m", "vla.cli", "--help"], capture_output=True, text=True, check=True).stdout
    names = [m.rsplit(".", 1)[1] for m in COMMAND_MODULES]
    for name in names:
        assert name in out, f"{name} missing from vla --help"


def test_every_command_module_registers(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {m.rsplit(".", 1)[1] for m in COMMAND_MODULES}


def test_bad_dataset_is_a_clear_error(tmp_path, capsys):
    rc = main(["tokenizer", "fit", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "error" in capsys.readouterr().err
