"""The MPC of a fleet site (campuses of inference pools): decisions, invariants, commitment,
fallbacks, causality, the unknown demand spread, run directory and compare.

Removed with the old fleet stack, covered here or elsewhere: the start on a publication
boundary (a run may start at any quarter; what is published is handed over by the
loop: tests/test_closed_loop.py::test_mid_hour_start_fits_on_the_published_history_only),
the observation adapter (the loop's own observation:
tests/test_engine.py::test_loading_instances_are_observed_as_starting), the scenario
kind dispatch (one schema: tests/test_site_scenario.py), the run data's independence of
the horizon (tests/test_site_data.py::test_run_data_do_not_depend_on_the_horizon).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasters.base import forecaster_names
from mpc_dc.control.baseline import rule_fleet
from mpc_dc.control.forecasting import ChannelForecasts, channels, make_forecasters
from mpc_dc.control.mpc import MpcPolicy, lateness_prices, serving_capacity_tokens_per_s
from mpc_dc.problem import Plan, SolveStatus
from mpc_dc.runner import (
    OFFLINE_ROW,
    build_policy,
    compare,
    prepare,
    run_scenario,
    solver_options,
)
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.policy import Decision, Observation
from mpc_dc.site.config import Campus, Fleet, Site
from mpc_dc.site.scenario import Scenario, controller_variant
from tests.loop_cases import fast_fits, fleet_short, poisoned

# ----------------------------------------------------------------------------- decisions


def _plan(instances: list[float], tokens: list[float]) -> Plan:
    pools = (("A", "m", "BF16"), ("B", "m", "BF16"), ("A", "k", "BF16"))
    n = np.array(instances, dtype=float)[:, None]
    x = np.array(tokens, dtype=float)[:, None]
    z = np.zeros((2, 1))
    return Plan(pools, ("m", "k"), ("A", "B"), n, np.zeros_like(n), x, z, z, z, z, z, z,
                z, z, z, z, z, z, z, z, z)


def test_decision_rounds_up_fractional_counts_and_routes_only_to_capacity() -> None:
    # A: 0.3 instances with 100 tokens/s planned (round() gave 0 instances and a share);
    # pool k has no instance and no tokens: no share (requests must not wait forever).
    d = _plan([0.3, 2.0, 0.0], [100.0, 300.0, 0.0]).decision(0).fleet
    assert d.instances[("A", "m", "BF16")] == 1
    assert d.instances[("B", "m", "BF16")] == 2
    assert d.routing_share == pytest.approx({("A", "m", "BF16"): 0.25, ("B", "m", "BF16"): 0.75})
    assert not d.shares_of("k")
    for pool, share in d.routing_share.items():
        assert share > 0 and d.instances[pool] > 0


def test_decision_without_tokens_routes_by_instances_and_keeps_integers() -> None:
    d = _plan([1.0, 3.0, 0.0], [0.0, 0.0, 0.0]).decision(0).fleet
    assert d.instances == {("A", "m", "BF16"): 1, ("B", "m", "BF16"): 3, ("A", "k", "BF16"): 0}
    assert d.routing_share == pytest.approx({("A", "m", "BF16"): 0.25, ("B", "m", "BF16"): 0.75})


def test_rule_routes_only_to_pools_with_instances() -> None:
    site = Site(campuses=(Campus("A", "A", gpus=64), Campus("B", "B", gpus=64)),
                fleet=Fleet(models=("qwen3-32b", "qwen3-235b-a22b")))
    d = rule_fleet(site, [0.0, 5000.0])
    assert not d.shares_of("qwen3-32b")
    assert all(d.instances[k] > 0 for k in d.routing_share)
    assert all(k[2] == "BF16" for k in d.instances)


# ----------------------------------------------------------------------------- closed loop


@pytest.fixture(scope="module")
def case() -> tuple[Scenario, SiteExogenous]:
    return prepare(fleet_short())


@pytest.mark.parametrize("fidelity", ["request", "fluid"])
def test_mpc_closed_loop_invariants_and_commitment(case: tuple[Scenario, SiteExogenous],
                                                   fidelity: str) -> None:
    scenario, exo = case
    sc = controller_variant(scenario, fidelity)
    policy = build_policy(sc, exo)
    assert isinstance(policy, MpcPolicy)
    assert policy.problem.horizon_steps == sc.controller.horizon_steps
    decide = policy.decide
    committed: list[Decision] = []

    def spy(obs: Observation) -> Decision:
        d = decide(obs)
        res = policy.last_result
        assert res is not None and res.plan is not None
        first = res.plan.decision(0).fleet
        # The committed decision is the plan's first interval (plus the warm floor).
        for pool, n in first.instances.items():
            assert d.fleet.instances[pool] >= n
            assert np.isclose(res.plan.instances[res.plan.pools.index(pool), 0], n)
        committed.append(d)
        return d

    policy.decide = spy  # type: ignore[method-assign]
    result = simulate(exo, policy, serving=sc.serving.config())
    assert len(committed) == exo.n_steps
    for d in result.decisions:
        for pool, share in d.fleet.routing_share.items():
            assert share > 0 and d.fleet.instances[pool] > 0  # routing only to capacity
    k = result.kpis
    assert k["solves"] == exo.n_steps and k["fallbacks_total"] == 0
    # Capacity suffices (GPUs are far from binding): nothing is left unrouted, and what
    # is not served by the run end arrived in its last interval (still decoding).
    req = exo.requests
    assert isinstance(req, RequestArrays)
    last = float(req.response_tokens[req.arrival_s >= (exo.n_steps - 1) * 900.0].sum())
    assert k["tokens_unserved"] <= last
    assert k["tokens_served"] + k["tokens_unserved"] == pytest.approx(
        float(req.response_tokens.sum()), rel=1e-9)
    if fidelity == "request":
        assert k["requests_by_status"]["dropped_no_route"] == 0


def test_run_directory_and_compare(case: tuple[Scenario, SiteExogenous],
                                   tmp_path: Path) -> None:
    scenario, _ = case
    out = run_scenario(scenario, tmp_path / "run", prepared=case, plots=False)
    assert out.path is not None
    for name in ("scenario.json", "metadata.json", "kpis.json", "ledger.parquet",
                 "pools.parquet", "requests.parquet"):
        assert (out.path / name).is_file()
    k = out.result.kpis
    assert 0.0 <= k["slo_attainment"] <= 1.0
    assert k["cost_usd"] - k["cost_without_slo_usd"] == pytest.approx(k["lateness_usd"])
    table = compare(scenario, ["S1", "S6+fluid"])
    assert list(table.index)[3:] == ["S1", "S6+fluid"]
    assert table.loc["S6+fluid", "fidelity"] == "fluid"
    assert table.loc["S1", "flexibility"] == "S1"
    assert np.isfinite(table["cost_usd"]).all()
    # Cost with the SLO term beside the cost without it; the regret is of the former.
    np.testing.assert_allclose(table["cost_usd"] - table["cost_without_slo_usd"],
                               table["lateness_usd"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(table["regret_usd"],
                               table["cost_usd"] - table.loc[OFFLINE_ROW, "cost_usd"])


def test_fallback_counted_when_solver_forced_to_fail(case: tuple[Scenario, SiteExogenous]
                                                     ) -> None:
    scenario, exo = case
    policy = build_policy(controller_variant(scenario, "fluid"), exo)
    assert isinstance(policy, MpcPolicy)
    real = policy.problem.solve
    relaxed = policy.relaxed_problem()
    real_relaxed = relaxed.solve

    def failing(real_solve):  # type: ignore[no-untyped-def]
        def solve(*args, **kwargs):  # type: ignore[no-untyped-def]
            res = real_solve(*args, **kwargs)
            return replace(res, status=SolveStatus.ERROR, plan=None, cost=None,
                           objective_usd=float("nan"), message="forced failure")
        return solve

    policy.problem.solve = failing(real)  # type: ignore[method-assign]
    relaxed.solve = failing(real_relaxed)  # type: ignore[method-assign]
    result = simulate(exo, policy, serving=controller_variant(scenario, "fluid")
                      .serving.config())
    k = result.kpis
    n = exo.n_steps
    assert k["fallbacks"] == {"rule": n} and k["fallbacks_total"] == n
    assert k["solves"] == 2 * n  # the committed form and the LP, each failed
    assert {d.source for d in result.decisions} == {"fallback:rule"}
    # The rule still serves: every model keeps at least its warm floor.
    for d in result.decisions:
        for model in exo.site.models:
            assert sum(v for p, v in d.fleet.instances.items() if p[1] == model) >= 1


# Statistical models fitted on the 2-day history, quickly.


def _fleet_policy(case: tuple[Scenario, SiteExogenous], data: SiteExogenous,
                  forecasts: ChannelForecasts) -> MpcPolicy:
    """The MPC with everything that reads observations on: the demand, price and
    renewable nowcasts (τ = 1 h), a queue drained over 30 min and the lateness block."""
    spec = case[0].controller
    return MpcPolicy(data, copy.deepcopy(forecasts), spec.horizon_steps,
                     options=solver_options(spec), min_instances_per_model=1,
                     lateness=lateness_prices(data, 0.001, 1e-5),
                     nowcast_tau_steps=dict.fromkeys(("demand", "price", "renewable"), 4.0),
                     drain_steps=2.0)


@pytest.mark.parametrize("name", forecaster_names())
def test_causality_poisoned_future(case: tuple[Scenario, SiteExogenous], name: str) -> None:
    """Decisions and forecasts up to step t are identical when everything unpublished at
    t is poisoned (prices, carbon, demand), with the nowcasts on (they blend the last
    published demand, price and wind into the forecasts: they must read nothing later).

    Issue times at :15, :30 and :45: the hourly price and carbon of the current hour
    are published at its end, so poisoning the whole hour must not reach the decision.
    The point forecast is provisioned (a quantile needs a longer history to be tight).
    """
    if name in ("oracle", "noisy_oracle"):
        pytest.skip("the oracles read their truth, not observations: look-ahead by design")
    scenario, exo = case
    cuts = (5, 10, 15)
    assert [exo.time(c).minute for c in cuts] == [15, 30, 45]
    if name == "day_ahead_known":
        # Around persistence on the prices (their truth fixed here, clean), persistence on
        # the rest: what is checked is when its observations arrive.
        from forecasters.presets import make_for

        fitted = make_forecasters(exo, "persistence")
        for c in exo.site.campuses:
            col = column("price_usd_per_mwh", c.name)
            fitted[col] = make_for(name, "price", truth=exo.truth(col)).fit(
                exo.published_history(col))
    else:
        fitted = make_forecasters(exo, name, params=fast_fits(name, channels(exo.site)))
    once = ChannelForecasts(fitted)

    shifts: list[np.ndarray] = []

    def run(data: SiteExogenous) -> tuple[list[Decision], list[np.ndarray]]:
        """Decisions, and every forecast the policy made (demand with its nowcast,
        prices, carbon); the nowcasts of the clean run in ``shifts``."""
        policy = _fleet_policy(case, data, once)
        inputs = policy.horizon_inputs
        seen: list[np.ndarray] = []
        if data is exo:
            nowcast = policy.nowcast

            def spy_nowcast(obs: Observation, points: np.ndarray) -> np.ndarray:
                shifts.append(nowcast(obs, points))
                return shifts[-1]

            policy.nowcast = spy_nowcast  # type: ignore[method-assign]

        def spy(obs: Observation):  # type: ignore[no-untyped-def]
            got = inputs(obs)
            seen.append(np.vstack([got[0].demand_tokens_per_s, got[0].import_price_usd_per_mwh,
                                   got[0].carbon_gco2_per_kwh]))
            return got

        policy.horizon_inputs = spy  # type: ignore[method-assign]
        decisions = simulate(data, policy,
                             serving=controller_variant(scenario, "fluid").serving.config()
                             ).decisions
        return list(decisions), seen

    clean, clean_fc = run(exo)
    # The nowcast is at work, except where the forecast is the last value already:
    # persistence, and the weekly seasonal naive on a 2-day history (it falls back to it).
    last_value = ("persistence", "day_ahead_known", "seasonal_naive_weekly")
    assert name in last_value or any(np.any(x != 0) for x in shifts)
    for cut in cuts:
        dirty, dirty_fc = run(poisoned(exo, cut, seed=cut))
        for a, b in zip(clean[: cut + 1], dirty[: cut + 1], strict=True):
            assert a.fleet.instances == b.fleet.instances
            assert a.fleet.routing_share == pytest.approx(b.fleet.routing_share)
        for fa, fb in zip(clean_fc[: cut + 1], dirty_fc[: cut + 1], strict=True):
            np.testing.assert_array_equal(fa, fb)
        # The poison is real: later forecasts change (not seasonal naive ones: over a
        # 2-h horizon they read values a day or more old, never the poisoned hours).
        assert name.startswith("seasonal_naive") or any(
            not np.array_equal(fa, fb)
            for fa, fb in zip(clean_fc[cut + 1:], dirty_fc[cut + 1:], strict=True))


def test_unknown_demand_spread_provisions_the_fleet_not_the_point(
        case: tuple[Scenario, SiteExogenous]) -> None:
    """Started from one observation (no history), the demand quantile's spread is
    unknown: the plan is sized for the fleet's serving capacity, never for the point
    forecast as a zero-width quantile (what ``nan_to_num`` gave)."""
    _, exo = case
    site = exo.site
    t0 = exo.run_start
    demand = [column("tokens_per_s", m) for m in site.models]

    def started(quantile: float | None) -> MpcPolicy:
        from forecasters.presets import make_for

        forecasts = ChannelForecasts({c: make_for("persistence", "request_rate")
                                      for c in demand})
        policy = MpcPolicy(exo, forecasts, 8, demand_quantile=quantile)
        policy.observe(t0, dict.fromkeys(demand, 100.0))
        return policy

    obs = Observation(step=1, time=t0 + pd.Timedelta(minutes=15))
    capacity = serving_capacity_tokens_per_s(site)
    assert (capacity > 1000.0).all()
    point = {c: np.full(8, 100.0) for c in demand}
    provisioned = started(0.9).demand(obs, 8, point)
    np.testing.assert_array_equal(provisioned, np.repeat(capacity[:, None], 8, axis=1))
    # The point forecast is still the observation.
    assert (started(None).demand(obs, 8, point) == 100.0).all()
