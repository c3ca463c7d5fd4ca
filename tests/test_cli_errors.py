"""How the CLI ends: exit codes, one stderr line, tracebacks only with ``-vv``, quiet stdout."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mpc_dc import cli
from mpc_dc.commands import data as data_command

REPO = Path(__file__).resolve().parents[1]


def _boom(args: argparse.Namespace) -> int:
    raise ValueError("a bug\nover two lines")


def _denied(args: argparse.Namespace) -> int:
    raise PermissionError(13, "Permission denied", "/srv/data/prices.csv")


def test_a_bug_is_an_internal_error_not_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data_command, "run_list", _boom)
    assert cli.main(["data", "list"]) == 1
    assert capsys.readouterr().err == (
        "mpc-dc: internal error: ValueError: a bug over two lines (run with -vv for the "
        "traceback)\n")


def test_vv_prints_the_traceback_before_the_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data_command, "run_list", _boom)
    assert cli.main(["data", "list", "-vv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("mpc-dc: internal error: ValueError: a bug over two lines\n")


def test_an_os_error_on_a_path_names_the_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data_command, "run_list", _denied)
    assert cli.main(["data", "list"]) == 2
    assert capsys.readouterr().err == "mpc-dc: error: /srv/data/prices.csv: permission denied\n"


def _unreadable(self: Path) -> bytes:
    raise PermissionError(13, "Permission denied", str(self))


def test_unreadable_scenario_and_trace_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Permissions (simulated: the tests may run as root, who reads everything)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text("[run]\ndays = 1\n", encoding="utf-8")
    trace = tmp_path / "prices.csv"
    trace.write_text("Datetime (UTC),Datetime (Local),Price (USD/MWh)\n", encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes", _unreadable)
    assert cli.main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"mpc-dc: error: {scenario}: permission denied\n"
    assert cli.main(["data", "check", str(trace)]) == 2
    assert capsys.readouterr().err == (
        f"mpc-dc: error: {trace}: cannot read (permission denied); expected a readable file\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.csv", "s.toml"]


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--no-such-option"]) == 2
    assert capsys.readouterr().err == (
        "mpc-dc: error: unrecognized arguments: --no-such-option (see 'mpc-dc --help')\n")
    assert cli.main(["sweep"]) == 2
    assert capsys.readouterr().err == (
        "mpc-dc: error: the following arguments are required: file, --out "
        "(see 'mpc-dc sweep --help')\n")


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mpc-dc ")
    assert cli.main(["run", "--help"]) == 0


def test_run_stdout_holds_only_the_cli_lines(tmp_path: Path) -> None:
    """HiGHS's banner ("Running HiGHS ... Copyright ...") no longer lands between them.

    A subprocess: HiGHS prints it once per process, at its first model.
    """
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "mpc_dc", "run", "--days", "1", "--controller", "persistence",
         "--no-plots", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip("\n").split("\n")
    assert lines[0].startswith("mpc-dc run: scenario 'default', 1 days from ")
    assert lines[-1] == f"run directory: {out}"
    # Every line between the first and the last is one "label   value" row of the
    # summary (labels padded to 28 characters), nothing else.
    labels = [line[:28].strip() for line in lines[1:-1]]
    assert labels[:15] == [
        "controller", "net cost", "energy import", "export revenue", "demand charge",
        "carbon", "DR reward / penalty", "penalties", "grid import / export",
        "renewable used / curtailed", "self-consumption", "IT energy inference / other",
        "carbon", "peak import", "deferrable work missed"]
    assert labels[-3:] == ["solves / fallbacks", "solve time median", "wall time setup + sim"]
    assert all(len(line) > 29 and line[28] == " " for line in lines[1:-1])
    assert "HiGHS" not in done.stdout and "Copyright" not in done.stdout
