"""The two-stage scenario problem (mpc_dc/control/stochastic.py) on hand-solved instances,
and scenario paths from quantile forecasts.

Figures as in tests/test_problem_combined.py: Δ = 0.25 h, PUE 1, other IT with the
linear processing function F(P) = P (W WU in an interval need 4 W MW), no export.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpc_dc.control.stochastic import SAMPLE_LEVELS, ScenarioProblem, sample_paths
from mpc_dc.problem import HorizonInputs, PlantState, SolverOptions
from mpc_dc.site.config import Site
from tests.test_problem_combined import _campus

SITE = Site((_campus(gpus=0, it_mw=10.0, nameplate_mw=None, export_mw=0.0),))
# 0.5 WU of deferrable work (2 MW for one interval, 0.5 MWh) released now, due by the
# end of interval 1: run now at 50 $/MWh (25 $) or in interval 1 at its price.
STATE = PlantState(df_due_cum_wu=np.array([[0.0, 0.5]]),
                   df_available_cum_wu=np.array([[0.5, 0.5]]))


def _horizon(later_price: float) -> tuple[HorizonInputs, PlantState]:
    return HorizonInputs.build(SITE, 2, price_usd_per_mwh=[[50.0, later_price]]), STATE


def test_one_scenario_waits_for_the_cheaper_forecast_price() -> None:
    """S = 1 on the point forecast (40 $/MWh later): the work waits, 0.5 · 40 = 20 $."""
    result = ScenarioProblem(SITE, 2, SolverOptions(), 1).solve([_horizon(40.0)])
    assert result.ok and result.plan is not None
    assert result.plan.work_df_wu[0].tolist() == pytest.approx([0.0, 0.5], abs=1e-9)
    assert result.expected_cost_usd == pytest.approx(20.0, abs=1e-6)


def test_the_first_interval_is_decided_before_the_scenario_is_known() -> None:
    """Later prices 10 or 100 $/MWh, equally likely: waiting costs 0.5 · 55 = 27.5 $ in
    expectation, running now 25 $ in both, so the work runs now in every scenario. A
    plan that knew the scenario (no non-anticipativity) would wait in the first one
    (5 $) and run now in the second: 15 $, and scenario 0's plan would wait."""
    result = ScenarioProblem(SITE, 2, SolverOptions(), 2).solve(
        [_horizon(10.0), _horizon(100.0)])
    assert result.ok and result.plan is not None
    assert result.plan.work_df_wu[0].tolist() == pytest.approx([0.5, 0.0], abs=1e-9)
    assert result.plan.import_mw[0, 0] == pytest.approx(2.0, abs=1e-9)
    assert result.expected_cost_usd == pytest.approx(25.0, abs=1e-6)


def test_a_wrong_number_of_scenarios_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 2 scenario horizons, got 1"):
        ScenarioProblem(SITE, 2, SolverOptions(), 2).solve([_horizon(10.0)])


def test_scenario_paths_are_quantile_paths() -> None:
    """Per lead, the quantiles 0..6 · (lead + 1); a path of level u follows that
    quantile at every lead (interpolated between levels, held beyond them), and
    ``first`` replaces the first interval."""
    quantiles = np.outer(np.arange(1, 4), np.arange(len(SAMPLE_LEVELS)))  # (3 leads, L)
    u = np.array([0.5, 0.05, 0.0, 1.0, 0.3])
    paths = sample_paths(quantiles, SAMPLE_LEVELS, u)
    assert paths.shape == (5, 3)
    median = SAMPLE_LEVELS.index(0.5)
    assert paths[0].tolist() == pytest.approx(median * np.arange(1, 4))
    assert paths[1].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert paths[2].tolist() == paths[1].tolist()
    assert paths[3].tolist() == pytest.approx(6 * np.arange(1, 4))
    # 0.3 lies 1/5 of the way from level 0.25 (index 2) to 0.5 (index 3).
    assert paths[4].tolist() == pytest.approx(2.2 * np.arange(1, 4))
    crossing = quantiles[:, ::-1]  # a forecaster's crossing quantiles are sorted first
    assert np.array_equal(sample_paths(crossing, SAMPLE_LEVELS, u), paths)
    assert sample_paths(quantiles, SAMPLE_LEVELS, u, first=-1.0)[:, 0].tolist() == [-1.0] * 5
