"""Fleet scenarios say what they do (issue 13, items 14 and 15).

* every campus's carbon intensity comes from its own ``carbon_zone``, and a node or
  zone the source does not have, a series that does not cover history + run + horizon,
  or a DR day outside the run is refused by ``mpc-dc scenario check`` exactly as by
  ``mpc-dc run`` (one stderr line naming the file and the key, exit code 2, nothing
  written);
* BurstGPT is placed on one calendar: the real request rows at trace second ``s`` land
  at run second ``s``, where the hourly counts put their hour 0 (they sat a history
  length later), and ``dr_caiso.toml`` has the DR study's demand shape.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.fleet_scenario import (
    SYNTHETIC_CARBON,
    FleetData,
    FleetScenario,
    build_fleet_data,
    carbon_hour_profile,
    fleet_example_path,
    fleet_scenario_from_table,
    load_fleet_scenario,
)
from mpc_dc.params.fleet import FleetConfig
from mpc_dc.sim.arrivals import SOURCE_TRACE
from mpc_dc.site.config import Fleet
from tests.tables import merged
from traces.burstgpt import read_burstgpt_requests
from traces.synthetic import load_figures

CAISO: dict[str, Any] = {
    "kind": "fleet",
    "name": "small_caiso",
    "run": {"start": "2021-07-06T07:00:00Z", "days": 1, "history_days": 2, "seed": 4},
    "data": {"source": "caiso", "rate_multiplier": 1.0},
    "fleet": {"models": ["qwen3-32b", "qwen3-235b-a22b"],
              "campuses": [{"name": "NP15", "price_node": "NP15", "gpus": 16},
                           {"name": "SP15", "price_node": "SP15", "gpus": 16},
                           {"name": "ZP26", "price_node": "ZP26", "gpus": 8}]},
    "dr_events": {"days": ["2021-07-06"]},
    "controller": {"horizon_h": 2.0},
}


def _campus(i: int, **changes: Any) -> dict[str, Any]:
    campuses = copy.deepcopy(CAISO["fleet"]["campuses"])
    campuses[i].update(changes)
    return {"fleet": {"campuses": campuses}}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return repr(value)


def _write(table: dict[str, Any], path: Path) -> Path:
    """``table`` as a TOML file (top-level keys, then one [table] per section)."""
    lines = [f"{k} = {_toml(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for section, body in table.items():
        if isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f'"{k}" = {_toml(v)}' for k, v in body.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: (case, patch of CAISO, key named, start of the message after the key). Static cases
#: need no data folder; DATA cases read ../shared/data as a run would.
STATIC: dict[str, tuple[dict[str, Any], str, str]] = {
    "price_node_unknown": (_campus(2, price_node="F"), "fleet.campuses[2].price_node",
                           "unknown price node 'F' for data.source 'caiso'; expected one of "
                           "NP15, SP15, ZP26"),
    "carbon_zone_unknown": (_campus(1, carbon_zone="US-TEX-ERCO"),
                            "fleet.campuses[1].carbon_zone",
                            "unknown carbon zone 'US-TEX-ERCO' for data.source 'caiso'"),
    "synthetic_carbon_zone_unknown": (
        {"data": {"source": "synthetic"}, **_campus(0, carbon_zone="DE")},
        "fleet.campuses[0].carbon_zone", "unknown carbon zone 'DE' for data.source "
        "'synthetic'; expected one of US-CAL-CISO, US-NY-NYIS"),
    "dr_day_outside_run": ({"dr_events": {"days": ["2021-07-08"]}}, "dr_events.days",
                           "DR day 2021-07-08 (Pacific, 2021-07-08 07:00 to 2021-07-09 07:00 "
                           "UTC) is not a whole day of the run"),
    "dr_day_in_history": ({"dr_events": {"days": ["2021-07-05"]}}, "dr_events.days",
                          "DR day 2021-07-05"),
    "dr_day_not_a_date": ({"dr_events": {"days": ["2021-07-32"]}}, "dr_events.days",
                          "expected a date YYYY-MM-DD, got '2021-07-32'"),
    "dr_end_before_start": ({"dr_events": {"start_hour": 21, "end_hour": 16}},
                            "dr_events.end_hour", "expected an hour after start_hour (21)"),
    "dr_start_hour_25": ({"dr_events": {"start_hour": 25}}, "dr_events.start_hour",
                         "expected an hour 0..23, got 25"),
    "model_map_unknown_trace_model": (
        {"data": {"model_map": {"GPT4": "qwen3-235b-a22b"}}}, "data.model_map",
        "'GPT4' is not a model name of the requests; expected one of ChatGPT, GPT-4"),
    "data_dir_missing": ({"data": {"data_dir": "/nonexistent/mpc-dc-data"}},
                         "data.data_dir", "data folder /nonexistent/mpc-dc-data not found"),
}
DATA: dict[str, tuple[dict[str, Any], str, str]] = {
    "carbon_zone_without_data_for_the_year": (
        _campus(2, carbon_zone="US-NY-NYIS"), "fleet.campuses[2].carbon_zone",
        "US-NY-NYIS carbon intensity"),
    "prices_before_2021": ({"run": {"start": "2020-07-06T07:00:00Z"},
                            "dr_events": {"days": []}}, "run.start",
                           "CAISO RT prices at NP15"),
    "horizon_past_2021": ({"run": {"start": "2021-12-31T08:00:00Z"},
                           "dr_events": {"days": []}}, "run.start", "CAISO RT prices at NP15"),
    "run_past_burstgpt": ({"run": {"days": 61}}, "run.days",
                          "BurstGPT"),
}


def _expect_refused(argv: list[str], path: Path, key: str, message: str, out: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(argv)
    lines = capsys.readouterr().err.strip("\n").split("\n")
    assert code == 2 and len(lines) == 1, lines
    prefix = f"mpc-dc: error: {path}: key '{key}': "
    assert lines[0].startswith(prefix + message), lines[0]
    assert not out.exists() and not list(out.parent.glob("*.tmp-*"))


def _refused_by_check_and_run(case: tuple[dict[str, Any], str, str], data_dir: str,
                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patch, key, message = case
    table = merged(merged(CAISO, {"data": {"data_dir": data_dir}}), patch)
    path = _write(table, tmp_path / "bad.toml")
    out = tmp_path / "out"
    _expect_refused(["scenario", "check", str(path)], path, key, message, out, capsys)
    _expect_refused(["run", str(path), "--out", str(out)], path, key, message, out, capsys)


@pytest.mark.parametrize("case", sorted(STATIC))
def test_bad_fleet_scenario_refused_by_check_and_run(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    _refused_by_check_and_run(STATIC[case], "/nonexistent/mpc-dc-data", tmp_path, capsys)


@pytest.mark.parametrize("case", sorted(DATA))
def test_fleet_scenario_beyond_its_data_refused_by_check_and_run(
        case: str, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    _refused_by_check_and_run(DATA[case], str(shared_data), tmp_path, capsys)


def test_missing_request_rows_refused_by_check_and_run(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads every file the run reads, the BurstGPT rows too."""
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    data = tmp_path / "data"
    for folder in ("caiso_lmp", "carbon"):
        (data / folder).parent.mkdir(parents=True, exist_ok=True)
        (data / folder).symlink_to(shared_data / folder)
    (data / "burstgpt").mkdir()
    (data / "burstgpt" / "burstgpt_hourly.csv").symlink_to(
        shared_data / "burstgpt" / "burstgpt_hourly.csv")
    path = _write(merged(CAISO, {"data": {"data_dir": str(data)}}), tmp_path / "s.toml")
    missing = data / "burstgpt" / "burstgpt_v1_first400.csv"
    for argv in (["scenario", "check", str(path)],
                 ["run", str(path), "--out", str(tmp_path / "out")]):
        assert cli_main(argv) == 2
        lines = capsys.readouterr().err.strip("\n").split("\n")
        assert lines == [f"mpc-dc: error: {missing}: file not found"]
    assert not (tmp_path / "out").exists()


def test_check_passes_the_examples_and_reads_the_data(
        shared_data: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    for name in ("fleet_default", "dr_caiso"):
        path = fleet_example_path(name)
        assert cli_main(["scenario", "check", str(path), "--data", str(shared_data)]) == 0
        assert "history + run + horizon, " in capsys.readouterr().out
    assert cli_main(["scenario", "check", str(fleet_example_path("dr_caiso")), "--data",
                     "/nonexistent/mpc-dc-data", "--no-data"]) == 0
    assert "data not read (--no-data)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- carbon


def _synthetic_two_zones() -> FleetScenario:
    table = merged(CAISO, {"data": {"source": "synthetic"}, "dr_events": {"days": []},
                          **_campus(1, carbon_zone="US-NY-NYIS")})
    return fleet_scenario_from_table(table, "<test>")


def _hour_means(series: pd.Series, tz: str) -> np.ndarray:
    local = pd.DatetimeIndex(series.index).tz_convert(tz)
    return series.groupby(local.hour).mean().to_numpy()


def test_synthetic_carbon_comes_from_each_campus_zone() -> None:
    """A New York campus gets New York's daily profile (flat, evening peak), a
    California one California's (solar dip at noon); they were both California's."""
    sc = _synthetic_two_zones()
    data = build_fleet_data(sc)
    truth = data.truth
    for campus, zone in (("NP15", "US-CAL-CISO"), ("SP15", "US-NY-NYIS"),
                         ("ZP26", "US-CAL-CISO")):
        spec = SYNTHETIC_CARBON[zone]
        got = _hour_means(truth[f"carbon_gco2_per_kwh[{campus}]"], spec.tz)
        # Hourly noise is within ±5 %: so is every hour's mean.
        np.testing.assert_allclose(got, spec.hour_profile_gco2_per_kwh, rtol=0.05)
        exo = data.exo.frame[f"carbon_gco2_per_kwh[{zone}]"]
        np.testing.assert_array_equal(exo.to_numpy(),
                                      truth[f"carbon_gco2_per_kwh[{campus}]"].reindex(
                                          exo.index).to_numpy())


def test_synthetic_carbon_profiles_are_the_zone_files(shared_data: Path) -> None:
    for zone, spec in SYNTHETIC_CARBON.items():
        assert carbon_hour_profile(shared_data, zone) == spec.hour_profile_gco2_per_kwh


# ----------------------------------------------------------------------------- BurstGPT


@pytest.fixture(scope="module")
def small_caiso(shared_data: Path) -> FleetData:
    sc = fleet_scenario_from_table(merged(CAISO, {"data": {"data_dir": str(shared_data)}}),
                                   "<test>")
    return build_fleet_data(sc)


def test_burstgpt_rows_land_at_the_hour_of_count_hour_zero(
        small_caiso: FleetData, shared_data: Path) -> None:
    """Trace second s at run second s, and the run's first day follows BurstGPT's day 0
    of the hourly counts: hours 0-9 are the real rows (the counts of hours 0-9 are
    those rows), hours 11-23 the generator on day 0's counts. Before the fix the rows
    sat at the run start but the counts had their day 0 at the history start, two
    days earlier, so hours 11-23 followed day 2."""
    rows, _ = read_burstgpt_requests(shared_data / "burstgpt" / "burstgpt_v1_first400.csv")
    hourly = pd.read_csv(shared_data / "burstgpt" / "burstgpt_hourly.csv")
    day0 = hourly.loc[hourly["day"] == 0, "all"].to_numpy()
    row_hours = np.bincount((rows["arrival_s"] // 3600).astype(int), minlength=24)
    np.testing.assert_array_equal(row_hours[:10], day0[:10])

    req = small_caiso.requests
    kept = rows.loc[rows["request_tokens"] > 0, "arrival_s"].to_numpy()
    trace = req.arrival_s[req.source == SOURCE_TRACE]
    np.testing.assert_array_equal(np.sort(trace), kept[kept < trace.max() + 1])

    got = np.bincount((req.arrival_s // 3600).astype(int), minlength=24)[:24]
    expect = day0 * (1.0 - load_figures().tokens.zero_share)  # zero-token rows dropped
    gen = slice(11, 24)
    chi2 = float(np.sum((got[gen] - expect[gen]) ** 2 / expect[gen]))
    assert chi2 < 13 + 5 * np.sqrt(2 * 13), (got[gen], expect[gen])


# ----------------------------------------------------------------------------- dr_caiso


@pytest.fixture(scope="module")
def dr_caiso_demand(shared_data: Path) -> tuple[FleetScenario, FleetData]:
    """dr_caiso as shipped but at ×50 (~1 M requests instead of ~10 M, to keep the test
    to seconds; the shape does not depend on the rate)."""
    sc = load_fleet_scenario(fleet_example_path("dr_caiso"))
    low = replace(sc, data=replace(sc.data, rate_multiplier=50.0, data_dir=str(shared_data)))
    return sc, build_fleet_data(low)


def test_dr_caiso_demand_is_the_study_s_shape(
        dr_caiso_demand: tuple[FleetScenario, FleetData], shared_data: Path) -> None:
    """Per hour, the scenario's output tokens are the study's demand × 50 / R (R the
    study's replication factor) within the noise of Poisson counts of random lengths;
    before the fix the run followed BurstGPT days 7-13, with API bursts of 10^5
    requests a day that the study's days 0-6 do not have."""
    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data

    _, data = dr_caiso_demand
    study = load_dr_data(shared_data, DrStudyConfig())
    demand = data.truth.filter(like="demand_tokens_per_s").sum(axis=1)
    scen = demand.reindex(study.index)
    assert not scen.isna().any()  # the run is the study window
    want = pd.Series(study.demand_tokens_per_s.sum(axis=0), index=study.index)
    tokens = (scen * 900.0).resample("h").sum()
    expect = (want * 900.0 * 50.0 / study.replication).resample("h").sum()
    assert tokens.sum() == pytest.approx(expect.sum(), rel=0.02)
    # Compound Poisson: var = (requests/h) × E[tokens²] of a request.
    req = data.requests
    second_moment = float(np.mean(req.response_tokens.astype(float) ** 2))
    requests_h = expect / study.mean_response_tokens
    z = ((tokens - expect) / np.sqrt(requests_h * second_moment + 1e-9))[expect > 0]
    assert float(np.mean(z ** 2)) < 2.0 and float(np.max(np.abs(z))) < 5.0


def _bf16_gpus_needed(config: FleetConfig | Fleet, peak_tokens_per_s: dict[str, float]
                      ) -> float:
    """GPUs at BF16 to serve ``peak_tokens_per_s`` per model at the utilisation cap."""
    total = 0.0
    for model, tokens in peak_tokens_per_s.items():
        row = config.table.get(model, "BF16")
        total += row.gpus_per_instance * tokens / (config.utilization_cap
                                                   * row.tokens_per_s_at_slo)
    return total


def test_dr_caiso_gpus_to_peak_ratio_is_the_study_s(
        dr_caiso_demand: tuple[FleetScenario, FleetData]) -> None:
    """The file's claim: installed GPUs ≈ 1.8 × the BF16 GPUs the peak hour needs, as
    in the study (10,240 GPUs for 6e6 tokens/s split 50/30/20 over 8B/32B/235B)."""
    from mpc_dc.studies.dr import DrStudyConfig

    sc, data = dr_caiso_demand
    study = DrStudyConfig()
    assert study.site.fleet is not None
    study_need = _bf16_gpus_needed(study.site.fleet, {
        m: s * study.peak_tokens_per_s for m, s in zip(study.site.models,
                                                       study.model_shares, strict=True)})
    study_ratio = sum(c.gpus for c in study.site.campuses) / study_need
    scale = sc.data.rate_multiplier / 50.0
    cfg = sc.config
    hist = sc.run.history_days * 96
    run = data.truth.iloc[hist: hist + sc.run.n_steps].filter(like="demand_tokens_per_s")
    hourly = run.resample("h").mean() * scale
    peak = hourly.sum(axis=1).idxmax()
    need = _bf16_gpus_needed(cfg, {m: float(hourly.loc[peak, f"demand_tokens_per_s[{m}]"])
                                   for m in cfg.models})
    ratio = sum(c.gpus for c in cfg.campuses) / need
    assert study_ratio == pytest.approx(1.8, abs=0.05)
    assert ratio == pytest.approx(study_ratio, rel=0.1)

