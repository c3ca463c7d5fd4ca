"""Fleet sites say what they do (issue 13, items 14 and 15), on the one schema.

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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.sim.arrivals import SOURCE_TRACE, RequestArrays
from mpc_dc.sim.exogenous import SiteExogenous
from mpc_dc.site.config import Fleet
from mpc_dc.site.data import CARBON_SOURCES, SYNTHETIC_CARBON, build_site_exogenous
from mpc_dc.site.scenario import (
    Scenario,
    example_path,
    load_scenario,
    scenario_from_table,
    with_overrides,
)
from tests.tables import merged
from traces.burstgpt import read_burstgpt_requests
from traces.synthetic import load_figures

CAISO: dict[str, Any] = {
    "name": "small_caiso",
    "run": {"start": "2021-07-06T07:00:00Z", "days": 1, "history_days": 2, "seed": 4,
            "local_tz": "America/Los_Angeles"},
    "data": {"source": "real"},
    "site": {"campuses": [
        {"name": "NP15", "price_node": "NP15", "carbon_zone": "US-CAL-CISO", "gpus": 16},
        {"name": "SP15", "price_node": "SP15", "carbon_zone": "US-CAL-CISO", "gpus": 16},
        {"name": "ZP26", "price_node": "ZP26", "carbon_zone": "US-CAL-CISO", "gpus": 8}]},
    "fleet": {"models": ["qwen3-32b", "qwen3-235b-a22b"]},
    "workload": {"requests": {"rate_multiplier": 1.0}},
    "dr": {"days": ["2021-07-06"]},
    "controller": {"horizon_h": 2.0},
}


def _campus(i: int, **changes: Any) -> dict[str, Any]:
    campuses = copy.deepcopy(CAISO["site"]["campuses"])
    campuses[i].update(changes)
    return {"site": {"campuses": campuses}}


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
    "price_node_unknown": (_campus(2, price_node="X1"), "site.campuses[2].price_node",
                           "unknown price node 'X1' for data.source 'real'; expected a NYISO "
                           "zone (A..K, or its NYISO name such as CAPITL) or a CAISO hub "
                           "(NP15, SP15, ZP26)"),
    "carbon_zone_unknown": (_campus(1, carbon_zone="US-TEX-ERCO"),
                            "site.campuses[1].carbon_zone",
                            "unknown carbon zone 'US-TEX-ERCO' for data.source 'real'"),
    "synthetic_carbon_zone_unknown": (
        {"data": {"source": "synthetic"}, **_campus(0, carbon_zone="DE")},
        "site.campuses[0].carbon_zone", "unknown carbon zone 'DE' for data.source "
        "'synthetic'; expected one of US-CAL-CISO, US-NY-NYIS"),
    "dr_day_outside_run": ({"dr": {"days": ["2021-07-08"]}}, "dr.days",
                           "DR day 2021-07-08 (America/Los_Angeles, 2021-07-08 07:00 to "
                           "2021-07-09 07:00 UTC) is not a whole day of the run"),
    "dr_day_in_history": ({"dr": {"days": ["2021-07-05"]}}, "dr.days", "DR day 2021-07-05"),
    "dr_day_not_a_date": ({"dr": {"days": ["2021-07-32"]}}, "dr.days",
                          "expected a date YYYY-MM-DD, got '2021-07-32'"),
    "dr_end_before_start": ({"dr": {"start_hour": 21, "end_hour": 16}},
                            "dr.end_hour", "expected an hour after start_hour (21)"),
    "dr_start_hour_25": ({"dr": {"start_hour": 25}}, "dr.start_hour",
                         "expected an hour 0..23, got 25"),
    "model_map_unknown_trace_model": (
        {"workload": {"requests": {"model_map": {"GPT4": "qwen3-235b-a22b"}}}},
        "workload.requests.model_map",
        "'GPT4' is not a model name of the requests; expected one of ChatGPT, GPT-4"),
    "data_dir_missing": ({"data": {"dir": "/nonexistent/mpc-dc-data"}},
                         "data.dir", "data folder /nonexistent/mpc-dc-data not found"),
}
DATA: dict[str, tuple[dict[str, Any], str, str]] = {
    "carbon_zone_without_data_for_the_year": (
        _campus(2, carbon_zone="US-NY-NYIS"), "site.campuses[2].carbon_zone",
        "US-NY-NYIS carbon intensity"),
    "prices_before_2021": ({"run": {"start": "2020-07-06T07:00:00Z"}, "dr": {"days": []}},
                           "run.start", "CAISO RT prices at NP15"),
    "horizon_past_2021": ({"run": {"start": "2021-12-31T08:00:00Z"}, "dr": {"days": []}},
                          "run.start", "CAISO RT prices at NP15"),
    "run_past_burstgpt": ({"run": {"days": 61}, "dr": {"days": []}}, "run.days", "BurstGPT"),
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
    table = merged(merged(CAISO, {"data": {"dir": data_dir}}), patch)
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
    path = _write(merged(CAISO, {"data": {"dir": str(data)}}), tmp_path / "s.toml")
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
    for name in ("fleet_default", "dr_caiso", "nyiso_wind_fleet"):
        path = example_path(name)
        assert cli_main(["scenario", "check", str(path), "--data", str(shared_data)]) == 0
        assert "history + run + horizon, " in capsys.readouterr().out
    assert cli_main(["scenario", "check", str(example_path("dr_caiso")), "--data",
                     "/nonexistent/mpc-dc-data", "--no-data"]) == 0
    assert "data not read (--no-data)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- carbon


def _synthetic_two_zones() -> Scenario:
    table = merged(CAISO, {"data": {"source": "synthetic"}, "dr": {"days": []},
                          **_campus(1, carbon_zone="US-NY-NYIS")})
    return scenario_from_table(table, "<test>")


def _hour_means(series: pd.Series, tz: str) -> np.ndarray:
    local = pd.DatetimeIndex(series.index).tz_convert(tz)
    return series.groupby(local.hour).mean().to_numpy()


def test_synthetic_carbon_comes_from_each_campus_zone() -> None:
    """A New York campus gets New York's daily profile (flat, evening peak), a
    California one California's (solar dip at noon); they were both California's."""
    exo = build_site_exogenous(_synthetic_two_zones())
    for campus, zone in (("NP15", "US-CAL-CISO"), ("SP15", "US-NY-NYIS"),
                         ("ZP26", "US-CAL-CISO")):
        spec = SYNTHETIC_CARBON[zone]
        got = _hour_means(exo.frame[f"carbon_gco2_per_kwh[{campus}]"], spec.tz)
        # Hourly noise is within ±5 %: so is every hour's mean.
        np.testing.assert_allclose(got, spec.hour_profile_gco2_per_kwh, rtol=0.05)


def carbon_hour_profile(data_dir: Path, zone: str) -> tuple[float, ...]:
    """Mean carbon intensity of ``zone`` by local hour of the day over its file [gCO2/kWh].

    How :data:`mpc_dc.site.data.SYNTHETIC_CARBON` was made: the hourly values of the
    zone's Electricity Maps file (``CARBON_SOURCES``) averaged per hour 0..23 of the
    zone's clock, rounded to 1 gCO2/kWh.
    """
    frame, _ = CARBON_SOURCES[zone](data_dir)
    hourly = frame["carbon_gco2_per_kwh"].iloc[::4]  # HOLD: one value per hour
    local = pd.DatetimeIndex(hourly.index).tz_convert(SYNTHETIC_CARBON[zone].tz)
    means = hourly.groupby(local.hour).mean()
    return tuple(float(round(means[h])) for h in range(24))


def test_synthetic_carbon_profiles_are_the_zone_files(shared_data: Path) -> None:
    for zone, spec in SYNTHETIC_CARBON.items():
        assert carbon_hour_profile(shared_data, zone) == spec.hour_profile_gco2_per_kwh


# ----------------------------------------------------------------------------- BurstGPT


@pytest.fixture(scope="module")
def small_caiso(shared_data: Path) -> SiteExogenous:
    sc = scenario_from_table(merged(CAISO, {"data": {"dir": str(shared_data)}}), "<test>")
    return build_site_exogenous(sc)


def test_burstgpt_rows_land_at_the_hour_of_count_hour_zero(
        small_caiso: SiteExogenous, shared_data: Path) -> None:
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
    assert isinstance(req, RequestArrays)
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
def dr_caiso_demand(shared_data: Path) -> tuple[Scenario, SiteExogenous]:
    """dr_caiso as shipped but at ×50 (~1 M requests instead of ~10 M, to keep the test
    to seconds; the shape does not depend on the rate)."""
    sc = load_scenario(example_path("dr_caiso"))
    low = with_overrides(sc, {"workload.requests.rate_multiplier": 50.0,
                              "data.dir": str(shared_data)}, "<test>")
    return sc, build_site_exogenous(low)


def test_dr_caiso_demand_is_the_study_s_shape(
        dr_caiso_demand: tuple[Scenario, SiteExogenous], shared_data: Path) -> None:
    """Per hour, the scenario's output tokens are the study's demand × 50 / R (R the
    study's replication factor) within the noise of Poisson counts of random lengths;
    before the fix the run followed BurstGPT days 7-13, with API bursts of 10^5
    requests a day that the study's days 0-6 do not have."""
    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data

    _, exo = dr_caiso_demand
    study = load_dr_data(shared_data, DrStudyConfig())
    demand = exo.frame.filter(like="tokens_per_s[").sum(axis=1)
    scen = demand.reindex(study.index)
    assert not scen.isna().any()  # the run is the study window
    want = pd.Series(study.demand_tokens_per_s.sum(axis=0), index=study.index)
    tokens = (scen * 900.0).resample("h").sum()
    expect = (want * 900.0 * 50.0 / study.replication).resample("h").sum()
    assert tokens.sum() == pytest.approx(expect.sum(), rel=0.02)
    # Compound Poisson: var = (requests/h) × E[tokens²] of a request.
    req = exo.requests
    assert isinstance(req, RequestArrays)
    second_moment = float(np.mean(req.response_tokens.astype(float) ** 2))
    requests_h = expect / study.mean_response_tokens
    z = ((tokens - expect) / np.sqrt(requests_h * second_moment + 1e-9))[expect > 0]
    assert float(np.mean(z ** 2)) < 2.0 and float(np.max(np.abs(z))) < 5.0


def _bf16_gpus_needed(fleet: Any, peak_tokens_per_s: dict[str, float]) -> float:
    """GPUs at BF16 to serve ``peak_tokens_per_s`` per model at the utilisation cap, at
    the table's throughput (the study's sizing basis)."""
    total = 0.0
    for model, tokens in peak_tokens_per_s.items():
        row = fleet.table.get(model, "BF16")
        total += row.gpus_per_instance * tokens / (fleet.utilization_cap
                                                   * row.tokens_per_s_at_slo)
    return total


def test_dr_caiso_gpus_to_peak_ratio_is_the_study_s(
        dr_caiso_demand: tuple[Scenario, SiteExogenous]) -> None:
    """The file's claim: installed GPUs ≈ 1.8 × the BF16 GPUs the peak hour needs, as
    in the study (10,240 GPUs for 6e6 tokens/s split 50/30/20 over 8B/32B/235B)."""
    from mpc_dc.studies.dr import DrStudyConfig

    sc, exo = dr_caiso_demand
    study = DrStudyConfig()
    assert study.site.fleet is not None
    study_need = _bf16_gpus_needed(study.site.fleet, {
        m: s * study.peak_tokens_per_s for m, s in zip(study.site.models,
                                                       study.model_shares, strict=True)})
    study_ratio = sum(c.gpus for c in study.site.campuses) / study_need
    scale = sc.workload.requests.rate_multiplier / 50.0
    fleet = sc.fleet
    assert isinstance(fleet, Fleet)
    run = exo.frame.iloc[exo.history_steps: exo.history_steps + exo.n_steps]
    hourly = run.filter(like="tokens_per_s[").resample("h").mean() * scale
    peak = hourly.sum(axis=1).idxmax()
    need = _bf16_gpus_needed(fleet, {m: float(hourly.loc[peak, f"tokens_per_s[{m}]"])
                                     for m in fleet.models})
    ratio = sum(c.gpus for c in sc.site.campuses) / need
    assert study_ratio == pytest.approx(1.8, abs=0.05)
    assert ratio == pytest.approx(study_ratio, rel=0.1)
