"""The bad-input corpus through the CLI: one stderr line, non-zero exit, no output.

Every file under ``tests/data/bad/`` is made up (never copied from the real data):

* ``*.csv`` — malformed traces, checked with ``mpc-dc data check FILE`` (their reader-level
  messages are pinned in ``test_bad_input_traces.py``);
* ``scenario_*.toml`` — malformed scenarios of the one schema (docs/scenario.md), and a few
  files of the schemas before it (refused naming the new key), checked with
  ``mpc-dc scenario check FILE`` and ``mpc-dc run FILE --out DIR``;
  ``scenario_real_*.toml`` are valid files whose data (the public data, ``shared_data``)
  do not cover the run: ``scenario check`` refuses them as ``run`` does, before it runs;
* ``sweep_*.toml`` — malformed sweeps, checked with ``mpc-dc sweep FILE --out DIR`` and
  ``mpc-dc scenario check FILE``; ``sweep_real_*.toml``: a run the data refuse;
* ``cli_*.args`` — one command line each (``{bad}``: this folder, ``{out}``: an output
  path) with an option that must be refused: a zero, NaN or negative number, a file
  where a folder is expected, an impossible date, an unsafe URL, ``--overwrite`` on a
  folder mpc-dc did not write, an unknown controller label or one the scenario cannot
  take; every one refused before anything runs;
* ``report_*/`` — corrupt run and sweep directories given to ``mpc-dc report``.

For each: exit code 2, exactly one stderr line ``mpc-dc: error: ...`` naming the file,
key, line or option, no traceback, and nothing written (no output directory, no
``*.tmp-*`` leftovers, nothing new in this folder).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forecasters.base import forecaster_names
from mpc_dc.cli import main as cli_main

BAD = Path(__file__).parent / "data" / "bad"
UTC_END = "line 7: field 'UTC Timestamp (Interval Ending)'"
FORMATS = (
    "known formats: eia_lmp, greendcc_prices, electricitymaps_carbon, eia930_fuel_mix, "
    "burstgpt_requests, burstgpt_hourly, google_pdu, windpowerlib_weather, "
    "windpowerlib_power_curves, mlenergy_v3, mlenergy_v3_dir, mlenergy_v2, llm_perf"
)

C0 = "site.campuses[0]"

#: Scenario files: expected message after "FILE: ".
SCENARIOS: dict[str, str] = {
    "scenario_empty": "scenario file is empty",
    "scenario_not_utf8": "not UTF-8 text (byte 0xe9 at offset 50); expected a TOML file",
    "scenario_invalid_toml": "invalid TOML: Invalid value (at line 4, column 8)",
    "scenario_unknown_key": "key 'run.dayz': unknown key; did you mean 'days'?",
    "scenario_wrong_unit_key": (
        f"key '{C0}.other_it.capacity_kw': unknown key; did you mean 'it_capacity_mw'?"
    ),
    "scenario_wrong_type": "key 'run.days': expected a number, got 'seven'",
    "scenario_negative_capacity": (
        f"key '{C0}.other_it.it_capacity_mw': expected a value > 0, got -100.0"
    ),
    "scenario_deferrable_share_above_one": (
        f"key '{C0}.other_it.deferrable_share': expected a value in [0, 1], got 1.5"
    ),
    "scenario_huge_days": "key 'run.days': expected a value <= 366 d, got 1000000000.0",
    "scenario_nan_days": "key 'run.days': expected a finite number, got nan",
    "scenario_infinite_import_limit": (
        f"key '{C0}.grid.import_limit_mw': expected a finite number, got inf"
    ),
    "scenario_deadline_before_arrival": (
        f"key '{C0}.other_it.window_h': expected a value > 0, got -2.0"
    ),
    "scenario_window_off_grid": (
        f"key '{C0}.other_it.window_h': expected a multiple of 0.25 h (whole 15-min "
        "intervals), got 0.1"
    ),
    "scenario_start_not_utc": (
        "key 'run.start': expected a UTC time on the 15-minute grid, "
        "got '2022-04-04T00:00:00-04:00'"
    ),
    "scenario_unknown_forecaster": (
        "key 'controller.forecaster': unknown forecaster 'sarimx'; did you mean 'sarimax'?"
    ),
    "scenario_wrong_tariff_kind": (
        f"key '{C0}.grid.tariff.kind': expected one of ['wholesale', 'retail'], got 'spot'"
    ),
    "scenario_demand_charge_on_wholesale": (
        f"key '{C0}.grid.tariff.demand_charge_usd_per_kw': a demand charge applies to the "
        "retail tariff only; expected 0 under kind 'wholesale' (or kind 'retail'), got 12.39"
    ),
    "scenario_processing_not_concave": (
        f"key '{C0}.other_it.processing': F must be concave; expected non-increasing "
        "slopes, got slopes [0.6, 1.4]"
    ),
    "scenario_battery_efficiency_above_one": (
        f"key '{C0}.battery.charge_efficiency': expected a value in (0, 1], got 1.2"
    ),
    "scenario_fleet_gpu_limit_infeasible": (
        "key 'fleet.models': qwen3-235b-a22b needs at least 8 GPUs per instance in the "
        "allowed precisions (BF16, FP8, INT4) but the largest campus has 4; no schedule "
        "can serve it"
    ),
    "scenario_fleet_unknown_key": "key 'serving.fidelty': unknown key; did you mean 'fidelity'?",
    "scenario_missing_site": (
        "key 'site': required key is missing; expected a [site] table with at least one "
        "[[site.campuses]] (name, price_node)"
    ),
    "scenario_campus_missing_price_node": (
        f"key '{C0}.price_node': required key is missing; expected a string"
    ),
    "scenario_duplicate_campus_names": (
        "key 'site.campuses': expected unique campus names, got ['rcdc', 'rcdc']"
    ),
    "scenario_campus_index_in_message": (
        "key 'site.campuses[1].pue': expected a value >= 1, got 0.8"
    ),
    "scenario_gpus_without_fleet": (
        f"key '{C0}.gpus': campus 'a' has 16 GPUs but the scenario has no [fleet] to serve "
        "on them; add [fleet] or set gpus = 0"
    ),
    "scenario_unknown_price_node": (
        f"key '{C0}.price_node': unknown price node 'NYC' for data.source 'real'; expected "
        "a NYISO zone (A..K, or its NYISO name such as CAPITL) or a CAISO hub (NP15, SP15, "
        "ZP26)"
    ),
    "scenario_dr_day_outside_run": (
        "key 'dr.days': DR day 2022-04-10 (America/New_York, 2022-04-10 04:00 to 2022-04-11 "
        "04:00 UTC) is not a whole day of the run (2022-04-04 04:00 to 2022-04-06 04:00 UTC)"
    ),
    "scenario_negative_rate_multiplier": (
        "key 'workload.requests.rate_multiplier': expected a value > 0, got -1.0"
    ),
    # Files of the schemas before the one schema: the first old key names its new key.
    "scenario_old_datacenter_table": (
        "key 'site.datacenter': a key of the schema before the one schema; now "
        "[site.campuses.other_it] (it_capacity_mw, processing) and site.campuses[i].pue"
    ),
    "scenario_old_kind_fleet": (
        "key 'kind': a key of the schema before the one schema; remove it: there is one "
        "schema (a scenario with a [fleet] table serves LLM requests)"
    ),
    "scenario_old_deferrable_share": (
        "key 'run.deferrable_share': a key of the schema before the one schema; now "
        "site.campuses[i].other_it.deferrable_share"
    ),
    "scenario_old_data_source_nyiso": (
        "key 'data.source': 'nyiso' is a value of the schema before the one schema; now "
        'data.source = "real"; the zone is site.campuses[i].price_node'
    ),
    "scenario_old_fleet_campuses": (
        "key 'fleet.campuses': a key of the schema before the one schema; now "
        "[[site.campuses]] (name, price_node, carbon_zone, gpus, pue)"
    ),
}

#: Scenario files refused for their data (``{data}``: the data folder), read from the
#: public data as ``run`` reads them (``data_check``), before anything runs.
REAL_SCENARIOS: dict[str, str] = {
    "scenario_real_prices_not_covering_the_run": (
        "key 'run.start': NYISO RT prices at zone J ({data}/nyiso_lbmp/"
        "nyiso_lmp_rt_hr_zones_2021.csv) covers 2021-01-01 05:00 to 2022-01-01 05:00 UTC; "
        "history + run + horizon need 2020-05-18 04:00 to 2020-06-03 04:00 UTC (1536 "
        "intervals missing)"
    ),
    "scenario_real_carbon_not_covering_the_run": (
        f"key '{C0}.carbon_zone': US-CAL-CISO carbon intensity ({{data}}/carbon/"
        "US-CAL-CISO_2021_hourly.csv) covers 2021-01-01 00:00 to 2022-01-01 00:00 UTC; "
        "history + run + horizon need 2022-03-21 04:00 to 2022-04-06 04:00 UTC (1536 "
        "intervals missing)"
    ),
    "scenario_real_run_beyond_burstgpt": (
        "key 'run.days': BurstGPT ({data}/burstgpt/burstgpt_hourly.csv) has 61 days of "
        "hourly counts from the run start (its day 0); run + horizon need 61.5"
    ),
    "scenario_real_unknown_turbine": (
        f"key '{C0}.renewable.turbine_type': unknown turbine type 'E-999/1'; expected a row "
        "of wind/windpowerlib/power_curves.csv"
    ),
}

#: Sweep files: expected message after "FILE: " (a regex when it starts with "re:").
K_SHARE = "site.campuses[0].other_it.deferrable_share"
SWEEPS: dict[str, str] = {
    "sweep_missing_sweep_table": (
        "key 'sweep': required table is missing; a sweep file needs a [sweep] table with "
        "'grid' and/or 'list'"
    ),
    "sweep_unknown_sweep_key": (
        "key 'sweep.controller.forecaster': unknown key; valid keys: name, base, grid, list, "
        "extra, reference; scenario overrides go in sweep.grid or sweep.list"
    ),
    "sweep_unknown_override_key": (
        "key 'controller.forecastr': unknown key; did you mean 'forecaster'? "
        "(override in sweep.grid)"
    ),
    "sweep_override_out_of_range": (
        f"key '{K_SHARE}': expected a value in [0, 1], got 1.5 (override in sweep.grid)"
    ),
    "sweep_empty_grid_values": (
        f"key 'sweep.grid.{K_SHARE}': expected a non-empty list of values, got []"
    ),
    "sweep_repeated_value": f"key 'sweep.grid.{K_SHARE}': repeated value in [0.2, 0.2]",
    "sweep_key_in_list_and_grid": (
        f"key 'sweep.list[0].{K_SHARE}': given in both sweep.list and sweep.grid"
    ),
    "sweep_base_not_found": f"key 'sweep.base': base scenario {BAD / 'no_such_base.toml'} "
    "not found",
    "sweep_reference_matches_no_run": (
        "key 'sweep.reference': no run has the reference overrides {'controller.kind': "
        "'perfect'}; expected the overrides of one of the runs (e.g. add them to sweep.list)"
    ),
    "sweep_too_many_runs": "key 'sweep': 104976 runs; expected at most 100000",
    "sweep_old_key_override": (
        "key 'run.deferrable_share': a key of the schema before the one schema; now "
        "site.campuses[i].other_it.deferrable_share (override in sweep.grid)"
    ),
    "sweep_unknown_campus_name": (
        "key 'site.campuses[north].pue': no entry named 'north'; expected a position 0..0 "
        "or a name ('rcdc') (override in sweep.grid)"
    ),
    "sweep_campus_position_beyond_the_list": (
        "key 'site.campuses[1].pue': no entry [1]: the list has 1 entry; expected a "
        "position 0..0 or a name ('rcdc') (override in sweep.list[0])"
    ),
}

#: Sweep files refused for the data of one of their runs, before any run starts.
REAL_SWEEPS: dict[str, str] = {
    "sweep_real_data_not_covering_a_run": (
        r"re:key 'run\.start': NYISO RT prices at zone F \({data}/nyiso_lbmp/"
        r"nyiso_lmp_rt_hr_zones_2022\.csv\) covers 2022-01-01 05:00 to 2023-01-01 05:00 "
        r"UTC; history \+ run \+ horizon need 2023-03-20 04:00 to 2023-04-05 04:00 UTC "
        r"\(1536 intervals missing\) \(run start=2023-04-03T04-00-00Z__[0-9a-f]{10}\)"
    ),
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
    "prices_cut_off_mid_row": "line 5: 2 fields, expected 3 as in the header; the file ends",
    "prices_short_row": "line 3: 2 fields, expected 3 as in the header; the row is cut short",
    "prices_extra_field": "line 3: 4 fields, expected 3 as in the header (an extra separator",
    "prices_infinite_value": "line 4: field 'Price (USD/MWh)': expected a finite number, got inf",
    "prices_value_beyond_float": "line 3: field 'Price (USD/MWh)': expected a finite number",
    "prices_utf16": "line 1: not UTF-8 text (byte 0xff); expected a UTF-8 CSV file",
    "carbon_repeated_header": (
        "line 1: field 'Carbon Intensity gCO\u2082eq/kWh (direct)': column name repeated in the "
        "header (columns 5 and 7)"),
    "burstgpt_fractional_tokens": (
        "line 3: field 'Request tokens': value 12.5 is not a whole number in [0, 1e+07]"),
    "burstgpt_hourly_fractional_hour": (
        "line 3: field 'hour': value 1.5 is not a whole number in [0, 23]"),
    "google_time_beyond_clock": "line 3: field 'time': expected integer microseconds since",
    "fuel_mix_year_zero": (
        "line 3: field 'timestamp': timestamp '0000-01-01 01:00:00+00:00' is outside 1900..2200"),
    "weather_repeated_column": (
        "line 1: field 'temperature / 2': column name repeated in the header (columns 3 and 6)"),
    "power_curves_cut_off": "line 3: 4 fields, expected 6 as in the header; the file ends",
    "llm_perf_repeated_header": (
        "line 1: field 'Prefill (s)': column name repeated in the header (columns 3 and 5)"),
}
#: Bad only for a reader given more context than the CLI has (tested at reader level).
READER_ONLY = {"fuel_mix_cf_above_one": "needs installed_wind_mw; see test_bad_input_traces"}

_FETCH = "(see 'mpc-dc data fetch --help')"
_NOT_A_DIR = "is a file; expected a directory path (new, or an mpc-dc output folder)"
_DAYS = "in (0, 366] [d]"
_EXAMPLES = "{bad}/../../../mpc_dc/scenarios"
_FORECASTERS = ", ".join(n for n in forecaster_names() if n != "day_ahead_known")

#: Command lines (``cli_<case>.args``): the whole line after ``mpc-dc: error: ``.
CLI: dict[str, str] = {
    "cli_run_days_zero": f"argument --days: expected a finite number {_DAYS}, got '0' "
    "(see 'mpc-dc run --help')",
    "cli_run_days_nan": f"argument --days: expected a finite number {_DAYS}, got 'nan' "
    "(see 'mpc-dc run --help')",
    "cli_run_days_negative": f"argument --days: expected a finite number {_DAYS}, got '-2' "
    "(see 'mpc-dc run --help')",
    "cli_run_days_beyond_a_year": f"argument --days: expected a finite number {_DAYS}, got "
    "'400' (see 'mpc-dc run --help')",
    "cli_run_days_cut_a_dr_day": f"{_EXAMPLES}/dr_caiso.toml: key 'dr.days': DR day "
    "2021-07-09 (America/Los_Angeles, 2021-07-09 07:00 to 2021-07-10 07:00 UTC) is not a "
    "whole day of the run (2021-07-06 07:00 to 2021-07-08 07:00 UTC) (from --days 2)",
    "cli_run_unknown_controller": "argument --controller: unknown label 'sarimx'; did you "
    "mean 'sarimax'? (see 'mpc-dc run --help')",
    "cli_run_controller_flex_without_a_fleet": f"{_EXAMPLES}/rcdc_default.toml: key "
    "'fleet.flexibility': flexibility S4 needs a [fleet] (inference pools); this scenario "
    "has none (from --controller S4+fluid)",
    "cli_run_out_is_a_file": f"argument --out: {{bad}}/empty.csv {_NOT_A_DIR} "
    "(see 'mpc-dc run --help')",
    "cli_run_out_below_a_file": "argument --out: {bad}/empty.csv is a file, so "
    "{bad}/empty.csv/run cannot be created (see 'mpc-dc run --help')",
    "cli_run_data_missing": "argument --data: {bad}/no_such_folder does not exist; expected a "
    "directory (see 'mpc-dc run --help')",
    "cli_run_missing_scenario": "{bad}/no_such_scenario.toml: scenario file not found",
    "cli_scenario_check_missing_file": "{bad}/no_such_scenario.toml: scenario file not found",
    # Passed (exit 0): --data beside a sweep file, whose runs read the file's data.dir
    # (the option was ignored).
    "cli_scenario_check_sweep_with_data": "--data: applies to a scenario file, not the sweep "
    "{bad}/sweep_too_many_runs.toml (its runs read the file's data.dir); expected the data "
    "folder in the sweep file's [data] table",
    "cli_run_overwrite_foreign_folder": "{bad}: not an mpc-dc output folder (no "
    ".mpc-dc-output.json); --overwrite replaces only folders mpc-dc wrote: choose another "
    "--out or remove it yourself",
    "cli_run_unknown_option": "unrecognized arguments: --dayz (see 'mpc-dc --help')",
    "cli_compare_out_is_a_file": f"argument --out: {{bad}}/empty.csv {_NOT_A_DIR} "
    "(see 'mpc-dc compare --help')",
    "cli_compare_empty_forecasters": "argument --forecasters: expected comma-separated labels "
    "like a,b,c, got ',,' (see 'mpc-dc compare --help')",
    "cli_compare_unknown_flex_label": "argument --flex: unknown label 'S9'; expected one of "
    "baseline, mpc, perfect, offline, S1..S6, fluid, request, fast, nofast or a forecaster "
    f"({_FORECASTERS}), joined by + (e.g. S4+fluid) (see 'mpc-dc compare --help')",
    "cli_compare_label_with_an_unknown_part": "argument --flex: unknown label 'fluidd' in "
    "'S4+fluidd'; did you mean 'fluid'? (see 'mpc-dc compare --help')",
    "cli_compare_day_ahead_known_label": "argument --forecasters: day_ahead_known is not a "
    "forecaster of every channel; set controller.price_known_ahead = true in the scenario "
    "(retail tariff) and give the label of another forecaster (see 'mpc-dc compare --help')",
    "cli_compare_flex_without_a_fleet": f"{_EXAMPLES}/rcdc_default.toml: key "
    "'fleet.flexibility': flexibility S2 needs a [fleet] (inference pools); this scenario "
    "has none (from --flex S2)",
    "cli_compare_runs_is_a_file": f"argument --runs: {{bad}}/empty.csv {_NOT_A_DIR} "
    "(see 'mpc-dc compare --help')",
    "cli_sweep_workers_zero": "argument --workers: expected a whole number >= 1, got '0' "
    "(see 'mpc-dc sweep --help')",
    "cli_sweep_workers_not_a_number": "argument --workers: expected a whole number, got 'two' "
    "(see 'mpc-dc sweep --help')",
    "cli_sweep_scheduler_malformed": "argument --scheduler: expected a scheduler address like "
    "tcp://10.0.0.5:8786, got '127.0.0.1' (see 'mpc-dc sweep --help')",
    "cli_sweep_out_is_a_file": f"argument --out: {{bad}}/empty.csv {_NOT_A_DIR} "
    "(see 'mpc-dc sweep --help')",
    "cli_backtest_negative_seed": "argument --seed: expected a whole number in [0, 4294967295], "
    "got '-3' (see 'mpc-dc backtest --help')",
    "cli_backtest_negative_train_days": "argument --train-days: expected a finite number in "
    "(0, 3660] [d], got '-7' (see 'mpc-dc backtest --help')",
    # Lengths beyond pandas' dates were internal errors (exit 1): "OutOfBoundsDatetime:
    # Cannot cast 2296-01-15 ...", "OutOfBoundsTimedelta: Cannot cast 1000000000 days".
    "cli_backtest_days_beyond_dates": "argument --days: expected a finite number in "
    "(0, 3660] [d], got '100000' (see 'mpc-dc backtest --help')",
    "cli_backtest_train_days_beyond_dates": "argument --train-days: expected a finite number "
    "in (0, 3660] [d], got '1e9' (see 'mpc-dc backtest --help')",
    "cli_backtest_horizon_beyond_dates": "argument --horizon: expected a whole number in "
    "[1, 35136], got '100000000' (see 'mpc-dc backtest --help')",
    "cli_backtest_window_days_beyond_dates": "--window: DAYS: expected a finite number in "
    "(0, 3660] [d], got '1e9'",
    # NaN was "internal error: ValueError: cannot convert float NaN to integer", an
    # impossible START "internal error: ArgumentTypeError: expected a date ...".
    "cli_backtest_window_days_nan": "--window: DAYS: expected a finite number in (0, 3660] "
    "[d], got 'nan'",
    "cli_backtest_window_impossible_start": "--window: START: expected a date or time like "
    "2022-04-05 or 2022-04-05T06:00Z, got '2022-13-01'",
    "cli_backtest_unparseable_start": "argument --start: expected a date or time like "
    "2022-04-05 or 2022-04-05T06:00Z, got '2022-13-45' (see 'mpc-dc backtest --help')",
    "cli_backtest_zero_horizon": "argument --horizon: expected a whole number in [1, 35136], "
    "got '0' (see 'mpc-dc backtest --help')",
    "cli_backtest_unknown_zone": "argument --zone: invalid choice: 'Z' (choose from 'A', 'B', "
    "'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K') (see 'mpc-dc backtest --help')",
    "cli_reproduce_days_zero": "argument --days: expected a whole number >= 1, got '0' "
    "(see 'mpc-dc reproduce --help')",
    "cli_reproduce_unknown_study": "<command line>: key 'study': unknown study 'rcdd'; "
    "expected one of ['dr', 'rcdc']",
    "cli_report_impossible_day": "argument --day: expected a date YYYY-MM-DD that exists, got "
    "'2022-02-30' (see 'mpc-dc report --help')",
    "cli_report_out_is_a_directory": "argument --out: {bad} is a directory; expected a file "
    "path (see 'mpc-dc report --help')",
    "cli_bench_repeats_zero": "argument --repeats: expected a whole number >= 1, got '0' "
    "(see 'mpc-dc bench scaling --help')",
    "cli_fetch_negative_timeout": f"argument --timeout: expected a finite number > 0 [s], got "
    f"'-5' {_FETCH}",
    "cli_fetch_impossible_date": "source 'nyiso_rt_zone_day': key 'date': got '20220231', "
    "which is not a calendar date; expected a real date like 20220401",
    "cli_fetch_oasis_impossible_date": "source 'caiso_oasis_rtpd_lmp': key 'start': got "
    "'20210229', which is not a calendar date; expected a real date like 20210101",
    "cli_fetch_cache_is_a_file": f"argument --cache: {{bad}}/empty.csv {_NOT_A_DIR} {_FETCH}",
    "cli_fetch_file_url_base": "--url-base: expected an https:// (or http://) URL like "
    "https://mirror.example.org, got 'file:///etc'",
    "cli_data_check_a_folder": "{bad}: unknown data folder; expected an ML.ENERGY v2 or v3 "
    f"folder; {FORMATS}",
}

#: Corrupt run and sweep directories (``report_<case>/``): the culprit file and message.
REPORTS: dict[str, str] = {
    "report_truncated_kpis": "kpis.json: line 3: invalid JSON (Expecting ',' delimiter, column "
    "19); the file is truncated or corrupt",
    "report_kpis_wrong_type": "kpis.json: expected a JSON object, got a list",
    "report_kpi_not_a_number": "kpis.json: field 'cost_usd': expected a number, got 'a lot'",
    "report_kpis_not_utf8": "kpis.json: not UTF-8 text; the file is corrupt",
    "report_missing_metadata": "metadata.json: file not found; expected a run directory "
    "written by mpc-dc run",
    "report_metadata_wrong_type": "metadata.json: expected a JSON object, got a string",
    # A run directory without kpis.json or ledger.parquet was "DIR: not a run or sweep
    # directory; expected kpis.json and ledger.parquet ...", and a ledger without rows
    # "expected rows indexed by (interval_start_utc, campus) ...", which it was.
    "report_missing_kpis": "kpis.json: file not found; expected a run directory written by "
    "mpc-dc run",
    "report_missing_ledger": "ledger.parquet: file not found; expected a run directory "
    "written by mpc-dc run",
    "report_ledger_no_rows": "ledger.parquet: no rows; expected one per interval and campus "
    "of the run",
    "report_garbage_parquet": "ledger.parquet: not a readable Parquet file (Parquet magic "
    "bytes not found in footer); the file is truncated or corrupt",
    "report_sweep_garbage_results": "results.parquet: not a readable Parquet file (Parquet "
    "magic bytes not found in footer); the file is truncated or corrupt",
    "report_sweep_json_truncated": "sweep.json: line 1: invalid JSON (Unterminated string "
    "starting at, column 15); the file is truncated or corrupt",
}


def _only_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    return lines[0]


def _corpus_entries() -> set[str]:
    return {str(p.relative_to(BAD)) for p in BAD.rglob("*")}


CORPUS = frozenset(_corpus_entries())
"""Every file and folder of the corpus, listed once: a case may add nothing to it."""


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*.tmp-*"))
    assert _corpus_entries() == CORPUS


def _check(argv: list[str], path: Path, expected: str, tmp_path: Path,
           capsys: pytest.CaptureFixture[str], *, exact: bool = True) -> None:
    """Exit 2 and one line ``mpc-dc: error: PATH: expected`` (``expected`` a regex when
    it starts with ``re:``, a prefix when not ``exact``); nothing written."""
    code = cli_main(argv)
    line = _only_line(capsys.readouterr().err)
    assert code == 2
    prefix = f"mpc-dc: error: {path}: "
    assert line.startswith(prefix), line
    if expected.startswith("re:"):
        assert re.fullmatch(expected[3:], line[len(prefix):]), line
    elif exact:
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


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", sorted(REAL_SCENARIOS))
def test_scenario_refused_for_its_data_before_anything_runs(
        case: str, command: str, shared_data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``scenario check`` reads the data as ``run`` does, so it refuses what ``run``
    refuses; ``run`` refuses it before simulating (nothing written)."""
    monkeypatch.setenv("MPC_DC_DATA", str(shared_data))
    path = BAD / f"{case}.toml"
    argv = (["scenario", "check", str(path)] if command == "check"
            else ["run", str(path), "--out", str(tmp_path / "out")])
    _check(argv, path, REAL_SCENARIOS[case].replace("{data}", str(shared_data)), tmp_path,
           capsys)


@pytest.mark.parametrize("command", ["check", "sweep", "dry-run"])
@pytest.mark.parametrize("case", sorted(REAL_SWEEPS))
def test_sweep_refused_for_the_data_of_a_run_before_any_run(
        case: str, command: str, shared_data: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep whose later run the data refuse is refused before its first run starts."""
    monkeypatch.setenv("MPC_DC_DATA", str(shared_data))
    path = BAD / f"{case}.toml"
    argv = {"check": ["scenario", "check", str(path)],
            "sweep": ["sweep", str(path), "--out", str(tmp_path / "out")],
            "dry-run": ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]}
    _check(argv[command], path, REAL_SWEEPS[case].replace("{data}", re.escape(str(shared_data))),
           tmp_path, capsys)


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


@pytest.mark.parametrize("case", sorted(CLI))
def test_bad_command_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Options refused at parse time (or before any work) with one line naming the option."""
    argv = (BAD / f"{case}.args").read_text(encoding="utf-8").split()
    argv = [a.replace("{bad}", str(BAD)).replace("{out}", str(tmp_path / "out")) for a in argv]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert _only_line(err) == "mpc-dc: error: " + CLI[case].replace("{bad}", str(BAD))
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_corrupt_run_directory_report(case: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``mpc-dc report`` on a damaged run or sweep directory: one line naming the file."""
    code = cli_main(["report", str(BAD / case)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert _only_line(err) == f"mpc-dc: error: {BAD / case}/{REPORTS[case]}"
    _assert_nothing_written(tmp_path)


def test_corpus_is_complete_and_large_enough() -> None:
    # The [faults] cases are checked beside the other [faults] tests.
    from tests.test_faults_scenario import BAD_FILES as FAULT_CASES

    entries = {p.name for p in BAD.iterdir()}
    covered = ({f"{c}.toml" for c in (*SCENARIOS, *REAL_SCENARIOS, *SWEEPS, *REAL_SWEEPS,
                                      *FAULT_CASES)}
               | {f"{c}.csv" for c in TRACES} | {f"{c}.csv" for c in READER_ONLY}
               | {f"{c}.args" for c in CLI} | set(REPORTS))
    assert entries == covered
    assert len(entries) >= 60


def test_unknown_key_messages_suggest_a_key() -> None:
    suggesting = [m for m in (*SCENARIOS.values(), *SWEEPS.values()) if "unknown key" in m]
    assert len(suggesting) >= 3
    for message in suggesting:
        assert re.search(r"did you mean '\w+'\?|valid keys: ", message), message


def test_compare_refuses_labels_and_run_dirs_before_reading_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`mpc_dc.runner.compare` checks every label and run directory before it
    reads the data (the CLI's labels are also checked when parsed)."""
    from mpc_dc import runner
    from mpc_dc.rundir import RunDirExistsError
    from mpc_dc.site.scenario import example_path, load_scenario
    from traces.errors import ConfigError

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data were read before the labels were checked")

    monkeypatch.setattr(runner, "prepare", no_data)
    rcdc = example_path("rcdc_default")
    scenario = load_scenario(rcdc)
    with pytest.raises(ConfigError) as info:
        runner.compare(scenario, ["persistence", "S3"], source=rcdc)
    assert str(info.value) == (f"{rcdc}: key 'fleet.flexibility': flexibility S3 needs a "
                               "[fleet] (inference pools); this scenario has none")
    with pytest.raises(ConfigError, match=r"^<scenario>: unknown label 'S9'; expected one of"):
        runner.compare(scenario, ["S9"])
    (tmp_path / "runs" / "persistence").mkdir(parents=True)
    with pytest.raises(RunDirExistsError, match="persistence: exists already"):
        runner.compare(scenario, ["persistence"], out_dir=tmp_path / "runs")
