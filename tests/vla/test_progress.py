"""vla.progress: a tqdm bar on a terminal; on a log (not a terminal) a few plain newline-terminated lines."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import tqdm.std as tqdm_std
from tqdm import tqdm

from vla.progress import ENV_INTERVAL, default_interval_s, progress

N = 10_000


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, n=N, **kw) -> list[str]:
    with progress(range(n), total=n, desc="train", file=stream, **kw) as bar:
        for i in bar:
            if i % 1000 == 0:
                bar.set_postfix(loss=f"{1 / (i + 1):.3f}", acc="0.91")
    out = stream.getvalue()
    assert "\r" not in out
    assert out.endswith("\n")
    return out.splitlines()


def test_log_stream_interval_zero_prints_every_update_but_bounded():
    lines = _run(io.StringIO(), interval_s=0)
    assert N <= len(lines) <= N + 1 + N // 1000 + 1  # start, one per item, postfix changes, final
    assert lines[0].startswith("train: 0/10000 (0%)")
    assert lines[-1].startswith("train: 10000/10000 (100%) ")
    assert all(line.startswith("train: ") for line in lines)


def test_log_stream_large_interval_prints_start_and_final_only():
    lines = _run(io.StringIO(), interval_s=1e6)
    assert len(lines) == 2, lines
    assert lines[0].startswith("train: 0/10000 (0%)")
    final = lines[-1]
    assert final.startswith("train: 10000/10000 (100%) ")
    assert " it/s " in final
    assert "loss=0.000" in final and "acc=0.91" in final  # the last set_postfix


def test_log_stream_lines_at_most_every_interval(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(tqdm_std, "time", lambda: clock[0])  # tqdm's clock, which the log bar shares
    stream = io.StringIO()
    bar = progress(total=100, desc="eval", file=stream, interval_s=10, unit="ep")
    for k in range(100):
        clock[0] += 1.0  # one episode per second
        bar.update()
        if k == 50:
            bar.set_postfix(success_rate=0.5)  # a postfix change within the interval prints nothing
    bar.close()
    bar.close()  # a second close prints nothing
    lines = stream.getvalue().splitlines()
    # start at t=0, then t=10, 20, ..., 100 (n=10..100), then the final line
    assert len(lines) == 12, lines
    assert [line.split()[1] for line in lines[1:11]] == [f"{n}/100" for n in range(10, 101, 10)]
    assert lines[-1].startswith("eval: 100/100 (100%) 1.0 ep/s 01:40")
    assert lines[-1].endswith("success_rate=0.5")


def test_log_stream_is_sys_stderr_by_default_and_write_goes_to_stdout(monkeypatch, capsys):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with progress(total=3, desc="demos", interval_s=1e6) as bar:
        bar.update(3)
        bar.write("a message")
    assert capsys.readouterr().out == "a message\n"
    lines = err.getvalue().splitlines()
    assert lines[-1].startswith("demos: 3/3 (100%)"), lines
    assert "\r" not in err.getvalue()


def test_env_var_sets_the_interval(monkeypatch):
    monkeypatch.setenv(ENV_INTERVAL, "0")
    assert default_interval_s() == 0
    assert len(_run(io.StringIO(), n=100)) >= 100
    monkeypatch.setenv(ENV_INTERVAL, "1e6")
    assert len(_run(io.StringIO(), n=100)) == 2
    monkeypatch.delenv(ENV_INTERVAL)
    assert default_interval_s() == 30.0
    monkeypatch.setenv(ENV_INTERVAL, "soon")
    with pytest.raises(ValueError, match=ENV_INTERVAL):
        progress(range(3), file=io.StringIO())


def test_unknown_total_and_disable():
    stream = io.StringIO()
    bar = progress(desc="scan", file=stream, interval_s=1e6)
    for _ in range(7):
        bar.update()
    bar.close()
    assert stream.getvalue().splitlines()[-1].startswith("scan: 7 ")
    quiet = io.StringIO()
    assert list(progress(range(5), file=quiet, disable=True)) == list(range(5))
    assert quiet.getvalue() == ""


def test_tty_stream_is_a_normal_tqdm_bar():
    tty = FakeTTY()
    bar = progress(range(200), total=200, desc="train", file=tty, mininterval=0)
    assert type(bar) is tqdm
    assert bar.dynamic_ncols
    assert list(bar) == list(range(200))
    out = tty.getvalue()
    assert "\r" in out  # redrawn in place
    assert out.count("\n") <= 1  # one bar line, not one line per update
    assert "200/200" in out


def test_module_does_not_import_torch():
    code = "import sys, vla.progress; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
