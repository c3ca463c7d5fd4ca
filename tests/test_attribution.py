"""Regret attribution by forecast channel (``mpc-dc compare --attribute``) and the
per-channel forecaster keys it rests on.

The attributed scenario is the RCDC site (one campus: other IT with deadlines inside
the run, wind, a battery, export) with a carbon price, six hours of synthetic data, a
4-h horizon: four channel groups (price, renewable, other load, carbon), ten runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.attribution import FILES, INTERACTION, TOTAL, attribute, groups, plan_runs
from mpc_dc.cli import main as cli_main
from mpc_dc.control.forecasting import (
    ChannelForecasts,
    ForecastErrors,
    channels,
    choices,
    group,
    make_forecasters,
)
from mpc_dc.report import build_report
from mpc_dc.runner import build_policy, prepare, run_scenario
from mpc_dc.site.scenario import (
    CHANNEL_GROUPS,
    load_scenario,
    with_overrides,
)
from tests.loop_cases import combined
from traces.errors import ConfigError

SCENARIO = """
name = "attribution-test"
[run]
start = "2022-04-04T04:00:00Z"
days = 0.25
history_days = 2
seed = 3
[data]
source = "synthetic"
[site]
carbon_price_usd_per_t = 60.0
[[site.campuses]]
name = "rcdc"
price_node = "F"
[site.campuses.other_it]
it_capacity_mw = 100.0
deferrable_share = 0.4
window_h = 6
[site.campuses.renewable]
nameplate_mw = 150.0
[site.campuses.battery]
energy_mwh = 100.0
power_mw = 50.0
initial_energy_mwh = 50.0
[site.campuses.grid]
import_limit_mw = 200.0
export_limit_mw = 200.0
[controller]
forecaster = "noisy_oracle"
error_level = 1.0
bias = 0.3
autocorrelation = 0.9
horizon_h = 4.0
fine_horizon_h = 4.0
"""
"""Every channel forecast by a noisy Oracle large enough to move the plan."""

PRICE = "price_usd_per_mwh[rcdc]"


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("attribution") / "scenario.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def attributed(scenario_file: Path) -> Path:
    """The attribution folder written by the command line."""
    out = scenario_file.parent / "out"
    assert cli_main(["compare", str(scenario_file), "--attribute", "--out", str(out)]) == 0
    return out


def _terms(table: pd.DataFrame) -> pd.Series:
    return table.set_index("term")["regret_usd"].astype(float)


def test_parts_and_interaction_add_up_to_the_regret_of_the_two_runs(
        scenario_file: Path, attributed: Path) -> None:
    table = pd.read_csv(attributed / "attribution.csv")
    terms = _terms(table)
    parts = terms.drop([INTERACTION, TOTAL])
    assert abs(math.fsum(parts) + terms[INTERACTION] - terms[TOTAL]) <= 1e-6
    # The total is the regret of the forecast-driven MPC against the perfect-forecast MPC,
    # each run here on its own, outside the attribution's plan.
    scenario = load_scenario(scenario_file)
    prepared = prepare(scenario)
    forecast = run_scenario(scenario, prepared=prepared, plots=False)
    perfect = run_scenario(with_overrides(scenario, {"controller.kind": "perfect"}, "<t>"),
                           prepared=prepared, plots=False)
    regret = forecast.result.kpis["cost_usd"] - perfect.result.kpis["cost_usd"]
    assert abs(terms[TOTAL] - regret) <= 1e-6
    # Not a degenerate split: the price and the other load both cost money here, and
    # the errors interact. How the battery's share splits between the renewable and the
    # other load depends on which optimal vertex each run's LPs land on (session 16's
    # warm start moved other_load from 132.80 to 93.69 $ and renewable from 153.23 to
    # 189.29 $, the total from 1,802.52 to 1,800.65 $), so the bound is well below both.
    assert abs(parts["price"]) > 100.0 and abs(parts["other_load"]) > 50.0
    assert abs(terms[INTERACTION]) > 1.0
    assert all((attributed / name).is_file() for name in FILES)
    markdown = (attributed / "attribution.md").read_text(encoding="utf-8")
    assert "| interaction |" in markdown and "Check: parts + interaction" in markdown


def test_every_channel_is_in_exactly_one_group_of_the_split(
        scenario_file: Path, attributed: Path) -> None:
    """Each channel's forecast error shows in the run that forecasts its group only and
    in no other single-group run: a channel left out of the split (forecast in every run,
    or in none) fails here."""
    scenario = load_scenario(scenario_file)
    site_channels = channels(scenario.site)
    table = pd.read_csv(attributed / "attribution.csv")
    split = [t for t in table["term"] if t not in (INTERACTION, TOTAL)]
    assert split == [g for g in CHANNEL_GROUPS if g in {group(c) for c in site_channels}]
    results = pd.read_parquet(attributed / "results.parquet").set_index("run_id")
    mae = results[[f"forecast_mae.{c}" for c in site_channels]].astype(float)
    mae.columns = pd.Index(site_channels)
    plan = plan_runs(scenario, ["noisy_oracle"])
    assert (mae.loc[plan.run_id("noisy_oracle", "all")] > 0.0).all()
    for channel in site_channels:
        carriers = [g for g in split
                    if float(mae.at[plan.run_id("noisy_oracle", "only", g), channel]) > 0.0]
        assert carriers == [group(channel)], channel
    assert (mae.loc[plan.run_id("", "perfect")] == 0.0).all()


def test_a_channel_on_the_oracle_gets_a_zero_part(scenario_file: Path, attributed: Path,
                                                  tmp_path: Path) -> None:
    """The price forecast replaced by the Oracle: its part and the regret a perfect price
    forecast removes are zero (the same scenario's noisy price costs > 100 $, first
    test). Needs the all-Oracle MPC to be the perfect-forecast MPC exactly, deadline
    margin included."""
    scenario = with_overrides(load_scenario(scenario_file),
                              {"controller.channels.price.forecaster": "oracle"}, "<t>")
    table, outcome = attribute(scenario, ["noisy_oracle"], tmp_path / "out")
    assert table is not None and not outcome.failed
    terms = table.set_index("term")[["regret_usd", "perfect_value_usd", "forecast_mae"]]
    assert list(terms.loc["price"].astype(float)) == [0.0, 0.0, 0.0]
    # the other load's part is unchanged in kind (the bound as in the first test)
    assert abs(float(terms.loc["other_load", "regret_usd"])) > 50.0


def test_report_shows_the_attribution(attributed: Path) -> None:
    report = build_report(attributed)
    headings = [s.heading for s in report.sections]
    assert headings[:3] == ["Summary", "Regret attribution by forecast channel",
                            "Regret vs forecast error per channel"]
    assert "regret_vs_error" not in [f.name for f in report.figures]  # the attribution replaces it
    section = report.sections[1]
    assert list(section.tables[0]["term"]) == ["price", "renewable", "other_load", "carbon",
                                               INTERACTION, TOTAL]
    assert section.paragraphs[1].startswith("Sum check")
    assert [f.name for f in report.figures][:2] == ["regret_attribution", "regret_vs_channel_mae"]
    # One point per group: the run forecasting that group only.
    assert len(report.sections[2].tables[0]) == 4


def test_report_refuses_a_damaged_attribution_table(attributed: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("sweep.json", "results.parquet"):
        (copy / name).write_bytes((attributed / name).read_bytes())
    table = pd.read_csv(attributed / "attribution.csv")
    table.drop(columns="perfect_value_usd").to_csv(copy / "attribution.csv", index=False)
    assert cli_main(["report", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mpc-dc: error: {copy / 'attribution.csv'}")
    assert "perfect_value_usd" in err and "\n" not in err


@pytest.mark.parametrize(("args", "option"), [
    (["--flex", "S1"], "--flex"),
    (["--forecasters", "baseline"], "--forecasters"),
    (["--forecasters", "sarimx"], "argument --forecasters"),  # refused as it is parsed
    (["--policy", "tests.public_mpc:PublicMpc"], "--policy"),
])
def test_attribute_refuses_what_it_cannot_split(scenario_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               args: list[str], option: str) -> None:
    out = tmp_path / "out"
    assert cli_main(["compare", str(scenario_file), "--attribute", "--out", str(out),
                     *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mpc-dc: error: {option}: ") and "\n" not in err
    assert not out.exists()


def test_workers_only_with_attribute(scenario_file: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["compare", str(scenario_file), "--workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mpc-dc: error: --workers: runs in parallel only with --attribute")


def test_plan_of_a_fleet_site_sets_the_oracle_on_every_other_group() -> None:
    """Every channel of the combined site (pools, wind, other IT, priced carbon): in the
    run of group g only, the channels outside g are on the Oracle and those of g are not;
    in the run of every group but g, the reverse."""
    scenario = with_overrides(combined(), {"site.carbon_price_usd_per_t": 50.0,
                                           "controller.forecaster": "sarimax"}, "<t>")
    split = groups(scenario)
    assert split == CHANNEL_GROUPS
    assert "carbon" not in groups(combined())  # unpriced carbon enters no cost
    plan = plan_runs(scenario, ["sarimax", "seasonal_naive"])
    assert plan.forecasters == ("sarimax", "seasonal_naive_daily")
    assert len(plan.runs) == 1 + 2 * (2 * len(split) + 1)
    runs = {r.run_id: r for r in plan.runs}
    site_channels = channels(scenario.site)
    for name in plan.forecasters:
        for g in split:
            for kind, forecast in (("only", lambda c, g=g: group(c) == g),
                                   ("all_but", lambda c, g=g: group(c) != g)):
                spec = runs[plan.run_id(name, kind, g)].scenario.controller
                chosen = choices(spec)
                for c in site_channels:
                    expected = name if forecast(c) else "oracle"
                    assert chosen[group(c)].name == expected, (kind, g, c)
        spec = runs[plan.run_id(name, "all")].scenario.controller
        assert {choices(spec)[group(c)].name for c in site_channels} == {name}
    assert runs[plan.run_id("", "perfect")].scenario.controller.kind == "perfect"


def test_unpriced_carbon_is_on_the_oracle_in_every_run() -> None:
    plan = plan_runs(combined(), ["persistence"])
    assert "carbon" not in plan.groups
    for run in plan.runs:
        assert run.scenario.controller.group_forecaster("carbon") == "oracle", run.run_id


def test_noisy_oracle_keys_of_a_channel_group_reach_its_forecasters() -> None:
    scenario = with_overrides(combined(), {
        "controller.forecaster": "persistence",
        "controller.error_level": 0.4,
        "controller.channels.price.forecaster": "noisy_oracle",
        "controller.channels.price.bias": -0.3,
        "controller.channels.price.autocorrelation": 0.5,
        "controller.channels.renewable.forecaster": "noisy_oracle",
        "controller.channels.renewable.error_level": 0.7,
    }, "<t>")
    _, exo = prepare(scenario)
    forecasts = build_policy(scenario, exo).forecasts  # type: ignore[attr-defined]
    for c in channels(scenario.site):
        fc = forecasts.forecasters[c]
        if group(c) == "price":
            assert (fc.name, fc.error_level, fc.bias, fc.autocorrelation) == (
                "noisy_oracle", 0.4, -0.3, 0.5)
        elif group(c) == "renewable":
            assert (fc.name, fc.error_level, fc.bias, fc.autocorrelation) == (
                "noisy_oracle", 0.7, 0.0, 1.0)
        else:
            assert fc.name == "persistence", c


@pytest.mark.parametrize(("channels_table", "margin"), [
    ({}, 2),
    ({"price": {"forecaster": "oracle"}}, 2),
    ({"other_load": {"forecaster": "oracle"}}, 0),
])
def test_deadline_margin_belongs_to_the_other_load_forecast(
        channels_table: dict[str, dict[str, str]], margin: int) -> None:
    """The margin (set to 0.5 h: 2 intervals) and the non-deferrable quantile reserve (0.9)
    hedge the other-load forecast: both off with the Oracle on it, and for perfect."""
    overrides: dict[str, object] = {
        f"controller.channels.{g}.{k}": v for g, keys in channels_table.items()
        for k, v in keys.items()}
    overrides["controller.deadline_margin_h"] = 0.5
    spec = with_overrides(combined(), overrides, "<t>").controller
    assert spec.deadline_margin_steps == margin
    assert spec.work_nd_level == (0.9 if margin else None)
    perfect = with_overrides(combined(), {"controller.kind": "perfect"}, "<t>").controller
    assert perfect.deadline_margin_steps == 0 and perfect.work_nd_level is None


def test_forecast_errors_by_hand(scenario_file: Path) -> None:
    """The Oracle scores zero; a flat forecast of a ramp rising 2 per interval errs by
    2, 4, 6, 8 at leads 1..4 after the last value it holds."""
    scenario = load_scenario(scenario_file)
    _, exo = prepare(scenario)
    errors = ForecastErrors.of(exo)
    forecasts = ChannelForecasts(make_forecasters(exo, "oracle"), errors=errors)
    forecasts.predict(exo.time(0), 4)
    assert set(errors.mae().values()) == {0.0}
    assert set(errors.points.values()) == {4}
    truth = exo.truth(PRICE)
    ramp = pd.Series(10.0 + 2.0 * np.arange(len(truth)), index=truth.index)
    errors = ForecastErrors({PRICE: ramp})
    last = ramp.to_numpy()[exo.history_steps - 1]
    errors.add(PRICE, exo.time(0), np.full(4, last))
    assert errors.mae() == {PRICE: (2 + 4 + 6 + 8) / 4}
    assert errors.mae_by_group() == {"price": 5.0}


@pytest.mark.parametrize(("key", "value", "named", "hint"), [
    ("controller.channels.prices.forecaster", "oracle", "controller.channels.prices",
     "did you mean 'price'?"),
    ("controller.channels.price.forecaster", "sarimx", "controller.channels.price.forecaster",
     "did you mean 'sarimax'?"),
    ("controller.channels.price.autocorrelation", 1.5,
     "controller.channels.price.autocorrelation", "in [0, 1]"),
    ("controller.channels.demand.error_level", -0.1, "controller.channels.demand.error_level",
     ">= 0"),
    ("controller.channels.price.biass", 0.1, "controller.channels.price.biass",
     "did you mean 'bias'?"),
    ("controller.bias", -11.0, "controller.bias", "in [-10, 10]"),
])
def test_channel_keys_are_checked(key: str, value: object, named: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        with_overrides(combined(), {key: value}, "s.toml")
    assert err.value.key == named and hint in str(err.value)
