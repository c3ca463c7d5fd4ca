"""Faults: a run either completes with the fault logged and counted, or stops with one
clear line and leaves earlier results intact.

* solver exception (the problem's ``solve`` raises) → fallback, counted, logged;
* solver time-out (tiny time limit on a MILP) → a NO_SOLUTION status, handled;
* NaN forecast → counted as fault ``nan_forecast``, the run completes;
* full disk while writing a run or a sweep's tables → one line, exit code 3, no
  partial output, earlier results intact;
* worker killed mid-sweep → ``tests/test_sweep.py::test_killed_sweep_resumes_to_the_same_table``.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters.base import BaseForecaster
from mpc_dc.cli import main as cli_main
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.problem import (
    Formulation,
    HorizonInputs,
    PlantState,
    Problem,
    SolverOptions,
    SolveStatus,
)
from mpc_dc.runner import build_policy, prepare
from mpc_dc.sim.engine import check_invariants, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.scenario import Scenario, controller_variant, example_path
from mpc_dc.sweep import load_sweep, run_sweep
from tests.loop_cases import rcdc_short

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
