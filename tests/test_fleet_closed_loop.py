"""The fleet MPC closed loop: decision fixes, invariants, commitment, fallbacks, causality."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasters.base import forecaster_names
from mpc_dc.fleet_controller import (
    FleetMpcPolicy,
    FleetObservation,
    rule_decision,
    serving_capacity_tokens_per_s,
)
from mpc_dc.fleet_problem import FleetInputs, FleetPlan, FleetProblem, FleetSolveResult
from mpc_dc.fleet_scenario import (
    DrEventSpec,
    FleetData,
    FleetScenario,
    build_fleet_data,
    build_fleet_policy,
    compare_fleet,
    fleet_example_path,
    fleet_scenario_from_table,
    fleet_variant,
    load_fleet_scenario,
    run_fleet_scenario,
)
from mpc_dc.params.fleet import CampusParams, FleetConfig
from mpc_dc.problem import SolveStatus
from mpc_dc.scenario import load_scenario, scenario_kind
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.fleet_decision import FleetDecision
from mpc_dc.sim.fleet_engine import (
    FleetExogenous,
    ServingConfig,
    ServingObservation,
    check_fleet_invariants,
    simulate_fleet,
)
from traces.errors import ConfigError

TABLE = {
    "kind": "fleet",
    "name": "tiny",
    "flexibility": "S6",
    "run": {"start": "2022-04-04T07:00:00Z", "days": 0.25, "history_days": 2, "seed": 3},
    "data": {"source": "synthetic", "rate_multiplier": 5.0},
    "fleet": {"campuses": [{"name": "A", "price_node": "A", "gpus": 64},
                           {"name": "B", "price_node": "B", "gpus": 64}]},
    "controller": {"kind": "mpc", "forecaster": "seasonal_naive_daily", "horizon_h": 2.0},
}


@pytest.fixture(scope="module")
def scenario() -> FleetScenario:
    return fleet_scenario_from_table(TABLE, "<test>")


@pytest.fixture(scope="module")
def data(scenario: FleetScenario) -> FleetData:
    return build_fleet_data(scenario)


# ----------------------------------------------------------------------------- decision fixes


def _plan(instances: list[float], tokens: list[float]) -> FleetPlan:
    pools = (("A", "m", "BF16"), ("B", "m", "BF16"), ("A", "k", "BF16"))
    n = np.array(instances, dtype=float)[:, None]
    x = np.array(tokens, dtype=float)[:, None]
    z = np.zeros((2, 1))
    return FleetPlan(pools, ("m", "k"), ("A", "B"), n, np.zeros_like(n), x, z, z, z, z)


def test_decision_rounds_up_fractional_counts_and_routes_only_to_capacity() -> None:
    # A: 0.3 instances with 100 tokens/s planned (round() gave 0 instances and a share);
    # pool k has no instance and no tokens: no share (requests must not wait forever).
    d = _plan([0.3, 2.0, 0.0], [100.0, 300.0, 0.0]).decision(0)
    assert d.instances[("A", "m", "BF16")] == 1
    assert d.instances[("B", "m", "BF16")] == 2
    assert d.routing_share == pytest.approx({("A", "m", "BF16"): 0.25, ("B", "m", "BF16"): 0.75})
    assert not d.shares_of("k")
    for pool, share in d.routing_share.items():
        assert share > 0 and d.instances[pool] > 0


def test_decision_without_tokens_routes_by_instances_and_keeps_integers() -> None:
    d = _plan([1.0, 3.0, 0.0], [0.0, 0.0, 0.0]).decision(0)
    assert d.instances == {("A", "m", "BF16"): 1, ("B", "m", "BF16"): 3, ("A", "k", "BF16"): 0}
    assert d.routing_share == pytest.approx({("A", "m", "BF16"): 0.25, ("B", "m", "BF16"): 0.75})


def test_rule_decision_routes_only_to_pools_with_instances() -> None:
    cfg = FleetConfig(campuses=(CampusParams("A", "A", 64), CampusParams("B", "B", 64)),
                      models=("qwen3-32b", "qwen3-235b-a22b"))
    d = rule_decision(cfg, [0.0, 5000.0])
    assert not d.shares_of("qwen3-32b")
    assert all(d.instances[k] > 0 for k in d.routing_share)


# ----------------------------------------------------------------------------- closed loop


@pytest.mark.parametrize("fidelity", ["request", "fluid"])
def test_mpc_closed_loop_invariants_and_commitment(scenario: FleetScenario, data: FleetData,
                                                   fidelity: str, tmp_path: Path) -> None:
    sc = fleet_variant(scenario, fidelity)
    policy = build_fleet_policy(sc, data)
    assert isinstance(policy, FleetMpcPolicy)
    plans: list[FleetDecision] = []
    decide = policy.decide

    def spy(obs: FleetObservation) -> FleetDecision:
        d = decide(obs)
        res = policy.last_result
        assert res is not None and res.plan is not None
        first = res.plan.decision(0)
        # The committed decision is the plan's first interval (plus the warm floor).
        for pool, n in first.instances.items():
            assert d.instances[pool] >= n
            assert np.isclose(res.plan.instances[res.plan.pools.index(pool), 0], n)
        plans.append(d)
        return d

    policy.decide = spy  # type: ignore[method-assign,assignment]
    result = simulate_fleet(sc.config, data.exo, data.requests, policy, sc.serving.config(),
                            observation=FleetObservation.from_serving)
    check_fleet_invariants(result)
    assert len(plans) == data.exo.n_steps
    for d in result.decisions:
        for pool, share in d.routing_share.items():
            assert share > 0 and d.instances[pool] > 0  # routing only where capacity is
    k = result.kpis
    assert k["solves"] == data.exo.n_steps and k["fallbacks_total"] == 0
    # Capacity suffices (GPUs are far from binding): nothing is left unrouted, and what
    # is not served by the run end arrived in its last interval (still decoding).
    req = data.requests
    last = float(req.response_tokens[req.arrival_s >= (data.exo.n_steps - 1) * 900.0].sum())
    assert k["tokens_unserved"] <= last
    assert k["tokens_served"] + k["tokens_unserved"] == pytest.approx(
        float(req.response_tokens.sum()), rel=1e-9)
    if fidelity == "request":
        assert k["requests_by_status"]["dropped_no_route"] == 0


def test_run_directory_and_compare(scenario: FleetScenario, data: FleetData,
                                   tmp_path: Path) -> None:
    out = run_fleet_scenario(scenario, tmp_path / "run", data=data)
    assert out.path is not None
    for name in ("scenario.json", "metadata.json", "kpis.json", "ledger.parquet",
                 "requests.parquet", "slo_by_interval.parquet"):
        assert (out.path / name).is_file()
    k = out.result.kpis
    comp = k["cost_components_usd"]
    assert comp["energy_usd"] == pytest.approx(k["energy_cost_usd"])
    assert 0.0 <= k["slo"] <= 1.0
    table = compare_fleet(scenario, ["S1", "S6+fluid"])
    assert list(table.index) == ["S1", "S6+fluid"]
    assert table.loc["S6+fluid", "fidelity"] == "fluid"
    assert np.isfinite(table["total_usd"]).all()


def test_fallback_counted_when_solver_forced_to_fail(scenario: FleetScenario,
                                                     data: FleetData) -> None:
    policy = build_fleet_policy(scenario, data)
    assert isinstance(policy, FleetMpcPolicy)
    real = policy.problem.solve

    def failing(*args: object, **kwargs: object) -> FleetSolveResult:
        res = real(*args, **kwargs)  # type: ignore[arg-type]
        return replace(res, status=SolveStatus.ERROR, plan=None, cost=None,
                       objective_usd=float("nan"), message="forced failure")

    policy.problem.solve = failing  # type: ignore[method-assign]
    steps = 6
    exo = FleetExogenous(data.exo.frame.iloc[:steps])
    reqs = data.requests
    cut = int(np.searchsorted(reqs.arrival_s, steps * 900.0))
    short = replace(reqs, arrival_s=reqs.arrival_s[:cut], model=reqs.model[:cut],
                    request_tokens=reqs.request_tokens[:cut],
                    response_tokens=reqs.response_tokens[:cut], source=reqs.source[:cut])
    result = simulate_fleet(scenario.config, exo, short, policy, ServingConfig("fluid"),
                            observation=FleetObservation.from_serving)
    k = result.kpis
    assert k["fallbacks"] == {"committed_integer_failed": steps, "lp_failed": steps}
    assert k["fallbacks_total"] == 2 * steps
    assert {d.source for d in result.decisions} == {"rule_fallback"}
    check_fleet_invariants(result)


def _poisoned_fleet(data: FleetData, cut: int) -> tuple[FleetExogenous, RequestArrays]:
    """Prices and carbon garbage from the start of the hour holding ``cut`` (the
    synthetic LMP and carbon are hourly: published at the hour's end), demand from
    ``cut`` on."""
    frame = data.exo.frame.copy()
    hour_start = cut - int(frame.index[cut].minute) // 15
    frame.iloc[hour_start:] = frame.iloc[hour_start:] * 7.0 + 300.0
    # ... and campus B far dearer than A, so that the poison must move the plan.
    frame.loc[frame.index[hour_start:], "lmp_usd_per_mwh[B]"] += 1000.0
    reqs = data.requests
    late = reqs.arrival_s >= cut * 900.0
    poisoned = replace(reqs, response_tokens=np.where(late, reqs.response_tokens * 9 + 50,
                                                      reqs.response_tokens))
    return FleetExogenous(frame, data.exo.publication), poisoned


def _fleet_policy(scenario: FleetScenario, data: FleetData, name: str) -> FleetMpcPolicy:
    """The MPC with ``name`` on every series (``day_ahead_known``: on the prices, around
    persistence, the others persistence); statistical models fitted on 2 days."""
    cfg = scenario.config
    kinds = {"demand": name, "price": name, "carbon": name}
    params: dict[str, dict[str, object]] = {}
    fast: dict[str, dict[str, object]] = {
        "sarimax": {"min_fit_hours": 24, "maxiter": 10},
        "ets": {"min_fit_hours": 24, "maxiter": 10},
        "auto_sarimax": {"min_fit_hours": 24, "maxiter": 10, "orders": ((1, 0, 0), (2, 0, 0)),
                         "daily_harmonics_grid": (1,)},
        "direct_lad": {"min_fit_hours": 24},
    }
    if name in fast:
        params = {k: fast[name] for k in data.truth.columns}
    if name.startswith("combination"):
        # Each series' preset members (sarimax, direct_lad, ets, seasonal naive), fast.
        params = {k: {"member_params": fast} for k in data.truth.columns}
    if name == "day_ahead_known":
        kinds = {"demand": "persistence", "price": name, "carbon": "persistence"}
        params = {k: {"truth": data.truth[k]} for k in data.truth.columns
                  if k.startswith("lmp_usd_per_mwh")}
    problem = FleetProblem(cfg, scenario.controller.horizon_steps,
                           scenario.controller.solver_options())
    policy = FleetMpcPolicy(problem, demand_forecaster=kinds["demand"],
                            price_forecaster=kinds["price"], carbon_forecaster=kinds["carbon"],
                            forecaster_params=params, min_instances_per_model=1)
    return policy.fit(data.history)


@pytest.mark.parametrize("name", forecaster_names())
def test_causality_poisoned_future(scenario: FleetScenario, data: FleetData, name: str) -> None:
    """Decisions up to step t are identical when everything unpublished at t is poisoned.

    Issue times at :15, :30 and :45: the hourly price and carbon of the current hour
    are published at its end, so poisoning the whole hour must not reach the decision.
    """
    if name in ("oracle", "noisy_oracle"):
        pytest.skip("the oracles read their truth, not observations: look-ahead by design")
    cuts = (5, 10, 15)
    assert [data.exo.frame.index[c].minute for c in cuts] == [15, 30, 45]
    # The point forecast is provisioned (a quantile needs a longer history to be tight).
    sc = replace(scenario, controller=replace(scenario.controller, demand_quantile=0.0))

    def run(exo: FleetExogenous, requests: RequestArrays
            ) -> tuple[list[FleetDecision], list[np.ndarray]]:
        """Decisions, and every forecast the policy made (demand, price, carbon)."""
        policy = _fleet_policy(sc, data, name)
        forecast = policy.forecast_inputs
        seen: list[np.ndarray] = []

        def spy(time: pd.Timestamp) -> FleetInputs:
            inputs = forecast(time)
            seen.append(np.vstack([inputs.demand_tokens_per_s, inputs.price_usd_per_mwh,
                                   inputs.carbon_gco2_per_kwh]))
            return inputs

        policy.forecast_inputs = spy  # type: ignore[method-assign]
        decisions = simulate_fleet(sc.config, exo, requests, policy, ServingConfig("fluid"),
                                   observation=FleetObservation.from_serving).decisions
        return decisions, seen

    clean, clean_fc = run(data.exo, data.requests)
    for cut in cuts:
        runs, runs_fc = run(*_poisoned_fleet(data, cut))
        for a, b in zip(clean[: cut + 1], runs[: cut + 1], strict=True):
            assert a.instances == b.instances
            assert a.routing_share == pytest.approx(b.routing_share)
        for fa, fb in zip(clean_fc[: cut + 1], runs_fc[: cut + 1], strict=True):
            np.testing.assert_array_equal(fa, fb)
        # The poison is real: later forecasts change (not seasonal naive ones: over a
        # 2-h horizon they read values a day or more old, never the poisoned hours).
        assert name.startswith("seasonal_naive") or any(
            not np.array_equal(fa, fb)
            for fa, fb in zip(clean_fc[cut + 1:], runs_fc[cut + 1:], strict=True))


def test_unknown_demand_spread_provisions_the_fleet_not_the_point(scenario: FleetScenario
                                                                  ) -> None:
    """Started from one observation (no history), the demand quantile's spread is
    unknown: the plan is sized for the fleet's serving capacity, never for the point
    forecast as a zero-width quantile (what ``nan_to_num`` gave)."""
    cfg = scenario.config
    problem = FleetProblem(cfg, 8, scenario.controller.solver_options())
    policy = FleetMpcPolicy(problem, demand_forecaster="persistence", demand_quantile=0.9)
    t0 = pd.Timestamp("2022-04-04 07:00", tz="UTC")
    policy.observe(t0, {**{k: 100.0 for k in policy.keys[: len(cfg.models)]},
                        **{k: 50.0 for k in policy.keys[len(cfg.models):]}})
    demand = policy.forecast_inputs(t0 + pd.Timedelta(minutes=15)).demand_tokens_per_s
    capacity = serving_capacity_tokens_per_s(cfg)
    assert (capacity > 1000.0).all()
    np.testing.assert_array_equal(demand, np.repeat(capacity[:, None], 8, axis=1))
    # The point forecast is still the observation.
    point = FleetMpcPolicy(problem, demand_forecaster="persistence", demand_quantile=None)
    point.observe(t0, {k: 100.0 for k in point.keys})
    assert (point.forecast_inputs(t0 + pd.Timedelta(minutes=15)).demand_tokens_per_s
            == 100.0).all()


def test_fleet_run_starts_on_a_publication_boundary(data: FleetData) -> None:
    """A history ending at :15 would hold a quarter of an hour not yet published."""
    with pytest.raises(ConfigError, match=r"run\.start.*on the hour"):
        fleet_scenario_from_table({**TABLE, "run": {**TABLE["run"],
                                                    "start": "2022-04-04T07:15:00Z"}}, "<t>")
    frame = data.exo.frame.iloc[1:]
    with pytest.raises(ConfigError, match="inside a source interval"):
        FleetExogenous(frame, data.exo.publication)
    FleetExogenous(frame)  # 15-min series may start at any quarter


def test_observation_adapter_splits_ready_and_loading() -> None:
    key = ("A", "m", "BF16")
    obs = ServingObservation(3, pd.Timestamp("2022-04-04", tz="UTC"), {key: 5}, {key: 2},
                             {key: 7.0}, {"m": 0.0})
    f = FleetObservation.from_serving(obs)
    assert f.instances_running == {key: 2} and f.instances_starting == {key: 3}
    assert f.fleet() == {key: 5} and f.queue_requests == {"m": 7.0}


# ----------------------------------------------------------------------------- files


def test_examples_load_and_kind_dispatch(tmp_path: Path) -> None:
    for name in ("fleet_default", "dr_caiso"):
        path = fleet_example_path(name)
        assert scenario_kind(path) == "fleet"
        assert load_fleet_scenario(path).kind == "fleet"
    rcdc = tmp_path / "r.toml"
    rcdc.write_text('kind = "rcdc"\nname = "x"\n')
    assert scenario_kind(rcdc) == "rcdc" and load_scenario(rcdc).name == "x"
    with pytest.raises(ConfigError, match="fleet"):
        load_scenario(fleet_example_path("fleet_default"))
    bad = tmp_path / "b.toml"
    bad.write_text('kind = "fleet"\n[controller]\nhorizon = 4\n')
    with pytest.raises(ConfigError, match="horizon_h"):
        load_fleet_scenario(bad)
    with pytest.raises(ConfigError, match="flexibility"):
        fleet_scenario_from_table({**TABLE, "flexibility": "S7"}, "<t>")
    with pytest.raises(ConfigError, match="model_map"):
        fleet_scenario_from_table({**TABLE, "data": {"model_map": {"GPT-4": "nope"}}}, "<t>")


def test_problem_built_for_horizon(scenario: FleetScenario, data: FleetData) -> None:
    policy = build_fleet_policy(scenario, data)
    assert isinstance(policy, FleetMpcPolicy)
    assert isinstance(policy.problem, FleetProblem)
    assert policy.problem.horizon_steps == scenario.controller.horizon_steps


def test_run_data_do_not_depend_on_the_horizon() -> None:
    """A horizon sweep compares controllers on one request stream: history and run
    (requests, truth) are the same for an 8-h and a 48-h horizon; only the horizon
    after the run is added (they differed: the generator drew over run + horizon)."""
    scenario = load_fleet_scenario(fleet_example_path("fleet_default"))
    scenario = replace(scenario, run=replace(scenario.run, days=1.0))
    longer = replace(scenario, controller=replace(scenario.controller, horizon_h=48.0))
    a, b = build_fleet_data(scenario), build_fleet_data(longer)
    run_end = len(a.truth) - scenario.controller.horizon_steps
    assert len(b.truth) == run_end + longer.controller.horizon_steps
    np.testing.assert_array_equal(a.requests.arrival_s, b.requests.arrival_s)
    np.testing.assert_array_equal(a.requests.response_tokens, b.requests.response_tokens)
    pd.testing.assert_frame_equal(a.truth.iloc[:run_end], b.truth.iloc[:run_end])
    pd.testing.assert_frame_equal(a.history, b.history)


def test_caiso_run_data_do_not_depend_on_the_horizon(shared_data: Path) -> None:
    sc = load_fleet_scenario(fleet_example_path("dr_caiso"))
    sc = replace(sc, run=replace(sc.run, days=1.0), dr_events=DrEventSpec(),
                 data=replace(sc.data, data_dir=str(shared_data), rate_multiplier=50.0))
    longer = replace(sc, controller=replace(sc.controller, horizon_h=36.0))
    a, b = build_fleet_data(sc), build_fleet_data(longer)
    run_end = len(a.truth) - sc.controller.horizon_steps
    np.testing.assert_array_equal(a.requests.arrival_s, b.requests.arrival_s)
    np.testing.assert_array_equal(a.requests.request_tokens, b.requests.request_tokens)
    pd.testing.assert_frame_equal(a.truth.iloc[:run_end], b.truth.iloc[:run_end])
