"""The resident HiGHS model's basis as :mod:`mpc_dc.problem` reads it.

:meth:`HighsFastPath.current_basis` rebuilds the basis from HiGHS's list of basic
variables and the column values instead of reading HiGHS's per-entry enum lists
(3 ms on the 96-step RCDC LP); it must agree with those lists (:func:`_read_basis`)
wherever a basis is determined: the same basic set, the same side for every
nonbasic column with distinct bounds, the same side for every nonbasic inequality
row (equality rows and fixed columns sit at both bounds at once).
"""

from __future__ import annotations

import highspy
import numpy as np
import pytest

from mpc_dc.benchmarking import rcdc_receding_cases, rcdc_site
from mpc_dc.fastpath import TINY_COST, HighsFastPath, without_tiny_costs
from mpc_dc.problem import Problem
from tests.test_problem_regression import fleet_inputs, fleet_site


def _read_basis(fast: HighsFastPath) -> tuple[np.ndarray, np.ndarray] | None:
    """The basis as HiGHS reports it: its per-entry status lists (slow, exact)."""
    basis = fast._highs.getBasis()
    if not basis.valid:
        return None
    col = np.fromiter(map(int, basis.col_status), dtype=np.int8, count=fast.n_cols)
    row = np.fromiter(map(int, basis.row_status), dtype=np.int8, count=fast.n_rows)
    return col, row


def _agree(fast: HighsFastPath) -> None:
    read = _read_basis(fast)
    built = fast.current_basis()
    assert read is not None and built is not None
    np.testing.assert_array_equal(built[0] == 1, read[0] == 1)
    np.testing.assert_array_equal(built[1] == 1, read[1] == 1)
    lower, upper = fast._col_lower, fast._col_upper
    free = (built[0] != 1) & (lower < upper)
    np.testing.assert_array_equal(built[0][free], read[0][free])
    inequality = (built[1] != 1) & (np.arange(fast.n_rows) >= fast._n_eq)
    np.testing.assert_array_equal(built[1][inequality], read[1][inequality])


@pytest.mark.parametrize("market", ["wholesale", "retail"])
def test_current_basis_is_the_basis_highs_holds_rcdc(market: str) -> None:
    prob = Problem(rcdc_site(market), 96, demand_response=False)
    for inputs, state in rcdc_receding_cases(96, n=3, seed=2):
        prob.solve(inputs, state)
        _agree(prob.model(False).fast)


def test_current_basis_is_the_basis_highs_holds_fleet() -> None:
    prob = Problem(fleet_site("S6"), 12)
    prob.solve(fleet_inputs(12, seed=1, dr=True), None, "lp")
    _agree(prob.model(False).fast)


def test_no_basis_before_a_solve() -> None:
    prob = Problem(fleet_site("S4"), 4)
    assert prob.model(False).fast.current_basis() is None


def test_tiny_cost_is_the_tolerance_highs_prices_to() -> None:
    """The costs zeroed before a run are those within HiGHS's own dual feasibility
    tolerance (tests/test_problem_properties.py::
    test_exact_form_ignores_an_export_price_below_highs_tolerance shows why), no more."""
    value = highspy.Highs().getOptionValue("dual_feasibility_tolerance")
    highs_tolerance = float(value[1] if isinstance(value, tuple) else value)
    assert highs_tolerance == TINY_COST
    costs = np.array([0.0, 5e-40, -1e-7, 1e-7, 1.01e-7, -2e-7, 12.5])
    np.testing.assert_array_equal(without_tiny_costs(costs),
                                  [0.0, 0.0, 0.0, 0.0, 1.01e-7, -2e-7, 12.5])
