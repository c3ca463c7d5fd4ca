"""Faults: a run either completes with the fault logged and counted, or stops with one
clear line and leaves earlier results intact.

* solver exception (the problem's ``solve`` raises) → fallback, counted, logged;
* solver time-out (tiny time limit on a MILP) → a NO_SOLUTION status, handled;
* NaN forecast → counted as fault ``nan_forecast``, the run completes;
* full disk while writing a run or a sweep's tables → one line, exit code 3, no
  partial output, earlier results intact;
* worker killed mid-sweep → ``tests/test_sweep.py::test_killed_sweep_resumes_to_the_same_table``;
* injected fault classes (``[faults]``, :mod:`mpc_dc.sim.faults`), each at rate 1 on a
  tiny site: the run completes, the ledger and the KPIs count exactly what was
  injected, and the fault's own consequence happens (the last section).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters.base import BaseForecaster
from mpc_dc.cli import main as cli_main
from mpc_dc.control.forecasting import channels
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.problem import (
    Formulation,
    HorizonInputs,
    PlantState,
    Problem,
    SolverOptions,
    SolveStatus,
)
from mpc_dc.runner import build_policy, fault_injector, prepare
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.engine import RunResult, check_invariants, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.faults import FAULT_CLASSES, FEEDS, FaultInjector, FaultSpec
from mpc_dc.sim.fluid import FluidServer
from mpc_dc.sim.serving import FINISHED, Killed, PoolSpec, RequestLevelServer
from mpc_dc.site.scenario import Scenario, controller_variant, example_path
from mpc_dc.sweep import load_sweep, run_sweep
from tests.loop_cases import combined, rcdc_short
from traces.grid import STEP

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
PRICE = column("price_usd_per_mwh", "rcdc")


@pytest.fixture(scope="module")
def case() -> tuple[Scenario, SiteExogenous]:
    return prepare(rcdc_short(1.0))


def _mpc(case: tuple[Scenario, SiteExogenous], forecaster: str = "persistence",
         **controller: Any) -> MpcPolicy:
    scenario, exo = case
    scenario = controller_variant(scenario, forecaster)
    scenario = replace(scenario, controller=replace(scenario.controller, **controller))
    policy = build_policy(scenario, exo)
    assert isinstance(policy, MpcPolicy)
    return policy


def test_solver_exception_falls_back_and_is_counted(
    case: tuple[Scenario, SiteExogenous], caplog: pytest.LogCaptureFixture
) -> None:
    exo = case[1]
    policy = _mpc(case)
    real_solve = policy.problem.solve
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            raise RuntimeError("HiGHS crashed (simulated)")
        return real_solve(*args, **kwargs)

    policy.problem.solve = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="mpc_dc.control.mpc"):
        result = simulate(exo, policy)
    check_invariants(result)
    raised = result.kpis["faults"]["solver_exception"]
    assert raised == exo.n_steps // 4
    # The LP relaxation (a separate problem, not patched) took over each time.
    assert result.kpis["fallbacks"]["lp_repair"] == raised
    logged = [r for r in caplog.records if "solver raised RuntimeError" in r.getMessage()]
    assert len(logged) == raised
    assert (result.ledger["decision_source"] == "fallback:lp_repair").sum() == raised


def test_solver_exception_in_the_fallback_too_ends_in_the_safe_rule(
    case: tuple[Scenario, SiteExogenous], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Problem, *args: Any, **kwargs: Any) -> Any:
        raise ArithmeticError("numerical trouble (simulated)")

    exo = case[1]
    policy = _mpc(case)
    monkeypatch.setattr(Problem, "solve", broken)
    result = simulate(exo, policy)
    check_invariants(result)
    assert result.kpis["faults"]["solver_exception"] == exo.n_steps
    assert result.kpis["fallbacks"] == {"rule": exo.n_steps}
    assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-6)


def test_solver_time_limit_gives_a_status_not_an_exception(
        case: tuple[Scenario, SiteExogenous]) -> None:
    """A MILP (negative prices force it) with a 1 µs limit: NO_SOLUTION, no plan, no raise."""
    site = case[1].site
    rng = np.random.default_rng(0)
    horizon = 96
    price = 40.0 + 60.0 * rng.standard_normal(horizon)
    assert (price < 0).any()
    inputs = HorizonInputs.build(site, horizon, price_usd_per_mwh=price,
                                 renewable_cf=rng.random(horizon), work_nd_wu=10.0)
    due = np.zeros(horizon)
    due[-1] = 500.0
    state = PlantState(df_due_cum_wu=due, df_available_cum_wu=np.full(horizon, 500.0))
    problem = Problem(site, horizon, SolverOptions(time_limit_s=1e-6), demand_response=False)
    result = problem.solve(inputs, state)
    assert result.formulation is Formulation.EXACT
    assert result.status in (SolveStatus.NO_SOLUTION, SolveStatus.FEASIBLE)
    assert result.status.has_plan == (result.plan is not None)


def test_solver_time_out_in_the_loop_is_handled(
    case: tuple[Scenario, SiteExogenous], caplog: pytest.LogCaptureFixture
) -> None:
    policy = _mpc(case, time_limit_s=1e-6)
    with caplog.at_level(logging.WARNING):
        result = simulate(case[1], policy)
    check_invariants(result)
    k = result.kpis
    sources = result.ledger["decision_source"]
    assert k["fallbacks_total"] == int(sources.str.startswith("fallback").sum())
    assert k["fallbacks_total"] > 0
    assert any("kTimeLimit" in r.getMessage() for r in caplog.records)


class NanSometimes(BaseForecaster):
    """Wraps a forecaster; every third point forecast is all NaN."""

    def __init__(self, inner: BaseForecaster) -> None:
        super().__init__()
        self.inner = inner
        self.name = f"nan-sometimes[{inner.name}]"
        self.calls = 0

    @property
    def cutoff(self) -> pd.Timestamp | None:
        return self.inner.cutoff

    def update_values(self, first: pd.Timestamp, values: np.ndarray) -> NanSometimes:
        self.inner.update_values(first, values)
        return self

    def update(self, new_observations: pd.Series) -> NanSometimes:
        self.inner.update(new_observations)
        return self

    def predict_values(self, issue_time: pd.Timestamp | str, steps: int) -> np.ndarray:
        self.calls += 1
        out = self.inner.predict_values(issue_time, steps)
        return out * np.nan if self.calls % 3 == 0 else out

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def test_nan_forecast_is_counted_and_the_run_completes(
    case: tuple[Scenario, SiteExogenous], caplog: pytest.LogCaptureFixture
) -> None:
    exo = case[1]
    policy = _mpc(case)
    forecasters = policy.forecasts.forecasters
    forecasters[PRICE] = NanSometimes(forecasters[PRICE])
    with caplog.at_level(logging.WARNING, logger="mpc_dc.control.forecasting"):
        result = simulate(exo, policy)
    check_invariants(result)
    assert result.kpis["faults"]["nan_forecast"] == exo.n_steps // 3
    assert sum(f"non-finite {PRICE} forecast" in r.getMessage()
               for r in caplog.records) == exo.n_steps // 3
    assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-6)


def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise ENOSPC


def test_full_disk_while_writing_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--days", "0.25", "--controller", "baseline", "--no-plots", "--out",
            str(out)]
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _disk_full)
    assert cli_main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert err == (f"mpc-dc: error: {out}: could not write (No space left on device); "
                   "nothing was written and earlier results are intact")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_full_disk_keeps_the_previous_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--days", "0.25", "--controller", "baseline", "--no-plots", "--out",
            str(out)]
    assert cli_main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(Path, "write_text", _disk_full)
    assert cli_main([*argv, "--overwrite"]) == 3
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob("*.tmp-*"))


def test_full_disk_while_writing_sweep_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    base = example_path("rcdc_default").as_posix()
    path.write_text(f'[sweep]\nbase = "{base}"\n'
                    'list = [{"run.days" = 1, "run.history_days" = 7, '
                    '"controller.kind" = "baseline"}]\n'
                    '[sweep.grid]\n"site.campuses[0].other_it.deferrable_share" = [0.2, 0.5]\n',
                    encoding="utf-8")
    out = tmp_path / "out"
    run_sweep(load_sweep(path), out)
    before = (out / "results.parquet").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _disk_full)
    assert cli_main(["sweep", str(path), "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mpc-dc: error: {out / 'results.parquet'}: could not write (No space left "
                   "on device); nothing was written and earlier results are intact"]
    assert (out / "results.parquet").read_bytes() == before
    assert not list(out.rglob("*.tmp-*")) and not list(out.glob(".*.tmp-*"))


# ----------------------------------------------------------------------------- injected faults


WIND = "wind"
"""The one GPU campus of :func:`tiny` (with other IT and wind); ``city`` has neither."""


def tiny(**overrides: Any) -> Scenario:
    """The combined site for 6 h (24 steps, a 6-h horizon), inference at ``wind`` only."""
    return combined(**{"run.days": 0.25, "site.campuses[city].gpus": 0,
                       "workload.requests.rate_multiplier": 12.0, **overrides})


@pytest.fixture(scope="module")
def tiny_case() -> tuple[Scenario, SiteExogenous]:
    return prepare(tiny())


@dataclass
class Faulted:
    """A run with faults and what its MPC saw at each step."""

    result: RunResult
    policy: MpcPolicy
    exo: SiteExogenous
    inputs: dict[int, HorizonInputs] = field(default_factory=dict)
    forecasts: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def kpis(self) -> dict[str, Any]:
        return self.result.kpis

    @property
    def n(self) -> int:
        return self.exo.n_steps


def run_faulted(case: tuple[Scenario, SiteExogenous], spec: FaultSpec | None,
                injector: FaultInjector | None = None, seed: int | None = None) -> Faulted:
    """Run the case's MPC with ``spec`` (or the given injector), as the runner does,
    recording the horizon inputs and point forecasts of every step."""
    scenario, exo = case
    if spec is not None:
        scenario = replace(scenario, faults=spec,
                           run=replace(scenario.run, seed=scenario.run.seed if seed is None
                                       else seed))
        injector = fault_injector(scenario, exo)
    if injector is not None:
        exo = injector.announce(exo)
    policy = build_policy(scenario, exo, injector)
    assert isinstance(policy, MpcPolicy)
    out = Faulted(None, policy, exo)  # type: ignore[arg-type]
    predict, horizon = policy.forecasts.predict, policy.horizon_inputs

    def spy_predict(time: pd.Timestamp, steps: int, only: Any = None) -> dict[str, np.ndarray]:
        got = predict(time, steps, only)
        out.forecasts[int((time - exo.run_start) // STEP)] = {k: v.copy() for k, v in got.items()}
        return got

    def spy_horizon(obs: Any) -> tuple[HorizonInputs, PlantState]:
        got = horizon(obs)
        out.inputs[obs.step] = got[0]
        return got

    policy.forecasts.predict = spy_predict  # type: ignore[method-assign]
    policy.horizon_inputs = spy_horizon  # type: ignore[method-assign]
    out.result = simulate(exo, policy, serving=scenario.serving.config(), faults=injector)
    return out


@pytest.fixture(scope="module")
def fault_free(tiny_case: tuple[Scenario, SiteExogenous]) -> Faulted:
    return run_faulted(tiny_case, None)


def _marked(result: RunResult, fault: str) -> pd.Series:
    """Ledger rows (interval, campus) with ``fault`` active."""
    active = result.ledger["faults_active"].str.split(";")
    return active.map(lambda names: fault in names)


def _only(kpis: dict[str, Any], **events: int) -> None:
    """The KPIs count exactly ``events`` injected, every other class 0."""
    assert kpis["faults_injected"] == {c: events.get(c, 0) for c in FAULT_CLASSES}
    assert kpis["faults_injected_total"] == sum(events.values())


def test_no_rate_no_injector(tiny_case: tuple[Scenario, SiteExogenous]) -> None:
    assert fault_injector(tiny_case[0], tiny_case[1]) is None
    assert not FaultSpec().active and FaultSpec(dr_late=0.5).active


def test_rate_zero_reproduces_the_fault_free_run_to_the_cent(
        tiny_case: tuple[Scenario, SiteExogenous], fault_free: Faulted) -> None:
    """An injector with every rate 0 in every hook: the same run, cent for cent."""
    scenario, exo = tiny_case
    zero = run_faulted(tiny_case, None, FaultInjector(FaultSpec(), exo, scenario.run.seed))
    assert round(zero.kpis["cost_usd"], 2) == round(fault_free.kpis["cost_usd"], 2)
    assert zero.kpis["cost_usd"] == fault_free.kpis["cost_usd"]
    pd.testing.assert_frame_equal(zero.result.ledger.drop(columns="faults_active"),
                                  fault_free.result.ledger)
    assert (zero.result.ledger["faults_active"] == "").all()
    _only(zero.kpis)
    assert zero.kpis["fallbacks"] == fault_free.kpis["fallbacks"] == {}


def test_main_solve_faults_end_in_the_lp_fallback(
        tiny_case: tuple[Scenario, SiteExogenous], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mpc_dc.control.mpc"):
        run = run_faulted(tiny_case, FaultSpec(main_solve=1.0))
    n, k = run.n, run.kpis
    _only(k, main_solve=n)
    assert k["fault_intervals"]["main_solve"] == n
    assert k["faults"]["solver_exception"] == n
    assert k["fallbacks"] == {"lp_repair": n} == k["fallbacks_in_fault_intervals"]
    assert (run.result.ledger["decision_source"] == "fallback:lp_repair").all()
    assert _marked(run.result, "main_solve").all()
    assert sum("injected fault 'main_solve'" in r.getMessage() for r in caplog.records) == n


def test_fallback_solve_faults_reach_the_rule(
        tiny_case: tuple[Scenario, SiteExogenous], fault_free: Faulted) -> None:
    run = run_faulted(tiny_case, FaultSpec(main_solve=1.0, fallback_solve=1.0))
    n, k = run.n, run.kpis
    _only(k, main_solve=n, fallback_solve=n)
    assert k["fallbacks"] == {"rule": n} == k["fallbacks_in_fault_intervals"]
    assert (run.result.ledger["decision_source"] == "fallback:rule").all()
    assert k["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-6)
    # The fallback LP is the opportunity of its faults: without a failing main solve
    # there is none, and the run is the fault-free one.
    alone = run_faulted(tiny_case, FaultSpec(fallback_solve=1.0))
    _only(alone.kpis)
    assert alone.kpis["cost_usd"] == fault_free.kpis["cost_usd"]


@pytest.mark.parametrize(("feed", "channel"), [
    ("price_feed", column("price_usd_per_mwh", WIND)),
    ("renewable_feed", column("renewable_cf", WIND)),
    ("telemetry_feed", column("workload_wu", WIND)),
])
def test_feed_outage_withholds_values_and_forecasts_hold_the_last(
        tiny_case: tuple[Scenario, SiteExogenous], fault_free: Faulted, feed: str,
        channel: str) -> None:
    """A feed down for the whole run (outages of 4 at rate 1): none of its values reaches
    the policy, the persistence forecast is its last published value, each interval
    its channels are flagged as held."""
    shape: dict[str, Any] = {feed: 1.0, "feed_outage_intervals": 4}
    run = run_faulted(tiny_case, FaultSpec(**shape))
    exo, n, k = run.exo, run.n, run.kpis
    _only(k, **{feed: -(-n // 4)})
    assert k["fault_intervals"][feed] == n and _marked(run.result, feed).all()
    prefixes = tuple(f"{q}[" for q in FEEDS[feed])
    published = sum(key.startswith(prefixes) for s in range(n)
                    for _, values in exo.published_during(s) for key in values)
    assert published > 0
    assert k["fault_effects"]["feed_values_withheld"] == published
    last = float(exo.published_history(channel).dropna().iloc[-1])
    for step in range(n):
        np.testing.assert_array_equal(run.forecasts[step][channel], last)
    assert k["faults"]["held_feed_value"] > 0
    assert "held_feed_value" not in fault_free.kpis["faults"]


def test_forecaster_exceptions_fall_back_to_the_last_published_value(
        tiny_case: tuple[Scenario, SiteExogenous], monkeypatch: pytest.MonkeyPatch) -> None:
    gate = MpcPolicy.confident_curtailment
    asked = [0]

    def counted(self: MpcPolicy, obs: Any, decision: Any) -> Any:
        # the price quantile is asked for each campus whose plan curtails its renewable
        asked[0] += sum(decision.campus(c.name).curtailed_mw > 0 and c.renewable is not None
                        for c in self.site.campuses)
        return gate(self, obs, decision)

    monkeypatch.setattr(MpcPolicy, "confident_curtailment", counted)
    run = run_faulted(tiny_case, FaultSpec(forecaster_exception=1.0))
    exo, n, k = run.exo, run.n, run.kpis
    site = exo.site
    K, M = len(channels(site)), len(site.models)
    n_other = sum(c.other_it is not None for c in site.campuses)
    _only(k, forecaster_exception=n * K)
    # Every point forecast, every demand quantile, every quantile of the
    # non-deferrable work (controller.work_nd_quantile) and the price quantile of every
    # planned curtailment (controller.curtail_confidence; one on these held values
    # since the plan prices congestion, none before) raised, and was caught.
    assert k["faults"]["forecaster_raised"] == n * (K + M + n_other) + asked[0]
    for step in (0, 5, n - 1):
        for name in channels(site):
            seen = exo.frame[name].loc[:exo.last_published(name, step)].dropna()
            np.testing.assert_array_equal(run.forecasts[step][name], float(seen.iloc[-1]))


def test_stale_forecasts_reuse_the_previous_forecast(
        tiny_case: tuple[Scenario, SiteExogenous], fault_free: Faulted) -> None:
    run = run_faulted(tiny_case, FaultSpec(stale_forecast=1.0))
    n, k = run.n, run.kpis
    site = run.exo.site
    _only(k, stale_forecast=n - 1)  # never at the first interval: nothing to reuse
    # Point forecasts, demand quantiles and the non-deferrable work's quantiles.
    other_it = sum(c.other_it is not None for c in site.campuses)
    assert k["faults"]["stale_forecast_used"] == (n - 1) * (len(channels(site))
                                                            + len(site.models) + other_it)
    first = fault_free.forecasts[0]
    for step in (1, 7, n - 1):
        for name, values in run.forecasts[step].items():
            moved = first[name][step:]
            np.testing.assert_array_equal(values[: moved.size], moved)
            np.testing.assert_array_equal(values[moved.size:], first[name][-1])
    assert run.forecasts[0].keys() == first.keys()


def test_gpu_loss_caps_instances_and_is_seen_one_interval_later(
        tiny_case: tuple[Scenario, SiteExogenous], fault_free: Faulted) -> None:
    """15 of 16 GPUs lost for the whole run (losses of 4 intervals at rate 1): fewer
    than the fault-free run ever uses, so the cap binds."""
    spec = FaultSpec(gpu_loss=1.0, gpu_loss_fraction=0.9375, gpu_loss_intervals=4)
    run = run_faulted(tiny_case, spec)
    n, k, site = run.n, run.kpis, run.exo.site
    _only(k, gpu_loss=n // 4)
    assert k["fault_intervals"]["gpu_loss"] == n

    def gpus(result: RunResult) -> np.ndarray:
        led = result.campus_ledger(WIND)
        return np.sum([led[f"instances[{m}/{q}]"].to_numpy()
                       * site.row((WIND, m, q)).gpus_per_instance for (_, m, q) in site.pools],
                      axis=0)

    assert gpus(fault_free.result).max() > 1
    assert gpus(run.result).max() <= 1
    assert k["fault_effects"]["instances_capped"] > 0
    wind = site.campus_names.index(WIND)
    assert _marked(run.result, "gpu_loss").groupby(level="campus").sum().to_dict() == {
        WIND: n, "city": 0}
    # The controller plans on the GPUs it has observed: all 16 at the first interval,
    # the 1 left from the second on.
    g0 = run.inputs[0].gpus_available
    assert g0 is None or g0[wind, 0] == 16
    for step in range(1, n):
        g = run.inputs[step].gpus_available
        assert g is not None and (g[wind] == 1).all()


def test_instance_crashes_requeue_requests_and_conserve_them(
        tiny_case: tuple[Scenario, SiteExogenous]) -> None:
    run = run_faulted(tiny_case, FaultSpec(instance_crash=1.0))
    n, k = run.n, run.kpis
    # One crash per interval from the second on (at the first, every instance is
    # still loading); a replacement loads within the interval.
    _only(k, instance_crash=n - 1)
    assert k["fault_effects"]["instances_crashed"] == n - 1
    assert _marked(run.result, "instance_crash").sum() == n - 1
    assert k["fault_effects"]["requests_requeued"] > 0
    assert k["tokens_lost"] > 0
    assert k["tokens_lost"] == pytest.approx(k["fault_effects"]["tokens_lost"])
    outcome = run.result.outcome
    assert outcome is not None
    offered = float(outcome.requests.response_tokens[outcome.status >= 0].sum())
    assert k["tokens_served"] - k["tokens_lost"] + k["tokens_unserved"] == pytest.approx(offered)
    assert sum(k["requests_by_status"].values()) == k["requests"]


def test_kill_requeues_in_flight_requests_and_conserves_tokens() -> None:
    """Two one-slot instances (prefill 100 tokens/s, 1 s per token): requests 0 and 1
    run from 0 s, request 2 (1 s) waits. At 900 s request 0's instance dies: its 900.5
    tokens are lost and it starts again at once on a replacement."""
    key = ("a", "m", "BF16")
    spec = PoolSpec(key, 1, 100.0, 1.0, 100.0, 5.0, 0.0, 1.0)
    req = RequestArrays.from_arrays(np.array([0.0, 0.0, 1.0]), np.zeros(3),
                                    np.full(3, 50), np.full(3, 1000), ("m",))
    server = RequestLevelServer([spec], req, 4)
    led = [server.run_interval(0, [2], {key: 1.0})]
    killed = server.kill(0, 900.0, 1, kinds=("ready",), pick=0.0)
    assert killed == Killed(instances=1, loading=0, requests=1, tokens_lost=900.5)
    assert np.isnan(server.start[0]) and server.committed_instances()[0] == 1
    led += [server.run_interval(s, [2], {key: 1.0}) for s in (1, 2, 3)]
    outcome = server.outcome()
    assert (outcome.status == FINISHED).all()
    np.testing.assert_allclose(outcome.first_token, [900.5, 0.5, 1000.0])
    np.testing.assert_allclose(outcome.finish, [1899.5, 999.5, 1999.0])
    ledger_tokens = sum(float(s.tokens_decoded.sum()) for s in led)
    assert ledger_tokens == pytest.approx(3000.0 + 900.5)
    assert outcome.tokens_lost is not None
    np.testing.assert_allclose(outcome.tokens_lost, np.array([900.5]))
    outcome.check(ledger_active_energy_j=sum(float(s.active_energy_j.sum()) for s in led))


def test_fluid_kill_removes_capacity() -> None:
    key = ("a", "m", "BF16")
    spec = PoolSpec(key, 1, 100.0, 1.0, 100.0, 5.0, 60.0, 1.0)
    agg = {k: np.ones((3, 1)) for k in ("requests", "request_tokens", "response_tokens")}
    server = FluidServer([spec], ("m",), agg, 3)
    server.run_interval(0, [3], {key: 1.0})
    assert server.ready_instances(900.0).tolist() == [3]
    assert server.kill(0, 900.0, 1, kinds=("ready",)) == Killed(instances=1)
    assert server.committed_instances().tolist() == [2]
    stats = server.run_interval(1, [3], {key: 1.0})
    # The replacement loads for 60 s: 2 × 900 + 840 ready instance-seconds.
    assert stats.ready_instance_s[0] == pytest.approx(2 * 900.0 + 840.0)


EVENT = range(12, 16)
"""Run steps of the DR event of :func:`dr_case` (03:00-04:00 local)."""


@pytest.fixture(scope="module")
def dr_case(tiny_case: tuple[Scenario, SiteExogenous]) -> tuple[Scenario, SiteExogenous]:
    """:func:`tiny` with a DR event in :data:`EVENT` at both campuses, baseline 0.05 MW
    (``[dr] days`` are whole days; a 6-h run gets its event from the data, and its
    baseline: ``s1_plan``, the frame's column)."""
    scenario, exo = tiny_case
    site = scenario.site
    site = replace(site, dr=replace(site.dr, baseline="s1_plan"))
    scenario = replace(scenario, site=site)
    exo = replace(exo, site=site)
    frame = exo.frame.copy()
    rows = np.zeros(len(frame))
    rows[exo.history_steps + EVENT.start: exo.history_steps + EVENT.stop] = 1.0
    for c in scenario.site.campus_names:
        frame[column("dr_event", c)] = rows
        frame[column("dr_baseline_mw", c)] = 0.05 * rows
    return scenario, replace(exo, frame=frame)


def test_late_dr_event_is_hidden_until_announced(
        dr_case: tuple[Scenario, SiteExogenous]) -> None:
    run = run_faulted(dr_case, FaultSpec(dr_late=1.0, dr_late_notice_h=1.0))
    k = run.kpis
    _only(k, dr_late=2)  # one event at each of the two campuses
    marked = _marked(run.result, "dr_late")
    assert marked.groupby(level="campus").sum().to_dict() == {WIND: 4, "city": 4}
    assert sorted(run.result.ledger["step"][marked].unique()) == list(EVENT)
    for step in range(0, 8):  # the horizon (24 steps) reaches the event, not announced
        inputs = run.inputs[step]
        assert inputs.dr_event is not None and not inputs.dr_event.any()
        assert inputs.dr_baseline_mw is not None and not inputs.dr_baseline_mw.any()
    for step in range(8, 16):  # announced an hour ahead
        inputs = run.inputs[step]
        assert inputs.dr_event is not None
        assert (inputs.dr_event[:, max(EVENT.start - step, 0): EVENT.stop - step] == 1).all()
    # The meter settles the event all the same.
    assert run.result.ledger["dr_event"].sum() == 8


def test_every_class_at_once_completes_and_the_ledger_matches_the_kpis(
        dr_case: tuple[Scenario, SiteExogenous]) -> None:
    # Two DR events: late at rate 1, so that every class has faults.
    spec = FaultSpec(**{**dict.fromkeys(FAULT_CLASSES, 0.3), "dr_late": 1.0},
                     feed_outage_intervals=3, gpu_loss_intervals=3, gpu_loss_fraction=0.5)
    run = run_faulted(dr_case, spec)
    k = run.kpis
    assert all(k["faults_injected"][c] > 0 for c in FAULT_CLASSES), k["faults_injected"]
    assert k["fallbacks"].get("rule", 0) > 0
    assert k["fallbacks_in_fault_intervals"] == k["fallbacks"]
    led = run.result.ledger
    for fault in FAULT_CLASSES:
        intervals = led["step"][_marked(run.result, fault)].nunique()
        assert intervals == k["fault_intervals"][fault]
        if fault != "forecaster_exception":  # counted per (interval, channel)
            assert k["faults_injected"][fault] <= intervals
    # Reproducible from run.seed; another seed draws other faults.
    again = run_faulted(dr_case, spec)
    pd.testing.assert_frame_equal(again.result.ledger, led)
    other = run_faulted(dr_case, spec, seed=dr_case[0].run.seed + 1)
    assert not other.result.ledger["faults_active"].equals(led["faults_active"])
