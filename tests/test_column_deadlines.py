"""Deadlines and releases inside a coarse column of the multi-resolution horizon.

Site of tests/test_problem_rcdc.py: one campus, other IT 10 MW, PUE 1, F(P) = 1.2 P up
to 5 MW and 6 + 0.8 (P − 5) above [WU/h], so one 15-min interval at 10 MW does
2.5 WU; no non-deferrable work, import limit 20 MW. The horizon's first interval is a
column of its own and the next four one column (``fine_steps=1``,
``coarse_block_steps=4``), as the MPC's horizon beyond its fine part.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpc_dc.problem import Problem, SolverOptions, column_deferrable_bounds
from tests.test_problem_properties import state_of, wholesale
from tests.test_problem_rcdc import plan_of, site

BLOCKED = SolverOptions(fine_steps=1, coarse_block_steps=4)


def solve_blocked(prices: list[float], due: list[float], available: list[float]
                  ) -> np.ndarray:
    """The plan's deferrable work per interval [WU] on the blocked horizon."""
    H = len(prices)
    prob = Problem(site(), H, options=BLOCKED, demand_response=False)
    result = prob.solve(wholesale(np.array(prices), np.zeros(H), np.zeros(H)),
                        state_of(np.array(due), np.array(available)))
    return np.asarray(plan_of(result).work_df_wu)[0]


def test_a_deadline_inside_a_column_counts_no_capacity_after_it() -> None:
    """7.5 WU released at 0, due by the end of interval 2 (inside the column 1-4).

    Intervals 1 and 2 can do 2.5 WU each, so interval 0 (at 100 $/MWh against 10)
    must do the remaining 2.5 WU: at full power. Reading the deadline at the column's
    end (interval 4) let the column's four intervals (10 WU) meet it and left
    interval 0 idle, a plan no schedule can follow.
    """
    work = solve_blocked([100.0, 10.0, 10.0, 10.0, 10.0],
                         due=[0.0, 0.0, 7.5, 7.5, 7.5], available=[7.5] * 5)
    assert work[0] == pytest.approx(2.5, abs=1e-6)
    assert work.sum() == pytest.approx(7.5, abs=1e-6)


def test_a_release_inside_a_column_counts_no_capacity_before_it() -> None:
    """5 WU released at interval 4 (the column 1-4's last), due by the end of 5.

    Only interval 4 of the column can work on it (2.5 WU): interval 5 at 100 $/MWh
    must do the other 2.5 WU. Reading the release at the column's end let the column
    do all 5 WU at 10 $/MWh.
    """
    work = solve_blocked([10.0, 10.0, 10.0, 10.0, 10.0, 100.0],
                         due=[0.0, 0.0, 0.0, 0.0, 0.0, 5.0],
                         available=[0.0, 0.0, 0.0, 0.0, 5.0, 5.0])
    assert work[5] == pytest.approx(2.5, abs=1e-6)
    assert work[1:5].sum() == pytest.approx(2.5, abs=1e-6)


def test_column_bounds_are_the_interval_bounds_on_one_interval_columns() -> None:
    """Without a multi-interval column the bounds are the inputs' own."""
    prob = Problem(site(), 3, options=SolverOptions(fine_steps=3),
                   demand_response=False)
    ctx = prob.model(False).ctx
    due, avail = np.array([[0.0, 1.0, 2.0]]), np.array([[2.0, 2.0, 3.0]])
    got = column_deferrable_bounds(ctx, due, avail, np.full((1, 3), 2.5))
    np.testing.assert_array_equal(got[0], due)
    np.testing.assert_array_equal(got[1], avail)
