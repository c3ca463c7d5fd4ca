"""How the CLI ends: exit codes, one stderr line, tracebacks only with ``-vv``, quiet stdout."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mpc_dc import cli
from mpc_dc.commands import data as data_command
from mpc_dc.commands import report as report_command

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
    assert labels[:16] == [
        "controller", "net cost", "energy import", "export revenue", "demand charge",
        "carbon", "DR reward / penalty", "penalties", "lateness (SLO term)",
        "grid import / export",
        "renewable used / curtailed", "self-consumption", "IT energy inference / other",
        "carbon", "peak import", "deferrable work missed"]
    assert labels[-3:] == ["solves / fallbacks", "solve time median", "wall time setup + sim"]
    assert all(len(line) > 29 and line[28] == " " for line in lines[1:-1])
    assert "HiGHS" not in done.stdout and "Copyright" not in done.stdout


def test_compare_set_overrides_are_checked_before_anything_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``compare --set KEY=VALUE``: a malformed pair is refused when the line is parsed, an
    unknown key or a bad value by the scenario's own check, each as one line, exit 2."""
    assert cli.main(["compare", "--set", "controller.horizon_h"]) == 2
    assert "argument --set: expected KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["compare", "--set", "controller.nowcast_tau=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "controller.nowcast_tau" in err and "nowcast_tau_h" in err
    assert cli.main(["compare", "--set", "controller.lateness_weight=-1"]) == 2
    err = capsys.readouterr().err
    assert "controller.lateness_weight" in err and "expected a value >= 0" in err


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], out: Path) -> str:
    """Run ``argv`` with ``--out out``; assert exit 2, one stderr line, nothing written;
    return the line."""
    assert cli.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpc-dc: error: ") and err.count("\n") == 1, err
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if ".tmp-" in p.name] == []
    return err


SHORT_RUN = ["run", "--no-plots", "--set", "run.days=0.25"]


@pytest.mark.parametrize(("override", "expected"), [
    # A negative seed failed at the first draw: "internal error: ValueError: expected
    # non-negative integer", exit 1.
    ("run.seed=-1", "key 'run.seed': expected a value >= 0, got -1"),
    # A TTFT target <= 0 ran to the end with every request late (exit 0).
    ("serving.default_ttft_slo_s=-1", "key 'serving.default_ttft_slo_s': expected a value > 0"),
    ('serving.ttft_slo_s={"qwen3-32b"=0}', "key 'serving.ttft_slo_s.qwen3-32b': expected a "
     "value > 0, got 0.0"),
    # A TPOT target of 0 and a negative sample count were internal errors (exit 1).
    ('serving.tpot_slo_s={"qwen3-32b"=0}', "key 'serving.tpot_slo_s.qwen3-32b': expected a "
     "value > 0, got 0.0"),
    ("serving.request_samples=-5", "key 'serving.request_samples': expected a value >= 0, "
     "got -5"),
])
def test_out_of_range_run_and_serving_values_are_refused(
        override: str, expected: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, [*SHORT_RUN, "--controller", "baseline", "--set", override],
                   tmp_path / "out")
    assert expected in err


@pytest.mark.parametrize(("overrides", "expected"), [
    # The forecaster's fit on too short a history was "internal error: ValueError:
    # sarimax: needs at least 72 observed complete hours to fit, got 24", exit 1.
    (["run.history_days=1", "controller.forecaster=sarimax"],
     "key 'run.history_days': 1 d of history is too little for forecaster 'sarimax': it "
     "needs at least 72 observed complete hours to fit, got 24; expected "
     "run.history_days >= 3"),
    # Fitted at the first forecast inside the simulation (simpy re-raises the error).
    (["run.history_days=0", "controller.forecaster=sarimax"],
     "key 'run.history_days': 0 d of history is too little for forecaster 'sarimax': it "
     "needs at least 72 observed complete hours to fit, got 0;"),
    # No history and a start off the hour: "internal error: ValueError: history of 0
    # intervals is shorter than the publication lag of [...]", exit 1.
    (["run.history_days=0", 'run.start="2022-04-01T04:15:00Z"',
      "controller.forecaster=persistence"],
     "key 'run.history_days': 0 d of history: history of 0 intervals is shorter than the "
     "publication lag of"),
])
def test_too_short_a_history_names_run_history_days(
        overrides: list[str], expected: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*SHORT_RUN, *(a for o in overrides for a in ("--set", o))]
    assert expected in _refused(capsys, argv, tmp_path / "out")


PROC = Path("/proc")


@pytest.mark.skipif(not (PROC / "self").is_dir(),
                    reason="needs Linux's /proc (a folder no user, root included, may write)")
@pytest.mark.parametrize("command", [
    [*SHORT_RUN, "--controller", "baseline"],
    ["compare", "--days", "0.25", "--forecasters", "persistence"],
])
def test_an_out_that_cannot_be_written_is_refused_before_the_run(
        command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The old code simulated the whole run first, then failed to write: exit 3,
    "/proc/...: could not write (No such file or directory)"."""
    out = PROC / "mpc-dc-cannot-write-here"
    assert cli.main([*command, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"mpc-dc: error: {out}: cannot write into /proc (no such file or "
                            "directory); expected a folder this user may write\n")
    assert "net cost" not in captured.out  # nothing ran (no summary, no table)
    assert not out.exists()


@pytest.mark.skipif(not (PROC / "self").is_dir(),
                    reason="needs Linux's /proc (a folder no user, root included, may write)")
def test_a_report_out_that_cannot_be_written_is_refused_before_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The old code built the whole report first, then failed to write it: exit 3,
    "/proc/...: could not write (No such file or directory)"."""
    run_dir = tmp_path / "run"
    assert cli.main([*SHORT_RUN, "--controller", "baseline", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    built: list[Path] = []
    real_write = report_command.write_report

    def write_report(directory: Path, **kwargs: object) -> Path:
        built.append(directory)
        return real_write(directory, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(report_command, "write_report", write_report)
    out = PROC / "mpc-dc-report.html"
    assert cli.main(["report", str(run_dir), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"mpc-dc: error: {out}: cannot write into /proc (no such file or directory); "
        "expected a folder this user may write\n")
    assert built == []  # refused before any of the report was built


def test_compare_out_that_exists_is_refused_before_the_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The old code ran and printed every row, then refused the folder at the write."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    assert cli.main(["compare", "--days", "0.25", "--forecasters", "persistence",
                     "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"mpc-dc: error: {out}: exists already;")
    assert "--overwrite" not in captured.err  # compare has no such option
    assert captured.err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_compare_leaves_no_runs_when_a_later_row_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``compare --runs DIR``: the reference, offline and perfect rows ran and were written
    before the sarimax row found too little history; the old code left them in DIR (and
    the same command then refused DIR/reference as existing)."""
    runs = tmp_path / "runs"
    mine = tmp_path / "mine"
    (mine / "keep").mkdir(parents=True)
    for folder in (runs, mine):
        assert cli.main(["compare", "--days", "0.25", "--forecasters", "sarimax",
                         "--set", "run.history_days=1", "--runs", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "key 'run.history_days'" in err
    assert not runs.exists()
    assert sorted(p.name for p in mine.iterdir()) == ["keep"]


def test_one_table_where_a_list_of_tables_is_expected_is_named_in_toml(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``[site.campuses]`` for ``[[site.campuses]]``: the old line printed the whole
    campus table's repr ("expected a list, got {'name': 'rcdc', ...}", 400 characters)."""
    scenario = tmp_path / "one_table.toml"
    scenario.write_text('[run]\ndays = 0.25\n\n[site.campuses]\nname = "rcdc"\n'
                        'price_node = "F"\ncarbon_zone = "US-NY-NYIS"\n', encoding="utf-8")
    err = _refused(capsys, ["run", str(scenario)], tmp_path / "out")
    assert err == (f"mpc-dc: error: {scenario}: key 'site.campuses': expected a list of "
                   "tables ([[site.campuses]] for each entry), got one table "
                   "([site.campuses])\n")


@pytest.mark.parametrize(("key", "expected"), [
    # The old line ended at "not a table in the scenario", without what was expected.
    ("site.campuses.north.gpus=2", "'site.campuses' is a list of tables; expected an entry "
     "by position or name in brackets, e.g. site.campuses[north].gpus"),
    ("run.days.x=1", "'run.days' is a value (3.0); expected 'run.days' itself as the key"),
])
def test_a_set_key_through_a_list_or_a_value_says_what_was_meant(
        key: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in _refused(capsys, ["run", "--set", key], tmp_path / "out")


def test_backtest_train_days_too_short_for_the_forecaster(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The old code: "internal error: InsufficientHistoryError: sarimax: needs at least 72
    observed complete hours to fit, got 23", exit 1."""
    err = _refused(capsys, ["backtest", "--data", str(shared_data), "--series", "lmp",
                            "--forecaster", "sarimax", "--start", "2022-04-01", "--days", "1",
                            "--train-days", "1"], tmp_path / "out")
    assert err == (
        "mpc-dc: error: --train-days: 1 d before 2022-04-01 00:00Z is too little history of "
        "series 'lmp' for forecaster 'sarimax': it needs at least 72 observed complete hours "
        "to fit, got 23; expected --train-days >= 4 (more if the series has gaps there)\n")


def test_a_folder_given_as_the_scenario_is_named_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The old line said "scenario file not found" of a folder that exists."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    err = _refused(capsys, ["run", str(folder)], tmp_path / "out")
    assert err == f"mpc-dc: error: {folder}: is a directory; expected a scenario TOML file\n"


def test_a_sweep_run_with_no_history_names_run_history_days(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A sweep run is reported failed, not raised (the sweep goes on); its message was the
    bare "ValueError: history of 0 intervals is shorter than the publication lag ...", and
    it was logged at ERROR with its traceback (22 stderr lines). Bad input: exit 2, no
    "run the same command again to retry them" (it was exit 1 with that hint)."""
    base = REPO / "mpc_dc" / "scenarios" / "default.toml"
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'[sweep]\nname = "no-history"\nbase = "{base}"\n[sweep.grid]\n'
        '"run.history_days" = [0]\n"run.days" = [0.25]\n'
        '"run.start" = ["2022-04-01T04:15:00Z"]\n"controller.kind" = ["baseline"]\n',
        encoding="utf-8")
    assert cli.main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mpc-dc: error: 1 of 1 runs refused for bad input (first ")
    # The sweep file and the table that set the key, not the placeholder "<scenario>"
    # of a scenario without a file, nor the type ("ConfigError: <scenario>: key ...").
    assert f"__9e173a99ff: {sweep}: key 'run.history_days': 0 d of history:" in err
    assert "ConfigError" not in err and "<scenario>" not in err
    assert err.endswith("expected run.history_days >= 1 (or a run.start on the hour) "
                        "(override in sweep.grid))\n")
    assert list((tmp_path / "out" / "runs").iterdir()) == []  # no run directory written
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in shown if r.exc_info] == []  # no traceback without -vv


def test_run_days_off_the_15_minute_grid_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0.1 d used to run round(9.6) = 10 intervals (0.104 d) without a word, exit 0."""
    err = _refused(capsys, ["run", "--no-plots", "--controller", "baseline", "--days", "0.1"],
                   tmp_path / "out")
    assert err == ("mpc-dc: error: <scenario>: key 'run.days': expected a whole number of "
                   "15-minute intervals (a multiple of 1/96 d = 0.25 h), got 0.1 d = 9.6 "
                   "intervals (from --days 0.1)\n")
    err = _refused(capsys, [*SHORT_RUN, "--controller", "baseline", "--set", "run.days=1.01"],
                   tmp_path / "out")
    assert "key 'run.days': expected a whole number of 15-minute intervals" in err
    assert "got 1.01 d = 96.96 intervals" in err


def test_reproduce_rcdc_days_beyond_the_month_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--days 31`` of a 30-day month used to run the whole month without a word (exit
    0); refused before any data is read (the data folder here is empty)."""
    data = tmp_path / "data"
    data.mkdir()
    err = _refused(capsys, ["reproduce", "rcdc", "--data", str(data), "--days", "31"],
                   tmp_path / "out")
    assert err == ("mpc-dc: error: <command line>: key '--days': expected at most 30 (the "
                   "daily windows of 2022-04), got 31\n")


def _sweep_file(tmp_path: Path, kinds: list[str]) -> Path:
    """A sweep of the default scenario, 0.25 d, one run per controller kind."""
    base = REPO / "mpc_dc" / "scenarios" / "default.toml"
    runs = ", ".join(f'{{ "controller.kind" = "{k}" }}' for k in kinds)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'[sweep]\nname = "refused"\nbase = "{base}"\nlist = [{runs}]\n'
                     '[sweep.grid]\n"run.days" = [0.25]\n', encoding="utf-8")
    return sweep


def _failing_runs(monkeypatch: pytest.MonkeyPatch, errors: dict[str, BaseException]) -> None:
    """Each sweep run raises the error of its controller kind (nothing is simulated)."""
    from mpc_dc import runner, sweep

    def run_scenario(scenario: object, **kwargs: object) -> None:
        raise errors[scenario.controller.kind]  # type: ignore[attr-defined]

    monkeypatch.setattr(runner, "run_scenario", run_scenario)
    monkeypatch.setattr(sweep, "_prepared", lambda scenario: None)
    monkeypatch.setattr("mpc_dc.commands.sweep.check_sweep_data", lambda spec: 0)


def test_a_sweep_run_refused_with_any_user_error_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every user-error type of the CLI counts in a sweep too: an InvariantError (exit 2
    from `mpc-dc run`) ended the sweep with exit 1, "run the same command again to retry
    them", and was logged at ERROR with its traceback."""
    from mpc_dc.sim.invariants import InvariantError

    _failing_runs(monkeypatch, {"baseline": InvariantError("interval 3: the books do not "
                                                           "close")})
    assert cli.main(["sweep", str(_sweep_file(tmp_path, ["baseline"])),
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpc-dc: error: 1 of 1 runs refused for bad input (first "
                          "kind=baseline__")
    assert err.endswith("__289342250a: invariant violated over the run: interval 3: the "
                        "books do not close)\n")
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in shown if r.exc_info] == []


def test_a_sweep_run_that_fails_otherwise_keeps_exit_1_and_the_retry_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that is not bad input may pass on a second try; alongside a refused run
    the line names both, and bad input sets the exit code (the input must change)."""
    from traces.errors import ConfigError

    _failing_runs(monkeypatch, {"baseline": RuntimeError("solver crashed"),
                                "perfect": ConfigError("s.toml", "no good", key="run.seed")})
    sweep = _sweep_file(tmp_path, ["baseline"])
    assert cli.main(["sweep", str(sweep), "--out", str(tmp_path / "one")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpc-dc: error: 1 of 1 runs failed (first kind=baseline__")
    assert err.endswith(": RuntimeError: solver crashed); run the same command again to "
                        "retry them\n")
    sweep = _sweep_file(tmp_path, ["baseline", "perfect"])
    assert cli.main(["sweep", str(sweep), "--out", str(tmp_path / "two")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mpc-dc: error: 1 of 2 runs refused for bad input (first "
                          "kind=perfect__")
    assert ": s.toml: key 'run.seed': no good); 1 more failed otherwise (first "\
        "kind=baseline__" in err
    assert "ConfigError" not in err  # bad input carries no type; the other failure does
    assert err.endswith(": RuntimeError: solver crashed); run the same command again to "
                        "retry those\n")


@pytest.mark.parametrize(("option", "expected"), [
    (["--days", "100000", "--start", "2022-04-01"],
     "argument --days: expected a finite number in (0, 3660] [d], got '100000'"),
    (["--train-days", "1e9"],
     "argument --train-days: expected a finite number in (0, 3660] [d], got '1e9'"),
    (["--horizon", "100000000"],
     "argument --horizon: expected a whole number in [1, 35136], got '100000000'"),
    (["--window", "2022-04-01", "1e9"],
     "--window: DAYS: expected a finite number in (0, 3660] [d], got '1e9'"),
    (["--window", "2022-04-01", "nan"],
     "--window: DAYS: expected a finite number in (0, 3660] [d], got 'nan'"),
    (["--window", "2022-13-01", "1"],
     "--window: START: expected a date or time like 2022-04-05 or 2022-04-05T06:00Z, got "
     "'2022-13-01'"),
])
def test_backtest_lengths_beyond_the_dates_are_refused(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        option: list[str], expected: str) -> None:
    """On the real data each was an internal error, exit 1: "OutOfBoundsDatetime: Cannot
    cast 2296-01-15 ...", "OutOfBoundsTimedelta: Cannot cast 1000000000 days ...",
    "ValueError: cannot convert float NaN to integer", "ArgumentTypeError: expected a
    date or time ..." (an option type's error raised outside argparse)."""
    err = _refused(capsys, ["backtest", "--data", str(shared_data), "--series", "lmp",
                            "--forecaster", "persistence", *option], tmp_path / "out")
    assert err.startswith(f"mpc-dc: error: {expected}")
