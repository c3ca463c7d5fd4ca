"""The bad-input corpus through the CLI: one stderr line, non-zero exit, no output.

Every file under ``tests/data/bad/`` is made up (never copied from the real data):

* ``*.csv`` — malformed traces, checked with ``mpc-dc data check FILE`` (their reader-level
  messages are pinned in ``test_bad_input_traces.py``);
* ``scenario_*.toml`` — malformed scenarios, checked with ``mpc-dc scenario check FILE``
  and ``mpc-dc run FILE --out DIR``;
* ``sweep_*.toml`` — malformed sweeps, checked with ``mpc-dc sweep FILE --out DIR`` and
  ``mpc-dc scenario check FILE``.

For each: exit code 2, exactly one stderr line ``mpc-dc: error: FILE: ...`` naming the
key or line, and no output directory (nor ``*.tmp-*`` leftovers) anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpc_dc.cli import main as cli_main

BAD = Path(__file__).parent / "data" / "bad"
UTC_END = "line 7: field 'UTC Timestamp (Interval Ending)'"
FORMATS = (
    "known formats: eia_lmp, greendcc_prices, electricitymaps_carbon, eia930_fuel_mix, "
    "burstgpt_requests, burstgpt_hourly, google_pdu, windpowerlib_weather, "
    "windpowerlib_power_curves, mlenergy_v3, mlenergy_v3_dir, mlenergy_v2, llm_perf"
)

#: Scenario files: expected message after "FILE: " (a regex when it starts with "re:").
SCENARIOS: dict[str, str] = {
    "scenario_empty": "scenario file is empty",
    "scenario_not_utf8": "not UTF-8 text (byte 0xe9 at offset 50); expected a TOML file",
    "scenario_invalid_toml": "invalid TOML: Invalid value (at line 4, column 8)",
    "scenario_unknown_key": "key 'run.dayz': unknown key; did you mean 'days'?",
    "scenario_wrong_unit_key": (
        "key 'site.datacenter.capacity_kw': unknown key; did you mean 'it_capacity_mw'?"
    ),
    "scenario_wrong_type": "key 'run.days': expected a number, got 'seven'",
    "scenario_negative_capacity": (
        "key 'site.datacenter.it_capacity_mw': expected a value > 0, got -100.0"
    ),
    "scenario_deferrable_share_above_one": (
        "key 'run.deferrable_share': expected a value in [0, 1], got 1.5"
    ),
    "scenario_huge_days": "key 'run.days': expected a value <= 366 d, got 1000000000.0",
    "scenario_nan_days": "key 'run.days': expected a finite number, got nan",
    "scenario_infinite_import_limit": (
        "key 'site.grid.import_limit_mw': expected a finite number, got inf"
    ),
    "scenario_deadline_before_arrival": "key 'run.window_h': expected a value > 0, got -2.0",
    "scenario_window_off_grid": (
        "key 'run.window_h': expected a multiple of 0.25 h (whole 15-min intervals), got 0.1"
    ),
    "scenario_start_not_utc": (
        "key 'run.start': expected a UTC time on the 15-minute grid, "
        "got '2022-04-04T00:00:00-04:00'"
    ),
    "scenario_unknown_forecaster": (
        "key 'controller.forecaster': unknown forecaster 'sarimx'; did you mean 'sarimax'?"
    ),
    "scenario_wrong_tariff_kind": (
        "key 'site.grid.tariff.kind': expected one of ['wholesale', 'retail'], got 'spot'"
    ),
    "scenario_demand_charge_on_wholesale": (
        "key 'site.grid.tariff.demand_charge_usd_per_kw': a demand charge applies to the "
        "retail tariff only"
    ),
    "scenario_processing_not_concave": (
        "key 'site.datacenter.processing': F must be concave (non-increasing slopes), "
        "got [0.6 1.4]"
    ),
    "scenario_battery_efficiency_above_one": (
        "key 'site.battery.charge_efficiency': expected a value in (0, 1], got 1.2"
    ),
    "scenario_fleet_gpu_limit_infeasible": (
        "key 'fleet.campuses': model qwen3-235b-a22b needs at least 8 GPUs per instance in "
        "the allowed precisions (BF16, FP8, INT4) but the largest campus has 4; no schedule "
        "can serve it"
    ),
    "scenario_fleet_unknown_key": "key 'serving.fidelty': unknown key; did you mean 'fidelity'?",
}

#: Sweep files: expected message after "FILE: ".
SWEEPS: dict[str, str] = {
    "sweep_missing_sweep_table": (
        "key 'sweep': required table is missing; a sweep file needs a [sweep] table with "
        "'grid' and/or 'list'"
    ),
    "sweep_unknown_sweep_key": (
        "key 'sweep.controller.forecaster': unknown key; valid keys: name, base, grid, list, "
        "reference; scenario overrides go in sweep.grid or sweep.list"
    ),
    "sweep_unknown_override_key": (
        "key 'controller.forecastr': unknown key; did you mean 'forecaster'? "
        "(override in sweep.grid)"
    ),
    "sweep_override_out_of_range": (
        "key 'run.deferrable_share': expected a value in [0, 1], got 1.5 (override in sweep.grid)"
    ),
    "sweep_empty_grid_values": (
        "key 'sweep.grid.run.deferrable_share': expected a non-empty list of values, got []"
    ),
    "sweep_repeated_value": (
        "key 'sweep.grid.run.deferrable_share': repeated value in [0.2, 0.2]"
    ),
    "sweep_key_in_list_and_grid": (
        "key 'sweep.list[0].run.deferrable_share': given in both sweep.list and sweep.grid"
    ),
    "sweep_base_not_found": f"key 'sweep.base': base scenario {BAD / 'no_such_base.toml'} "
    "not found",
    "sweep_reference_matches_no_run": (
        "key 'sweep.reference': no run has the reference overrides {'controller.kind': 'perfect'}"
    ),
    "sweep_too_many_runs": "key 'sweep': 104976 runs; expected at most 100000",
}

#: Trace files through ``data check`` (sniffed format). The reader-level messages with
#: their exact lines are pinned in test_bad_input_traces.py.
TRACES: dict[str, str] = {
    "burstgpt_hourly_all_mismatch": "line 3: field 'all': all = 10 but conversation + api = 9",
    "burstgpt_negative_tokens": "line 3: field 'Request tokens': value -5 is outside [0, inf]",
    "burstgpt_total_mismatch": "line 3: field 'Total tokens': Total tokens 90 != Request",
    "burstgpt_unsorted": "line 4: field 'Timestamp': timestamp 7 is earlier than the row before",
    "empty": "file is empty; expected a header line and data rows",
    "google_nan_run_too_long": "line 6: field 'measured_power_util': 4 consecutive missing",
    "lmp_absurd_price": "line 6: field 'J - New York City LMP': value 12500 is outside",
    "lmp_dst_duplicated_local_hour": f"{UTC_END}: duplicated timestamp 2020-11-01 06:00",
    "lmp_duplicated_timestamp": f"{UTC_END}: duplicated timestamp 2020-03-01 07:00",
    "lmp_future_timestamp": f"{UTC_END}: timestamp 2099-03-01 07:00:00+00:00 is in the future",
    "lmp_given_carbon_file": "expected at least 2 timestamped rows to infer the resolution",
    "lmp_header_only": "line 5: header found but no data rows",
    "lmp_local_time_disagrees": (
        "line 6: field 'Local Timestamp Eastern Time (Interval Beginning)': local interval"
    ),
    "lmp_missing_column": "line 1: unknown format (first line starts 'NYISO Hourly Real-Time",
    "lmp_nan_run_too_long": "line 6: field 'J - New York City LMP': 6 consecutive missing",
    "lmp_unparseable_timestamp": "line 6: field 'UTC Timestamp (Interval Ending)': unparseable",
    "lmp_unsorted": f"{UTC_END}: timestamp 2020-03-01 07:00:00+00:00 is earlier than the row",
    "prices_not_utf8": "line 3: not UTF-8 text (byte 0xe9); expected a UTF-8 CSV file",
    "unknown_format": f"line 1: unknown format (first line starts 'station,reading'); {FORMATS}",
}
#: Bad only for a reader given more context than the CLI has (tested at reader level).
READER_ONLY = {"fuel_mix_cf_above_one": "needs installed_wind_mw; see test_bad_input_traces"}


def _only_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    return lines[0]


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*.tmp-*"))
    assert not list(BAD.rglob("*.tmp-*")) and not list(BAD.glob("*/"))


def _check(argv: list[str], path: Path, expected: str, tmp_path: Path,
           capsys: pytest.CaptureFixture[str], *, exact: bool = True) -> None:
    code = cli_main(argv)
    line = _only_line(capsys.readouterr().err)
    assert code == 2
    prefix = f"mpc-dc: error: {path}: "
    assert line.startswith(prefix), line
    if exact:
        assert line == prefix + expected
    else:
        assert line[len(prefix):].startswith(expected), line
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_bad_scenario_check(case: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / f"{case}.toml"
    _check(["scenario", "check", str(path)], path, SCENARIOS[case], tmp_path, capsys)


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_bad_scenario_run_writes_nothing(case: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / f"{case}.toml"
    _check(["run", str(path), "--out", str(tmp_path / "out")], path, SCENARIOS[case],
           tmp_path, capsys)


@pytest.mark.parametrize("case", sorted(SWEEPS))
def test_bad_sweep(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / f"{case}.toml"
    _check(["sweep", str(path), "--out", str(tmp_path / "out")], path, SWEEPS[case],
           tmp_path, capsys)


@pytest.mark.parametrize("case", sorted(set(SWEEPS) - {"sweep_missing_sweep_table"}))
def test_bad_sweep_scenario_check(case: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``scenario check`` validates sweep files too (every run's scenario), same message."""
    path = BAD / f"{case}.toml"
    _check(["scenario", "check", str(path)], path, SWEEPS[case], tmp_path, capsys)


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_a_bad_scenario_is_a_bad_sweep_too(case: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep file is a scenario file: the same errors, before any output."""
    path = BAD / f"{case}.toml"
    code = cli_main(["sweep", str(path), "--out", str(tmp_path / "out")])
    line = _only_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"mpc-dc: error: {path}: ")
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("case", sorted(TRACES))
def test_bad_trace_data_check(case: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / f"{case}.csv"
    _check(["data", "check", str(path)], path, TRACES[case], tmp_path, capsys, exact=False)


def test_corpus_is_complete_and_large_enough() -> None:
    files = {p.name for p in BAD.iterdir() if p.is_file()}
    covered = ({f"{c}.toml" for c in SCENARIOS} | {f"{c}.toml" for c in SWEEPS}
               | {f"{c}.csv" for c in TRACES} | {f"{c}.csv" for c in READER_ONLY})
    assert files == covered
    assert len(files) >= 30


def test_unknown_key_messages_suggest_a_key() -> None:
    suggesting = [m for m in (*SCENARIOS.values(), *SWEEPS.values()) if "unknown key" in m]
    assert len(suggesting) >= 3
    for message in suggesting:
        assert re.search(r"did you mean '\w+'\?|valid keys: ", message), message
