"""The closed loop of the RCDC site: invariants, Oracle equivalence, causality, decision
timing, faults, offline limits, compare and the CLI.

Every :func:`~mpc_dc.sim.engine.simulate` call checks the books itself (energy per
campus each interval, no simultaneous import and export, deferrable work conserved,
settlement equal to the ledger); the tests below add the figures that must hold on
top. The site is ``rcdc_default.toml`` (one campus: 100 MW other IT, 150 MW wind,
grid) on synthetic data.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters.base import forecaster_names
from mpc_dc.cli import main as cli_main
from mpc_dc.commands.compare import limit_notes
from mpc_dc.control.baseline import BaselinePolicy
from mpc_dc.control.forecasting import ChannelForecasts, channels, make_forecasters
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.control.offline import OfflinePolicy
from mpc_dc.problem import Formulation, Problem, SolveResult, SolveStatus
from mpc_dc.runner import (
    OFFLINE_ROW,
    PERFECT_ROW,
    REFERENCE_ROW,
    build_policy,
    compare,
    prepare,
    run_scenario,
    solver_options,
)
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.meter import net_cost_usd
from mpc_dc.sim.policy import CampusDecision, Decision, Observation
from mpc_dc.site.scenario import Scenario, controller_variant, with_overrides
from tests.loop_cases import offline_to_end_rolling, poisoned, rcdc_short
from traces.grid import STEP_H

C = "rcdc"
"""The campus of ``rcdc_default.toml``."""


@pytest.fixture(scope="module")
def case() -> tuple[Scenario, SiteExogenous]:
    return prepare(rcdc_short())


def run(case: tuple[Scenario, SiteExogenous], label: str, **ctl: Any) -> RunResult:
    scenario, exo = case
    variant = controller_variant(scenario, label)
    if ctl:
        variant = replace(variant, controller=replace(variant.controller, **ctl))
    return simulate(exo, build_policy(variant, exo))


@pytest.mark.parametrize("label", ["baseline", "offline", "perfect", "persistence",
                                   "seasonal_naive_daily"])
def test_every_controller_closes_the_books(case: tuple[Scenario, SiteExogenous],
                                           label: str) -> None:
    result = run(case, label)
    k = result.kpis
    led = result.campus_ledger(C)
    assert len(led) == case[1].n_steps == 144
    # Work: arrived = done + pending + missed; nothing is pending at the end (the
    # last window closes inside the run).
    assert k["work_df_done_wu"] + k["work_df_missed_wu"] + k["work_df_pending_end_wu"] == (
        pytest.approx(k["work_df_arrived_wu"], rel=1e-9))
    assert k["work_df_pending_end_wu"] == pytest.approx(0.0, abs=1e-6)
    # Settlement equals the ledger: import cost priced at the realized price.
    energy = float((led["import_price_usd_per_mwh"] * led["import_mw"]).sum() * STEP_H)
    assert k["energy_import_usd"] == pytest.approx(energy, rel=1e-12)
    assert k["cost_usd"] == pytest.approx(net_cost_usd(result.ledger), rel=1e-12)
    np.testing.assert_allclose(led["renewable_used_mw"] + led["curtailed_mw"],
                               led["renewable_available_mw"], atol=1e-9)


def test_controllers_rank_as_expected(case: tuple[Scenario, SiteExogenous]) -> None:
    """Offline optimum <= perfect-foresight MPC <= forecast MPC, and all beat no scheduling."""
    cost = {label: run(case, label).kpis["cost_usd"]
            for label in ("baseline", "offline", "perfect", "persistence")}
    assert cost["offline"] <= cost["perfect"] * (1 + 1e-9)
    assert cost["perfect"] <= cost["persistence"] * (1 + 1e-9)
    assert cost["perfect"] < cost["baseline"]


@pytest.mark.shared_data
def test_oracle_mpc_reaching_the_end_equals_the_offline_optimum(shared_data: Path) -> None:
    """2-day real-data case (NYISO zone F, April 2022): same total cost within 0.1 %.

    With a horizon that reaches the run end, the Oracle MPC re-solves the tail of
    the offline problem every 15 minutes; by the principle of optimality the
    committed first intervals add up to the offline optimum. With the rolling
    24-h horizon the gap is measured and must be >= 0 (less foresight never helps).
    Wholesale windows are independent, so this case cannot tell the two horizons
    apart; it covers the MILP path (negative prices). The retail test below can.
    """
    scenario = rcdc_short(2.0, 1, overrides={"run.start": "2022-04-04T04:00:00Z",
                                              "data.source": "real",
                                              "data.dir": str(shared_data)})
    offline, perfect_to_end, rolling = offline_to_end_rolling(scenario)
    assert offline.kpis["formulations"] == {"exact": 1}  # negative prices: the MILP
    c_off = offline.kpis["cost_usd"]
    assert perfect_to_end.kpis["cost_usd"] == pytest.approx(c_off, rel=1e-3)
    gap = (rolling.kpis["cost_usd"] - c_off) / abs(c_off)
    logging.getLogger(__name__).info("rolling 24-h horizon gap to the offline optimum: %.4f %%",
                                     100 * gap)
    assert gap >= -1e-6


def retail() -> Scenario:
    """The RCDC site on the retail tariff with the RCDC demand charge (12.39 $/kW on the
    monthly 15-min peak import); 2 days inside one billing month (April), one day of
    history (the synthetic series depend on it)."""
    return rcdc_short(2.0, 1, overrides={"site.campuses[0].grid.tariff": {
        "kind": "retail", "demand_charge_usd_per_kw": 12.39}})


def test_oracle_mpc_reaching_the_end_equals_the_offline_optimum_under_a_demand_charge(
) -> None:
    """Retail with a demand charge on the billing-period peak (2 synthetic days, one month).

    The peak couples the days, so only a horizon that reaches the run end is perfect
    foresight: the Oracle MPC re-solving the tail every 15 minutes adds up to the
    offline optimum (principle of optimality), within 0.1 %. The rolling 24-h
    horizon cannot see the second day's peak from the first and costs measurably
    more, so this test tells the two horizons apart.
    """
    offline, perfect_to_end, rolling = offline_to_end_rolling(retail())
    c_off = offline.kpis["cost_usd"]
    assert offline.kpis["demand_charge_usd"] > 0.1 * c_off  # the charge matters here
    assert perfect_to_end.kpis["cost_usd"] == pytest.approx(c_off, rel=1e-3)
    assert rolling.kpis["cost_usd"] > c_off * (1 + 1e-3)


def fitted(exo: SiteExogenous, name: str) -> ChannelForecasts:
    """Forecasters of every channel; ``day_ahead_known`` wraps persistence on the price."""
    if name != "day_ahead_known":
        return ChannelForecasts(make_forecasters(exo, name))
    from forecasters.presets import make_for

    # The wrapper's truth is fixed here (clean); what is checked is that its own and
    # its inner forecaster's observations arrive only when published.
    out = make_forecasters(exo, "persistence")
    price = column("price_usd_per_mwh", C)
    out[price] = make_for(name, "price", truth=exo.truth(price)).fit(
        exo.published_history(price))
    return ChannelForecasts(out)


@pytest.mark.parametrize("forecaster", forecaster_names())
def test_no_lookahead_through_the_whole_loop(case: tuple[Scenario, SiteExogenous],
                                             forecaster: str) -> None:
    """The decision committed at t is identical when everything unpublished at t is garbage.

    Issue times at :15, :30 and :45: the hour's average of an hourly series is not
    published before the hour ends, so poisoning the whole hour must not reach the
    decision (on an old loop persistence saw it from the hour's first quarter).
    """
    if forecaster in ("oracle", "noisy_oracle"):
        pytest.skip("the oracles read their truth, not observations: look-ahead by design")
    _, exo = case
    assert exo.time(17).minute == 15 and exo.time(62).minute == 30
    assert exo.time(103).minute == 45

    once = fitted(exo, forecaster)
    options = solver_options(case[0].controller)

    def decisions(data: SiteExogenous) -> pd.DataFrame:
        # Fitted once on the (shared, clean) history; each run gets its own copy.
        policy = MpcPolicy(data, copy.deepcopy(once), 96, options=options,
                           deadline_margin_steps=4)
        led = simulate(data, policy).campus_ledger(C)
        # What the policy committed (the plant's realized flows use the poisoned values).
        return led[["work_df_committed_wu", "planned_import_mw", "planned_export_mw"]]

    clean = decisions(exo)
    for cut in (17, 62, 103):
        dirty = decisions(poisoned(exo, cut, seed=cut))
        pd.testing.assert_frame_equal(dirty.iloc[: cut + 1], clean.iloc[: cut + 1])
        # The poison is real: later decisions do change.
        assert not dirty.iloc[cut + 1:].equals(clean.iloc[cut + 1:])


class OneShot(BaselinePolicy):
    """Commits deferrable work only at step ``k``."""

    name = "one-shot"

    def __init__(self, exo: SiteExogenous, k: int) -> None:
        super().__init__(exo)
        self.k = k

    def decide(self, obs: Observation) -> Decision:
        amount = 5.0 if obs.step == self.k else 0.0
        return Decision({C: CampusDecision(work_df_wu=amount)}, source="one-shot")


def test_a_decision_takes_effect_only_in_its_interval(case: tuple[Scenario, SiteExogenous]
                                                      ) -> None:
    led = simulate(case[1], OneShot(case[1], 30)).campus_ledger(C)
    done = led["work_df_done_wu"].to_numpy()
    assert done[30] == pytest.approx(5.0)
    assert np.count_nonzero(done) == 1
    # Unscheduled deferrable work is missed at its window's end, counted and priced.
    assert led["work_df_missed_wu"].sum() > 0
    assert led["missed_penalty_usd"].sum() == pytest.approx(500.0 * led["work_df_missed_wu"].sum())


def test_injected_solver_failures_fall_back_and_are_counted(
    case: tuple[Scenario, SiteExogenous], caplog: pytest.LogCaptureFixture
) -> None:
    """10 % of the main solves fail (``faults.main_solve``): the run completes, each
    fallback logged and counted."""
    scenario = with_overrides(controller_variant(case[0], "seasonal_naive_daily"),
                              {"faults.main_solve": 0.1}, "<test>")
    with caplog.at_level(logging.WARNING, logger="mpc_dc.control.mpc"):
        result = run_scenario(scenario, prepared=case).result
    injected = result.kpis["faults_injected"]["main_solve"]
    assert 5 <= injected <= 30
    assert result.kpis["faults"]["solver_exception"] == injected
    assert result.kpis["fallbacks_total"] >= injected
    assert sum(result.kpis["fallbacks"].values()) == result.kpis["fallbacks_total"]
    logged = [r for r in caplog.records if "injected fault 'main_solve'" in r.getMessage()]
    assert len(logged) == injected
    sources = result.ledger["decision_source"].value_counts()
    assert sources.get("fallback:lp_repair", 0) + sources.get("fallback:rule", 0) == (
        result.kpis["fallbacks_total"])
    assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-6)


def test_warm_starts_re_solved_cold_are_a_kpi(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture,
                                             tmp_path: Path) -> None:
    """Every other warm-started LP run is answered kSolveError (as HiGHS answers some
    bases): each is re-solved cold, logged below WARNING and counted in kpis.json's
    ``warm_start_failures``, one per rejected run."""
    import dataclasses

    from mpc_dc.fastpath import HighsFastPath

    warm_lp = Problem._warm_start_lp
    real_solve = HighsFastPath.solve
    armed: list[bool] = []
    rejected: list[str] = []

    def noting(self: Problem, *args: Any, **kwargs: Any) -> None:
        warm_lp(self, *args, **kwargs)
        armed.append(self.last_warm_start != "cold" and len(armed) % 2 == 1)

    def reject(self: HighsFastPath) -> Any:
        solution = real_solve(self)
        if armed and armed[-1]:
            armed[-1] = False
            rejected.append(solution.model_status)
            return dataclasses.replace(solution, model_status="kSolveError", x=None)
        return solution

    monkeypatch.setattr(Problem, "_warm_start_lp", noting)
    monkeypatch.setattr(HighsFastPath, "solve", reject)
    with caplog.at_level(logging.INFO, logger="mpc_dc.problem"):
        run_scenario(rcdc_short(0.5), tmp_path / "run", plots=False)
    kpis = json.loads((tmp_path / "run" / "kpis.json").read_text())
    assert len(rejected) > 0
    assert kpis["warm_start_failures"] == len(rejected)
    cold = [r for r in caplog.records if "re-solving cold" in r.getMessage()]
    assert len(cold) == len(rejected)
    assert all(r.levelno < logging.WARNING for r in cold)


def test_forecasters_are_fitted_on_history_only(case: tuple[Scenario, SiteExogenous]) -> None:
    exo = case[1]
    forecasters = make_forecasters(exo, "persistence")
    # No carbon price on this site: its carbon moves no decision and is not forecast.
    assert exo.site.carbon_price_usd_per_t == 0
    assert set(forecasters) == set(channels(exo.site)) == {
        column(q, C) for q in ("price_usd_per_mwh", "renewable_cf", "workload_wu")}
    priced = replace(exo.site, carbon_price_usd_per_t=30.0)
    assert set(channels(priced)) == {*forecasters, column("carbon_gco2_per_kwh", C)}
    for name, forecaster in forecasters.items():
        assert forecaster.cutoff == exo.published_history(name).index[-1]
    assert forecasters[column("workload_wu", C)].cutoff == exo.history.index[-1]


def test_mid_hour_start_fits_on_the_published_history_only() -> None:
    """A run starting at 04:30: the 04:00 hour of the hourly channels is not published
    yet, so their forecasters stop at 03:45; the 15-min workload is seen to 04:15. The
    withheld quarters arrive with the rest of their hour, at 05:00."""
    # Carbon priced, so that it is forecast too.
    _, exo = prepare(rcdc_short(0.25, overrides={"run.start": "2022-04-04T04:30:00Z",
                                                 "site.carbon_price_usd_per_t": 30.0}))
    forecasters = make_forecasters(exo, "persistence")
    hour = pd.Timestamp("2022-04-04T04:00:00Z")
    for quantity in ("price_usd_per_mwh", "renewable_cf", "carbon_gco2_per_kwh"):
        assert forecasters[column(quantity, C)].cutoff == hour - pd.Timedelta(minutes=15)
    assert forecasters[column("workload_wu", C)].cutoff == exo.history.index[-1]
    # Interval 1 (04:45-05:00) publishes the hour 04:00-05:00 of the hourly channels.
    published = exo.published_during(1)
    assert [t for t, v in published if column("price_usd_per_mwh", C) in v] == list(
        pd.date_range(hour, periods=4, freq="15min"))
    result = simulate(exo, MpcPolicy(exo, ChannelForecasts(forecasters), 96))
    assert len(result.ledger) == exo.n_steps


def test_run_command_writes_a_complete_run_directory(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded default (the synthetic product site) for two hours."""
    out = tmp_path / "run"
    args = ["run", "--days", "0.5", "--controller", "persistence", "--out", str(out)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "net cost" in printed and "SLO attainment" in printed and str(out) in printed
    for name in ("scenario.json", "metadata.json", "kpis.json", "ledger.parquet",
                 "pools.parquet", "requests.parquet", "plots/power_flows.png",
                 "plots/prices.png", "plots/decisions.png"):
        assert (out / name).is_file(), name
    kpis = json.loads((out / "kpis.json").read_text())
    ledger = pd.read_parquet(out / "ledger.parquet")
    assert kpis["cost_usd"] == pytest.approx(net_cost_usd(ledger))
    assert set(ledger.index.get_level_values("campus")) == {"north", "west", "nyc"}
    meta = json.loads((out / "metadata.json").read_text())
    assert {"versions", "git", "seed", "wall_time_s"} <= set(meta)
    # The resolved scenario reads back, with the capacity the optimizer planned with.
    from mpc_dc.site.scenario import scenario_from_table

    again = scenario_from_table(json.loads((out / "scenario.json").read_text()), "<json>")
    assert again.fleet is not None and again.fleet.capacity_tokens_per_s == (
        kpis["capacity_tokens_per_s"])
    # A second run into the same directory is refused before any work, in one line.
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists already" in err
    assert not list(tmp_path.glob("*.tmp-*"))


def test_compare_reports_regret_against_the_offline_optimum() -> None:
    """Regret is measured against the offline optimum, not the rolling-horizon oracle.

    Under a billing-period demand charge the 24-h rolling oracle is not perfect
    foresight: it costs more than the offline optimum. Every regret against the
    offline optimum is >= 0, and it is in % of the reference's costs (the savings'
    base)."""
    table = compare(retail(), ["baseline", "persistence", "oracle"])
    assert list(table.index) == [REFERENCE_ROW, OFFLINE_ROW, PERFECT_ROW, "baseline",
                                 "persistence"]
    offline = table.loc[OFFLINE_ROW, "cost_usd"]
    np.testing.assert_allclose(table["regret_usd"], table["cost_usd"] - offline, rtol=1e-12)
    assert table.loc[OFFLINE_ROW, "regret_usd"] == 0.0
    assert (table["regret_usd"] >= -1e-6 * offline).all()
    # The rolling oracle is its own row, with a regret of its own.
    assert table.loc[PERFECT_ROW, "regret_usd"] > 1e-3 * offline
    base = table.loc[REFERENCE_ROW, "costs_usd"]
    np.testing.assert_allclose(table["regret_pct"], 100.0 * table["regret_usd"] / base)
    np.testing.assert_allclose(table["cost_usd"], table["costs_usd"] - table["revenue_usd"],
                               rtol=1e-9)
    np.testing.assert_allclose(table["regret_pct"],
                               table.loc[OFFLINE_ROW, "savings_pct"] - table["savings_pct"],
                               atol=1e-9)
    assert table.loc[REFERENCE_ROW, "savings_pct"] == 0.0
    assert (table["savings_pct"].drop(REFERENCE_ROW) > 0).all()
    # The reference has no wind: nothing is self-consumed, nothing exported.
    assert table.loc[REFERENCE_ROW, "self_consumption_mwh"] == 0.0
    assert table.loc[REFERENCE_ROW, "export_mwh"] == 0.0
    # The offline solve's gap is a column: an LP here, proven optimal.
    assert table.loc[OFFLINE_ROW, "mip_gap_pct"] == 0.0
    assert (table["solves_not_optimal"] == 0).all()
    assert np.isnan(table.loc["baseline", "mip_gap_pct"])  # no solve, no gap


def negative_prices(exo: SiteExogenous) -> SiteExogenous:
    """``exo`` with prices 60 $/MWh lower: a third of the intervals negative, so the
    offline problem is the MILP (docs/formulation.md section 3)."""
    frame = exo.frame.copy()
    frame[column("price_usd_per_mwh", C)] -= 60.0
    return replace(exo, frame=frame)


def test_offline_optimum_is_solved_under_its_own_limit_and_tolerance() -> None:
    """The MPC's per-step limit (1 ms here) does not apply to the whole-run solve.

    With the per-step limit HiGHS stops the 2-day MILP before a first incumbent
    (and on a month, at a 7.4 % gap that was then taken as the optimum)."""
    scenario = with_overrides(controller_variant(rcdc_short(2.0), "offline"),
                              {"controller.time_limit_s": 1e-3,
                               "controller.mip_rel_gap": 0.5}, "<test>")
    scenario, exo = prepare(scenario)
    policy = build_policy(scenario, negative_prices(exo))
    assert isinstance(policy, OfflinePolicy)
    assert policy.result.formulation is Formulation.EXACT
    assert policy.result.status is SolveStatus.OPTIMAL
    assert policy.result.mip_gap <= scenario.controller.offline_mip_rel_gap
    assert policy.options.time_limit_s == scenario.controller.offline_time_limit_s


def test_an_offline_solve_stopped_by_a_limit_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A limit-stopped offline plan is flagged in the log, kpis.json and the compare table."""
    real_solve = Problem.solve

    def stopped(self: Problem, *args: object, **kwargs: object) -> SolveResult:
        result = real_solve(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.horizon_steps < 96:  # the MPC's solves stay as they are
            return result
        return replace(result, status=SolveStatus.FEASIBLE, mip_gap=0.074)

    monkeypatch.setattr(Problem, "solve", stopped)
    scenario = with_overrides(controller_variant(rcdc_short(1.0), "offline"),
                              {"controller.horizon_h": 6.0}, "<test>")
    with caplog.at_level(logging.WARNING, logger="mpc_dc.control.offline"):
        outcome = run_scenario(scenario, tmp_path / "run", plots=False)
    assert any("offline optimum not proven" in r.getMessage() and "7.4 %" in r.getMessage()
               for r in caplog.records)
    kpis = json.loads((tmp_path / "run" / "kpis.json").read_text())
    assert kpis["offline_status"] == "feasible"
    assert kpis["offline_mip_gap"] == pytest.approx(0.074)
    assert kpis["solve_statuses"] == {"feasible": 1}
    assert outcome.path is not None
    table = compare(scenario, ["persistence"])
    assert table.loc[OFFLINE_ROW, "mip_gap_pct"] == pytest.approx(7.4)
    assert table.loc[OFFLINE_ROW, "solves_not_optimal"] == 1
    assert table.loc["persistence", "solves_not_optimal"] == 0
    notes = limit_notes(table)
    assert len(notes) == 1 and OFFLINE_ROW in notes[0] and "7.4 %" in notes[0]


def test_run_scenario_api_matches_simulate(case: tuple[Scenario, SiteExogenous]) -> None:
    scenario, exo = case
    outcome = run_scenario(controller_variant(scenario, "baseline"), prepared=case)
    assert outcome.result.kpis["cost_usd"] == pytest.approx(
        simulate(exo, BaselinePolicy(exo)).kpis["cost_usd"])
