"""The ``[faults]`` table of a scenario file: what ``mpc-dc scenario check`` refuses (one
line, exit 2), the old key it replaces, and a faulted run through the command line (the
summary, the run directory's ledger and KPIs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.sim.faults import FAULT_CLASSES, FaultSpec
from mpc_dc.site.scenario import example_path, load_scenario, scenario_to_mapping

SITE = '[[site.campuses]]\nname = "a"\nprice_node = "D"\n'

#: A ``[faults]`` body -> the message after ``FILE: ``.
BAD_TABLES: dict[str, str] = {
    "main_solve = 1.5": "key 'faults.main_solve': expected a rate in [0, 1], got 1.5",
    "instance_crash = -0.1": "key 'faults.instance_crash': expected a rate in [0, 1], got -0.1",
    "crash = 0.1": "key 'faults.crash': unknown key; did you mean 'instance_crash'?",
    "mainsolve = 0.1": "key 'faults.mainsolve': unknown key; did you mean 'main_solve'?",
    "gpu_loss_intervals = 0": (
        "key 'faults.gpu_loss_intervals': expected a positive number of intervals, got 0"),
    "feed_outage_intervals = -3": (
        "key 'faults.feed_outage_intervals': expected a positive number of intervals, got -3"),
    "feed_outage_intervals = 2.5": (
        "key 'faults.feed_outage_intervals': expected an integer, got 2.5"),
    "gpu_loss_fraction = 0.0": (
        "key 'faults.gpu_loss_fraction': expected a share in (0, 1], got 0.0"),
    "dr_late_notice_h = -1.0": (
        "key 'faults.dr_late_notice_h': expected a duration >= 0 h, got -1.0"),
    "stale_forecast = nan": "key 'faults.stale_forecast': expected a finite number, got nan",
    'price_feed = "high"': "key 'faults.price_feed': expected a number, got 'high'",
}


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip("\n").split("\n")
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("body", sorted(BAD_TABLES))
def test_scenario_check_refuses_a_bad_faults_table(
        body: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"{SITE}\n[faults]\n{body}\n", encoding="utf-8")
    assert cli_main(["scenario", "check", str(path)]) == 2
    assert _one_line(capsys) == f"mpc-dc: error: {path}: {BAD_TABLES[body]}"


def test_the_old_fault_rate_key_names_its_new_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"{SITE}\n[controller]\nfault_rate = 0.1\n", encoding="utf-8")
    assert cli_main(["scenario", "check", str(path)]) == 2
    assert _one_line(capsys) == (
        f"mpc-dc: error: {path}: key 'controller.fault_rate': a key of the schema before the "
        "one schema; now faults.main_solve (the [faults] table: a rate per fault class)")


def test_a_faults_table_reads_back_and_defaults_to_no_fault(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"{SITE}\n[faults]\ngpu_loss = 0.25\ngpu_loss_intervals = 2\n",
                    encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.faults == FaultSpec(gpu_loss=0.25, gpu_loss_intervals=2)
    assert {c: getattr(scenario.faults, c) for c in FAULT_CLASSES} == {
        c: 0.25 if c == "gpu_loss" else 0.0 for c in FAULT_CLASSES}
    assert scenario_to_mapping(scenario)["faults"]["gpu_loss"] == 0.25
    assert not load_scenario(example_path("rcdc_default")).faults.active


def test_a_faulted_run_through_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every main solve and every fallback LP fails: the summary, the ledger and the KPIs
    say so; the run completes on the rule."""
    path = tmp_path / "faulted.toml"
    text = example_path("rcdc_default").read_text(encoding="utf-8")
    path.write_text(f"{text}\n[faults]\nmain_solve = 1.0\nfallback_solve = 1.0\n",
                    encoding="utf-8")
    out = tmp_path / "run"
    assert cli_main(["run", str(path), "--days", "0.25", "--controller", "persistence",
                     "--no-plots", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    summary = [line for line in stdout.splitlines() if line.startswith("faults injected")]
    assert summary == ["faults injected              48 {'main_solve': 24, 'fallback_solve': 24}"]
    kpis = json.loads((out / "kpis.json").read_text(encoding="utf-8"))
    assert kpis["faults_injected"]["main_solve"] == kpis["faults_injected"]["fallback_solve"] == 24
    assert kpis["fallbacks"] == {"rule": 24}
    ledger = pd.read_parquet(out / "ledger.parquet")
    assert (ledger["faults_active"] == "main_solve;fallback_solve").all()


BAD = Path(__file__).parent / "data" / "bad"

#: Corpus files of bad ``[faults]`` tables -> the message after ``FILE: ``.
BAD_FILES: dict[str, str] = {
    "scenario_faults_rate_above_one": (
        "key 'faults.main_solve': expected a rate in [0, 1], got 1.5"),
    "scenario_faults_unknown_class": (
        "key 'faults.crash': unknown key; did you mean 'instance_crash'?"),
    "scenario_faults_zero_duration": (
        "key 'faults.gpu_loss_intervals': expected a positive number of intervals, got 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_faults_corpus(case: str, command: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """``scenario check`` and ``run``: one line, exit 2, nothing written."""
    path = BAD / f"{case}.toml"
    out = tmp_path / "out"
    argv = (["scenario", "check", str(path)] if command == "check"
            else ["run", str(path), "--out", str(out)])
    assert cli_main(argv) == 2
    assert _one_line(capsys) == f"mpc-dc: error: {path}: {BAD_FILES[case]}"
    assert not out.exists() and not list(tmp_path.iterdir())
