"""The `derl` command: output, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from derlhybrid import __version__
from derlhybrid.cli import main


def test_info_lists_version_and_both_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"derlhybrid {__version__}" in out
    assert "python " in out and "julia " in out
    assert "available" in out


def test_demo_prints_a_convergence_table(capsys):
    assert main(["demo", "--size", "64", "--repeats", "1", "--backend", "python"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:2].strip().isdigit()]
    assert len(rows) == 12
    for _k, p, _, _, rate in rows:
        assert abs(float(rate) - int(p)) < 0.6  # observed order, n = 32 -> 64


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--backend", "fortran"],
        ["demo", "--size", "3"],
        ["demo", "--size", "many"],
        ["nonsense"],
        [],
    ],
)
def test_user_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("derl: error:") and "\n" not in err and "Traceback" not in err


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "derlhybrid.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and __version__ in out.stdout
