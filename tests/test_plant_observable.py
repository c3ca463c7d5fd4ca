"""The plant decides on no price that is not published yet (DESIGN.md §8).

An hourly price is published at the end of its hour, so at 16:00 nobody knows the
average of 16:00–17:00. The plant's price-driven choices (spill or export a surplus;
curtail the renewable and import instead) must be made on what the controller knew
when it committed the interval: here its committed export price and its committed
curtailment, never the interval's realized price. The meter settles at the realized
price. On the plant of 3e6e9d5^ (``site.campuses.grid.curtail_on_price``, the surplus
exported on the realized export price) these tests fail: it curtailed its wind and
spilled its surplus in the hour whose price was not published yet.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mpc_dc.control.forecasting import ChannelForecasts, make_forecasters
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.runner import prepare, solver_options
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.plant import RECORD_COLUMNS
from mpc_dc.sim.policy import CampusDecision, Decision, Observation
from mpc_dc.site.config import Campus, Grid, OtherIT, ProcessingFunction, Renewable, Site
from tests.loop_cases import first_unpublished, rcdc_short
from tests.scripted_policy import Scripted
from traces.grid import STEP, Publication

W = "W"
START = pd.Timestamp("2022-04-10T16:00Z")
HISTORY, STEPS = 8, 8
HOURLY = Publication(source_step=pd.Timedelta("1h"))
PHYSICAL = [c for c in RECORD_COLUMNS if not c.startswith("planned_")]
"""The plant's flows and set-points (what it decided), not the plan's reported flows."""


def hourly_case(last_hour_price: float) -> SiteExogenous:
    """One campus: 4 MW of non-deferrable other IT, 10 MW of wind, export up to 5 MW;
    an hourly price (published at the end of its hour) of 40 $/MWh until the run's
    second hour, ``last_hour_price`` in it. Wind: 8 MW in the second hour's first half
    (a 4 MW surplus), 3 MW in its second half (a 1 MW deficit)."""
    campus = Campus(
        name=W, price_node="F", pue=1.0,
        other_it=OtherIT(it_capacity_mw=10.0, deferrable_share=0.0,
                         processing=ProcessingFunction((0.0, 1.0), (0.0, 1.0))),
        renewable=Renewable(nameplate_mw=10.0),
        grid=Grid(import_limit_mw=20.0, export_limit_mw=5.0))
    site = Site(campuses=(campus,))
    index = pd.date_range(START - HISTORY * STEP, periods=HISTORY + STEPS, freq="15min",
                          name="interval_start_utc")
    price = np.full(len(index), 40.0)
    price[HISTORY + 4:] = last_hour_price
    cf = np.full(len(index), 0.5)
    cf[HISTORY + 4: HISTORY + 6] = 0.8
    cf[HISTORY + 6:] = 0.3
    frame = pd.DataFrame({
        column("price_usd_per_mwh", W): price,
        column("carbon_gco2_per_kwh", W): 300.0,
        column("renewable_cf", W): cf,
        column("workload_wu", W): 1.0,
    }, index=index)
    return SiteExogenous(site, frame, START, STEPS, None,
                         publication={column("price_usd_per_mwh", W): HOURLY})


def run(exo: SiteExogenous, decide: Scripted | None = None) -> pd.DataFrame:
    """The campus ledger of ``exo`` under ``decide`` (default: business as usual, a
    decision without a plan or a price)."""
    policy = decide or Scripted(lambda obs: Decision({W: CampusDecision()}))
    return simulate(exo, policy).campus_ledger(W)


def test_the_hour_not_published_yet_does_not_move_the_plant() -> None:
    """The second hour's price is 40 or −30 $/MWh; at every decision inside it the last
    published price is the first hour's 40 $/MWh. What the plant does is the same in
    both runs (the surplus exported, all the wind used); what it is paid is not."""
    positive, negative = run(hourly_case(40.0)), run(hourly_case(-30.0))
    pd.testing.assert_frame_equal(negative[PHYSICAL], positive[PHYSICAL])
    second = slice(4, 8)
    # Not curtailed on the unpublished negative price, although the realized price
    # would have paid the campus to import rather than use its wind.
    assert (negative["curtailed_mw"].iloc[6:] == 0.0).all()
    assert negative["import_mw"].iloc[6:].to_numpy() == pytest.approx([1.0, 1.0])
    # The surplus exported on the last published (positive) price, not spilled.
    assert negative["export_mw"].iloc[4:6].to_numpy() == pytest.approx([4.0, 4.0])
    # Settled at the realized price: the export at −30 $/MWh is a negative revenue.
    assert negative["export_revenue_usd"].iloc[4:6].to_numpy() == pytest.approx(
        [-30.0 * 4.0 * 0.25] * 2)
    assert positive["export_revenue_usd"].iloc[4:6].to_numpy() == pytest.approx(
        [40.0 * 4.0 * 0.25] * 2)
    assert not np.allclose(negative["energy_import_usd"].iloc[second],
                           positive["energy_import_usd"].iloc[second])


@pytest.mark.parametrize(("realized", "committed", "exported"),
                         [(-30.0, 5.0, 4.0), (40.0, -5.0, 0.0), (40.0, math.nan, 4.0)])
def test_a_surplus_follows_the_committed_export_price(realized: float, committed: float,
                                                      exported: float) -> None:
    """The surplus of the second hour's first half (4 MW) is exported where the export
    price the decision was committed on is positive, spilled where it is not, whatever
    the realized price; without a committed price, on the last published one (40)."""
    def decide(obs: Observation) -> Decision:
        price = committed if obs.step >= 4 else math.nan
        return Decision({W: CampusDecision(export_price_usd_per_mwh=price)})

    led = run(hourly_case(realized), Scripted(decide))
    assert led["export_mw"].iloc[4:6].to_numpy() == pytest.approx([exported] * 2)
    assert led["curtailed_mw"].iloc[4:6].to_numpy() == pytest.approx([4.0 - exported] * 2)
    assert led["export_revenue_usd"].iloc[4:6].to_numpy() == pytest.approx(
        [realized * exported * 0.25] * 2)


def flipped_prices(exo: SiteExogenous, step: int) -> SiteExogenous:
    """``exo`` with every price not yet published at the start of ``step`` turned
    negative (``−|p| − 10`` $/MWh); nothing else changed."""
    frame = exo.frame.copy()
    for c in exo.site.campuses:
        col = column("price_usd_per_mwh", c.name)
        first = first_unpublished(exo, col, step)
        values = frame[col].to_numpy(dtype=float, copy=True)
        values[first:] = -np.abs(values[first:]) - 10.0
        frame[col] = values
    return replace(exo, frame=frame)


def test_no_lookahead_in_the_plant_under_the_mpc() -> None:
    """The RCDC site (wind, export, hourly synthetic prices) under the MPC with the
    daily seasonal naive forecaster: with every price unpublished at an issue time
    (:15, :30, :45) turned negative, what the MPC commits at that time and what the
    plant does in that interval are the same; the settlement is not."""
    scenario, exo = prepare(rcdc_short(1.0, 2))
    options = solver_options(scenario.controller)
    cuts = (29, 50, 71)
    assert [exo.time(k).minute for k in cuts] == [15, 30, 45]

    def result(data: SiteExogenous) -> RunResult:
        policy = MpcPolicy(data, ChannelForecasts(make_forecasters(data, "seasonal_naive_daily")),
                           96, options=options, deadline_margin_steps=4)
        return simulate(data, policy)

    campus = exo.site.campuses[0].name
    clean = result(exo).campus_ledger(campus)
    for cut in cuts:
        dirty = result(flipped_prices(exo, cut)).campus_ledger(campus)
        pd.testing.assert_frame_equal(dirty[PHYSICAL].iloc[: cut + 1],
                                      clean[PHYSICAL].iloc[: cut + 1])
        # The flip is real: the interval is settled at a different price.
        assert dirty["price_usd_per_mwh"].iloc[cut] != clean["price_usd_per_mwh"].iloc[cut]
