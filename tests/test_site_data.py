"""The run's exogenous data of the one site model (issue 14): built per campus, checked once.

* equivalence: the frame built from each migrated example equals, column by column,
  what the old builders (``scenario.build_exogenous``, ``fleet_scenario.build_fleet_data``)
  produce for the old file — prices, carbon, capacity factor, workload, demand truth,
  requests and publication rules;
* ``check_data`` refuses, with one line naming the scenario key, every series that does
  not cover history + run + tail (table-driven, real data), a missing data folder, a gap
  in the run; the history may have gaps;
* with ``max_gap_steps`` (the DR lead-in's data) a run gap of at most that many
  intervals is interpolated, a longer one refused as without it;
* ``nyiso_wind_fleet`` builds on the real data with the coverage and scale its header
  states; the default builds without any data folder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.serving import workload_capacity
from mpc_dc.site.data import (
    SiteSources,
    build_site_exogenous,
    check_data,
    require_coverage,
    site_index,
)
from mpc_dc.site.scenario import (
    Scenario,
    default_scenario,
    example_path,
    load_scenario,
    scenario_from_table,
    with_overrides,
)
from tests.tables import merged
from traces.errors import ConfigError, TraceError
from traces.grid import STEPS_PER_DAY, Publication

#: A small real-data table: two NYISO campuses with GPUs, wind and other IT at one.
REAL: dict[str, Any] = {
    "name": "small",
    "run": {"start": "2022-04-04T04:00:00Z", "days": 1, "history_days": 1},
    "data": {"source": "real"},
    "site": {"campuses": [
        {"name": "north", "price_node": "D", "gpus": 8,
         "other_it": {"it_capacity_mw": 0.1}, "renewable": {"nameplate_mw": 0.1}},
        {"name": "nyc", "price_node": "N.Y.C.", "gpus": 8},
    ]},
    "fleet": {"models": ["qwen3-32b"]},
    "workload": {"requests": {"model_map": {"ChatGPT": "qwen3-32b"}}},
    "controller": {"horizon_h": 2.0},
}


def _campuses(*changes: dict[str, Any]) -> dict[str, Any]:
    campuses = copy.deepcopy(REAL["site"]["campuses"])
    for campus, change in zip(campuses, changes, strict=False):
        campus.update(change)
    return {"site": {"campuses": campuses}}


@pytest.fixture
def data_env(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real data through ``MPC_DC_DATA``."""
    monkeypatch.setenv("MPC_DC_DATA", str(shared_data))
    return shared_data


# ----------------------------------------------------------------------------- regression


FINGERPRINTS = Path(__file__).parent / "data" / "site_data_fingerprints.json"
"""Per example and column, ``[Σ v, Σ v·w, NaN count, length]`` (``w = k mod 97 + 1``) of
the series the builders of the schemas before the one schema made for the same runs
(``mpc_dc.scenario.build_exogenous``, ``mpc_dc.fleet_scenario.build_fleet_data``,
measured with them at commit 3994763, where this builder's frames equalled theirs
column by column), and the run's requests as ``[count, Σ arrival s, Σ prompt tokens,
Σ response tokens]``. RCDC columns over history + run, fleet columns over history +
run + tail. ``dr_caiso``'s ``tokens_per_s`` re-taken when its history's conversation
stream moved to the generator's calibration clock
(:func:`mpc_dc.site.data.calibration_clock`): its history changed, its run and tail were
checked equal to the old builder's, value by value."""


def fingerprint(values: Any) -> list[float]:
    v = np.asarray(values, dtype=float)
    w = (np.arange(v.size) % 97) + 1.0
    return [float(np.nansum(v)), float(np.nansum(v * w)), int(np.isnan(v).sum()), int(v.size)]


def _assert_fingerprints(name: str, exo: Any, span: int | None = None) -> None:
    want = json.loads(FINGERPRINTS.read_text(encoding="utf-8"))[name]
    for col, figures in want.items():
        if col == "requests":
            r = exo.requests
            got = [float(len(r)), float(r.arrival_s.sum()), float(r.request_tokens.sum()),
                   float(r.response_tokens.sum())]
        else:
            got = fingerprint(exo.frame[col].iloc[:span])
        np.testing.assert_allclose(got, figures, rtol=1e-12, err_msg=f"{name}: {col}")


@pytest.mark.parametrize("name", ["rcdc_default", "rcdc_nyiso_wholesale", "rcdc_nyiso_retail"])
def test_rcdc_frames_are_the_old_builders(name: str, request: pytest.FixtureRequest) -> None:
    if name != "rcdc_default":
        request.getfixturevalue("data_env")
    exo = build_site_exogenous(load_scenario(example_path(name)))
    frame = exo.frame
    hist = exo.history_steps
    assert len(frame) == hist + exo.n_steps + 96  # + the 24-h tail
    assert set(frame.columns) == {"price_usd_per_mwh[rcdc]", "carbon_gco2_per_kwh[rcdc]",
                                  "renewable_cf[rcdc]", "workload_wu[rcdc]"}
    assert exo.requests is None and not frame.iloc[hist:].isna().to_numpy().any()
    _assert_fingerprints(name, exo, hist + exo.n_steps)
    if name != "rcdc_default":
        # The history keeps the RT file's missing hour (2022-03-31 02:00 UTC) unobserved.
        gaps = frame["price_usd_per_mwh[rcdc]"].iloc[:hist].isna().sum()
        assert gaps == (4 if name.endswith("wholesale") else 0)


def test_fleet_synthetic_frame_is_the_old_builders() -> None:
    exo = build_site_exogenous(load_scenario(example_path("fleet_default")))
    _assert_fingerprints("fleet_default", exo)


def test_fleet_real_frame_is_the_old_builders(data_env: Path) -> None:
    """dr_caiso at × 20 (not × 540: seconds, not minutes)."""
    sc = with_overrides(load_scenario(example_path("dr_caiso")),
                        {"workload.requests.rate_multiplier": 20.0}, "test")
    exo = build_site_exogenous(sc)
    assert exo.local_tz == "America/Los_Angeles"
    _assert_fingerprints("dr_caiso", exo)
    # The per-hour request counts are the requests' own.
    counts = exo.requests.per_interval(exo.n_steps)["requests"] if exo.requests else None
    run = exo.frame.iloc[exo.history_steps: exo.history_steps + exo.n_steps]
    for m, model in enumerate(sc.site.models):
        assert counts is not None
        np.testing.assert_array_equal(run[f"requests_per_h[{model}]"].to_numpy(),
                                      4.0 * counts[:, m])


# ----------------------------------------------------------------------------- check_data


#: (patch of REAL, key named, start of the message after the key).
DATA_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "nyiso_prices_before_2021": ({"run": {"start": "2020-07-06T04:00:00Z"}}, "run.start",
                                 "NYISO RT prices at zone D"),
    "nyiso_gap_in_the_run": ({"run": {"start": "2022-07-08T04:00:00Z", "days": 2}},
                             "run.start", "NYISO RT prices at zone D"),
    "caiso_horizon_past_2021": (
        _campuses({}, {"price_node": "SP15", "carbon_zone": "US-CAL-CISO"})
        | {"run": {"start": "2021-12-31T08:00:00Z"}}, "run.start", "CAISO RT prices at SP15"),
    "carbon_zone_without_the_year": (
        _campuses({"renewable": None, "price_node": "NP15"},
                  {"price_node": "SP15", "carbon_zone": "US-CAL-CISO"})
        | {"run": {"start": "2021-07-06T07:00:00Z"}}, "site.campuses[0].carbon_zone",
        "US-NY-NYIS carbon intensity"),
    "ny_wind_outside_2022": (
        _campuses({"carbon_zone": "US-CAL-CISO"}, {"carbon_zone": "US-CAL-CISO"})
        | {"run": {"start": "2021-04-05T04:00:00Z"}}, "run.start", "NY wind capacity factor"),
    "day_ahead_outside_2022": (
        _campuses({"renewable": None, "price_node": "F", "grid": {"tariff": {"kind": "retail"}}})
        | {"run": {"start": "2021-12-31T05:00:00Z"}}, "run.start",
        "NYISO day-ahead prices at zone F"),
    "run_past_burstgpt": ({"run": {"days": 61}}, "run.days", "BurstGPT"),
    "unknown_turbine": (_campuses({"renewable": {"source": "windpowerlib",
                                                 "turbine_type": "X-1"}}),
                        "site.campuses[0].renewable.turbine_type",
                        "unknown turbine type 'X-1'"),
    "windpowerlib_leap_day": (
        {"data": {"source": "synthetic"}, "run": {"start": "2024-02-28T05:00:00Z"}}
        | _campuses({"renewable": {"source": "windpowerlib"}}), "run.start",
        "windpowerlib E-101/3050 capacity factor"),
}


def _refused(table: dict[str, Any], what: type[Exception] = ConfigError) -> Exception:
    scenario = scenario_from_table(table, "s.toml")  # the file itself is valid
    with pytest.raises(what) as info:
        check_data(scenario, source="s.toml")
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_series_beyond_the_data_refused_naming_the_key(case: str, data_env: Path) -> None:
    patch, key, message = DATA_CASES[case]
    err = _refused(merged(REAL, patch))
    assert isinstance(err, ConfigError)
    assert str(err).startswith(f"s.toml: key '{key}': {message}"), str(err)


def test_gap_in_the_run_names_where_it_is(data_env: Path) -> None:
    err = _refused(merged(REAL, DATA_CASES["nyiso_gap_in_the_run"][0]))
    assert "misses 100 intervals of the run + horizon (first at 2022-07-08 23:00 UTC)" \
        in str(err)


def test_span_error_says_what_the_source_covers(data_env: Path) -> None:
    err = _refused(merged(REAL, DATA_CASES["caiso_horizon_past_2021"][0]))
    assert "covers 2021-01-01 08:00 to 2022-01-01 08:00 UTC; history + run + horizon need " \
        "2021-12-30 08:00 to 2022-01-01 10:00 UTC (8 intervals missing)" in str(err)


@pytest.mark.parametrize(("patch", "reason"), [
    ({}, 'data.source "real" reads it'),
    ({"data": {"source": "synthetic"}, "workload": {"requests": {"source": "burstgpt"}}},
     "workload.requests source 'burstgpt' reads it"),
    ({"data": {"source": "synthetic"}} | _campuses({"renewable": {"source": "real"}}),
     "renewable source 'real' reads it"),
    ({"data": {"source": "synthetic"}} | _campuses({"other_it": {"source": "real"}}),
     "other_it source 'real' reads it"),
])
def test_missing_data_folder_refused(patch: dict[str, Any], reason: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    table = merged(merged(REAL, {"data": {"dir": "/nonexistent/mpc-dc-data"}}), patch)
    err = _refused(table)
    assert str(err) == (f"s.toml: key 'data.dir': data folder /nonexistent/mpc-dc-data not "
                        f"found; {reason} (or set MPC_DC_DATA)")


def test_missing_request_rows_refused(shared_data: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads every file the run reads, BurstGPT's rows too."""
    data = tmp_path / "data"
    data.mkdir()
    for folder in ("nyiso_lbmp", "carbon", "wind", "google_power"):
        (data / folder).symlink_to(shared_data / folder)
    (data / "burstgpt").mkdir()
    (data / "burstgpt" / "burstgpt_hourly.csv").symlink_to(
        shared_data / "burstgpt" / "burstgpt_hourly.csv")
    monkeypatch.setenv("MPC_DC_DATA", str(data))
    err = _refused(REAL, TraceError)
    assert str(err) == f"{data / 'burstgpt' / 'burstgpt_v1_first400.csv'}: file not found"


# ----------------------------------------------------------------------------- the frame


def test_columns_are_those_that_apply(data_env: Path) -> None:
    sc = scenario_from_table(merged(REAL, {"dr": {"days": ["2022-04-04"], "campuses": ["nyc"],
                                                 "start_hour": 17, "end_hour": 20}}), "t")
    exo = build_site_exogenous(sc)
    assert list(exo.frame.columns) == [
        "price_usd_per_mwh[north]", "price_usd_per_mwh[nyc]", "carbon_gco2_per_kwh[north]",
        "carbon_gco2_per_kwh[nyc]", "renewable_cf[north]", "workload_wu[north]",
        "dr_event[north]", "dr_event[nyc]", "tokens_per_s[qwen3-32b]",
        "requests_per_h[qwen3-32b]"]
    assert exo.frame.index.equals(site_index(sc)) and exo.frame.index.name == \
        "interval_start_utc"
    assert len(exo.frame) == (1 + 1) * STEPS_PER_DAY + 8  # history + run + 2-h tail
    # DR: 17-20 h New York time on 4 April (EDT, UTC-4), the enrolled campus only.
    on = exo.frame.index[exo.frame["dr_event[nyc]"] > 0]
    assert on[0] == pd.Timestamp("2022-04-04T21:00Z") and len(on) == 12
    assert exo.frame["dr_event[north]"].sum() == 0
    # Hourly sources are published at the end of their hour.
    assert exo.publication["price_usd_per_mwh[nyc]"] == Publication(pd.Timedelta(hours=1))
    assert "tokens_per_s[qwen3-32b]" not in exo.publication
    assert "dr_event[nyc]" not in exo.publication
    assert isinstance(exo.requests, RequestArrays) and (
        exo.requests.arrival_s.max() < exo.n_steps * 900.0)


def test_same_node_same_price_other_node_other_seed() -> None:
    table = {"site": {"campuses": [{"name": "a", "price_node": "D", "renewable": {}},
                                   {"name": "b", "price_node": "D", "renewable": {}},
                                   {"name": "c", "price_node": "J"}]},
             "run": {"days": 1, "history_days": 0}}
    sources = check_data(scenario_from_table(table, "t"))
    cols = sources.columns
    np.testing.assert_array_equal(cols["price_usd_per_mwh[a]"], cols["price_usd_per_mwh[b]"])
    assert not np.array_equal(cols["price_usd_per_mwh[a]"], cols["price_usd_per_mwh[c]"])
    assert not np.array_equal(cols["renewable_cf[a]"], cols["renewable_cf[b]"])
    assert "seed 2)" in sources.origin["renewable_cf[a]"]
    assert "seed 19)" in sources.origin["renewable_cf[b]"]


def test_windpowerlib_cf_is_the_weather_on_the_run_calendar(data_env: Path) -> None:
    from traces.windpowerlib import capacity_factor, read_power_curves, read_weather

    table = merged(REAL, _campuses({"renewable": {"source": "windpowerlib",
                                                 "turbine_type": "E-101/3050"}}))
    sources: SiteSources = check_data(scenario_from_table(table, "t"))
    cf = pd.Series(sources.columns["renewable_cf[north]"], index=sources.index)
    weather, _ = read_weather(data_env / "wind/windpowerlib/weather.csv")
    curves = read_power_curves(data_env / "wind/windpowerlib/power_curves.csv")
    want = capacity_factor(weather["wind_speed_m_per_s[80m]"], "E-101/3050", curves)
    hourly = pd.Series(want, index=weather.index)
    for t in ("2022-04-04T05:00Z", "2022-04-04T18:00Z", "2022-04-05T03:00Z"):
        same = pd.Timestamp(t) - pd.DateOffset(years=12)
        quarters = cf[pd.Timestamp(t): pd.Timestamp(t) + pd.Timedelta(minutes=45)]
        assert len(quarters) == 4 and (quarters == hourly[same]).all(), t
    assert sources.publication["renewable_cf[north]"] == Publication(pd.Timedelta(hours=1))


def test_default_builds_without_any_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPC_DC_DATA", "/nonexistent/mpc-dc-data")
    sc = default_scenario()
    exo = build_site_exogenous(sc)
    assert not exo.frame.isna().to_numpy().any()
    assert exo.requests is not None and len(exo.requests) > 0
    assert exo.frame.columns.str.startswith("renewable_cf[").sum() == 2


@pytest.mark.slow
def test_nyiso_wind_fleet_builds_on_the_real_data(data_env: Path) -> None:
    """The product scenario as shipped (× 10, 7.1 M requests: ~17 s): every series covers
    history + run + tail, gaps only where its header says, and the scale it states
    (re-measured after issue 15's burst model changed the request stream)."""
    sc: Scenario = load_scenario(example_path("nyiso_wind_fleet"))
    exo = build_site_exogenous(sc)
    frame = exo.frame
    hist = sc.run.history_days * STEPS_PER_DAY
    assert frame.index[0] == pd.Timestamp("2022-03-18T04:00Z")
    assert frame.index[-1] == pd.Timestamp("2022-05-02T03:45Z")
    assert exo.run_start == pd.Timestamp("2022-04-01T04:00Z") and exo.n_steps == 30 * 96
    assert not frame.iloc[hist:].isna().to_numpy().any()
    missing = frame.iloc[:hist].isna()
    assert set(missing.columns[missing.any()]) == {f"price_usd_per_mwh[{c}]" for c in
                                                   ("north", "west", "nyc")}
    assert missing.index[missing.any(axis=1)].tolist() == list(
        pd.date_range("2022-03-31T02:00Z", periods=4, freq="15min"))
    np.testing.assert_array_equal(frame["renewable_cf[north]"], frame["renewable_cf[west]"])
    assert exo.requests is not None
    assert round(len(exo.requests) / 1e5) == 71  # "7.1 M run requests"
    fleet = sc.site.fleet
    assert fleet is not None
    # The header's sizing: peak hourly demand over the capacity the optimizer plans with
    # on this workload (the history's token mix), at the 0.85 cap.
    capacity = workload_capacity(sc.site, exo.request_mix, sc.serving.tpot_slo_s)
    run = frame.iloc[hist: hist + exo.n_steps]
    gpus = 0
    for model, want_peak, want_cap, want_n in (("qwen3-32b", 21_344, 2_676, 10),
                                               ("qwen3-235b-a22b", 4_242, 1_250, 4)):
        peak = run[f"tokens_per_s[{model}]"].resample("h").mean().max()
        assert round(peak) == want_peak
        mu = capacity[f"{model}/BF16"]
        assert round(mu) == want_cap
        assert mu < 0.6 * fleet.table.get(model, "BF16").tokens_per_s_at_slo  # prompt-heavy
        n = int(np.ceil(peak / (fleet.utilization_cap * mu)))
        assert n == want_n
        gpus += fleet.table.get(model, "BF16").gpus_per_instance * n
    assert gpus == 52
    assert sum(c.gpus for c in sc.site.campuses) / gpus == pytest.approx(1.8, abs=0.05)


def test_run_data_do_not_depend_on_the_horizon() -> None:
    """A horizon sweep compares controllers on one request stream: history and run
    (requests, series) are the same for an 8-h and a 48-h horizon; only the tail after
    the run grows."""
    base = with_overrides(load_scenario(example_path("fleet_default")), {
        "run.days": 1.0, "run.history_days": 2, "workload.requests.rate_multiplier": 2.0},
        "test")
    longer = with_overrides(base, {"controller.horizon_h": 48.0}, "test")
    a, b = build_site_exogenous(base), build_site_exogenous(longer)
    end = a.history_steps + a.n_steps
    assert len(b.frame) == end + longer.controller.horizon_steps
    assert isinstance(a.requests, RequestArrays) and isinstance(b.requests, RequestArrays)
    np.testing.assert_array_equal(a.requests.arrival_s, b.requests.arrival_s)
    np.testing.assert_array_equal(a.requests.response_tokens, b.requests.response_tokens)
    pd.testing.assert_frame_equal(a.frame.iloc[:end], b.frame.iloc[:end])


def test_run_requests_do_not_keep_history_and_tail_alive() -> None:
    """The run's requests hold only their own rows: the history's and the tail's
    requests, generated to aggregate the frame's demand truth, are freed once the
    frame is built (a view into the whole stream kept them through the simulation;
    the DR lead-in's tail alone can be a BurstGPT burst day of 40 M requests)."""
    sc = with_overrides(load_scenario(example_path("fleet_default")), {
        "run.days": 1.0, "run.history_days": 2, "controller.horizon_h": 24.0}, "test")
    exo = build_site_exogenous(sc)
    req = exo.requests
    assert req is not None
    for name in ("arrival_s", "model", "request_tokens", "response_tokens", "source"):
        values = getattr(req, name)
        kept = values if values.base is None else values.base
        assert kept.nbytes == values.nbytes, name


def test_max_gap_steps_interpolate_only_short_run_gaps() -> None:
    """A 4-interval gap after the history: refused plainly, interpolated linearly with
    ``max_gap_steps=4`` (the history's own gap stays NaN); 5 intervals: refused even
    there."""
    index = pd.date_range("2022-03-30T00:00Z", periods=40, freq="15min")
    values = pd.Series(np.arange(40, dtype=float), index=index)
    gap = values.drop(index[list(range(2, 4)) + list(range(20, 24))])
    with pytest.raises(ConfigError, match="misses 4 intervals of the run"):
        require_coverage(gap, index, "prices", "k", history_steps=8)
    got = require_coverage(gap, index, "prices", "k", history_steps=8, max_gap_steps=4)
    assert np.isnan(got[2:4]).all()
    assert got[8:] == pytest.approx(np.arange(8, 40, dtype=float))
    with pytest.raises(ConfigError, match="misses 5 intervals"):
        require_coverage(values.drop(index[20:25]), index, "prices", "k", history_steps=8,
                         max_gap_steps=4)
