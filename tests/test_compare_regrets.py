"""Percentages of the compare table are of costs, never of a net cost with revenue in it.

Hand-made rows in the shape of :func:`mpc_dc.runner.summary_row`, with the figures of
``nyiso_wind_fleet`` (docs/fleet_closed_loop.md, "Acceptance"): perfect foresight
sells more wind than it pays for energy, so its net cost is negative, and the
business-as-usual reference earns a DR reward.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mpc_dc.commands._common import markdown_table
from mpc_dc.commands.compare import COLUMNS, _cell
from mpc_dc.runner import OFFLINE_ROW, PERFECT_ROW, REFERENCE_ROW, with_regrets


def _row(costs: float, revenue: float) -> dict[str, float]:
    """A compare row's cost columns: net = costs − revenue [$]."""
    return {"cost_usd": costs - revenue, "costs_usd": costs, "revenue_usd": revenue}


ROWS = {
    REFERENCE_ROW: _row(1000.0, 40.0),  # no export; a DR reward of 40 $
    OFFLINE_ROW: _row(520.0, 545.0),
    PERFECT_ROW: _row(525.45, 540.46),  # net −15.01 $
    "sarimax": _row(700.0, 368.87),  # net 331.13 $
}


@pytest.fixture
def table() -> pd.DataFrame:
    return with_regrets(pd.DataFrame.from_dict(ROWS, orient="index"))


def test_regret_vs_perfect_is_in_percent_of_perfect_costs(table: pd.DataFrame) -> None:
    # The numerator is of net costs (the 171.59 $ of lost export sales count) ...
    assert table.loc["sarimax", "regret_perfect_usd"] == pytest.approx(331.13 + 15.01)
    # ... the denominator perfect foresight's costs: 346.14 / 525.45, not / −15.01.
    assert table.loc["sarimax", "regret_perfect_pct"] == pytest.approx(
        100.0 * 346.14 / 525.45)
    assert table.loc[PERFECT_ROW, "regret_perfect_pct"] == 0.0
    # A row that sells less and pays less has a positive regret: lost revenue counts.
    assert table.loc[OFFLINE_ROW, "regret_perfect_pct"] == pytest.approx(
        100.0 * (-25.0 + 15.01) / 525.45)


def test_regret_vs_offline_and_savings_are_of_the_reference_costs(
        table: pd.DataFrame) -> None:
    # The reference's net (960 $) is its costs less its DR reward: the base is 1,000 $.
    assert table.loc["sarimax", "regret_usd"] == pytest.approx(331.13 + 25.0)
    assert table.loc["sarimax", "regret_pct"] == pytest.approx(100.0 * 356.13 / 1000.0)
    assert table.loc["sarimax", "savings_pct"] == pytest.approx(100.0 * (960.0 - 331.13)
                                                                / 1000.0)
    # The identity of the docstring: regret % = savings %(offline) − savings %(row).
    pd.testing.assert_series_equal(
        table["regret_pct"], table.loc[OFFLINE_ROW, "savings_pct"] - table["savings_pct"],
        check_names=False)


def test_no_percentage_of_costs_that_are_not_positive() -> None:
    rows = dict(ROWS, **{PERFECT_ROW: _row(0.0, 15.01)})
    table = with_regrets(pd.DataFrame.from_dict(rows, orient="index"))
    assert table["regret_perfect_pct"].isna().all()
    assert table.loc["sarimax", "regret_perfect_usd"] == pytest.approx(346.14)


def test_the_printed_table_names_each_denominator(table: pd.DataFrame) -> None:
    text = markdown_table(table, "controller", COLUMNS, _cell)
    header = text.splitlines()[0]
    for name in ("net cost [$]", "costs [$]", "revenue [$]", "regret vs perfect [$]",
                 "regret vs perfect [% of perfect's costs]",
                 "regret vs offline [% of reference's costs]"):
        assert f"| {name} |" in header
    sarimax = next(line for line in text.splitlines() if line.startswith("| sarimax |"))
    assert f"| {100.0 * 346.14 / 525.45:.2f} |" in sarimax
