"""The MPC's hedges against forecast error (issue 16): a curtailment committed only when
the price is negative with confidence, the non-deferrable work planned at a quantile,
the deferrable work planned on the price's distribution rather than its point forecast.

The site is ``rcdc_default.toml`` (one campus: 100 MW other IT, 150 MW wind, a 200-MW
connection, wholesale) on synthetic data; the forecasts of the price (and, for the
reserve, the workload) are pinned so that the expected decisions follow by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from mpc_dc.control.forecasting import ChannelForecasts, make_forecasters
from mpc_dc.control.mpc import MpcPolicy, start_observation, stratified_levels
from mpc_dc.runner import prepare
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.scenario import with_overrides
from tests.loop_cases import rcdc_short
from traces.errors import ConfigError

C = "rcdc"
PRICE = column("price_usd_per_mwh", C)
WORK = column("workload_wu", C)
CF = column("renewable_cf", C)


@pytest.fixture(scope="module")
def exo() -> SiteExogenous:
    return prepare(rcdc_short(0.25, history_days=2))[1]


def pinned(exo: SiteExogenous, price: float, price_quantile: float,
           work_quantile: float = np.nan) -> ChannelForecasts:
    """Persistence forecasts with the price's point forecast pinned at ``price`` and
    every quantile of the price at ``price_quantile`` (of the workload at
    ``work_quantile``) [$/MWh, WU]."""
    forecasts = ChannelForecasts(make_forecasters(exo, "persistence"))
    point = forecasts.predict

    def predict(time: object, steps: int, only: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
        out = point(time, steps, only)  # type: ignore[arg-type]
        out[PRICE] = np.full(steps, price)
        return out

    def quantile(channel: str, time: object, steps: int, level: float) -> np.ndarray:
        return np.full(steps, price_quantile if channel == PRICE else work_quantile)

    forecasts.predict = predict  # type: ignore[method-assign]
    forecasts.quantile = quantile  # type: ignore[method-assign]
    return forecasts


def committed_curtailment(exo: SiteExogenous, confidence: float, upper_price: float) -> float:
    """Curtailment [MW] the MPC commits at the run start with a point forecast of
    −20 $/MWh (paid to import: the plan curtails its wind and imports) and the price's
    ``confidence`` quantile at ``upper_price``."""
    policy = MpcPolicy(exo, pinned(exo, -20.0, upper_price), 8,
                       curtail_confidence=confidence)
    return policy.decide(start_observation(exo, 0)).campus(C).curtailed_mw


def test_curtailment_is_committed_only_when_the_price_is_negative_with_confidence(
        exo: SiteExogenous) -> None:
    """The plan curtails at −20 $/MWh. At confidence 0.9 with the 0.9 quantile at +5
    $/MWh (the price may well be positive) the curtailment is withdrawn; with it at
    −5 $/MWh it stands; at 0.5 (the point forecast's sign, the default) it stands."""
    planned = committed_curtailment(exo, 0.5, 5.0)
    assert planned > 1.0  # the plan does curtail: the checks below are not vacuous
    assert committed_curtailment(exo, 0.9, 5.0) == 0.0
    assert committed_curtailment(exo, 0.9, -5.0) == pytest.approx(planned)


def test_non_deferrable_work_is_planned_at_its_quantile(exo: SiteExogenous) -> None:
    """With ``work_nd_quantile`` the horizon's non-deferrable work is ``(1 − s)`` times
    the workload's quantile (here pinned at 20 WU per interval, s the deferrable
    share); without it, ``(1 − s)`` times the point forecast."""
    share = exo.site.campuses[0].other_it.deferrable_share  # type: ignore[union-attr]
    obs = start_observation(exo, 0)
    reserved = MpcPolicy(exo, pinned(exo, 30.0, 30.0, work_quantile=20.0), 8,
                         work_nd_quantile=0.9).horizon_inputs(obs)[0]
    np.testing.assert_allclose(reserved.work_nd_wu[0], (1.0 - share) * 20.0)
    forecasts = pinned(exo, 30.0, 30.0, work_quantile=20.0)
    point = forecasts.predict(obs.time, 8)[WORK]
    plain = MpcPolicy(exo, forecasts, 8).horizon_inputs(obs)[0]
    np.testing.assert_allclose(plain.work_nd_wu[0], (1.0 - share) * point)


def uniform_price(exo: SiteExogenous, now: float) -> ChannelForecasts:
    """Persistence forecasts with the price's point forecast 30 $/MWh (``now`` in the
    first interval) and its quantile at level α ``10 + 40 α`` $/MWh (uniform on
    [10, 50], mean 30), no wind and no non-deferrable work: the deferrable work alone
    draws power, up to 25 WU per interval (100 MW for 15 min)."""
    forecasts = ChannelForecasts(make_forecasters(exo, "persistence"))
    point = forecasts.predict

    def predict(time: object, steps: int, only: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
        out = point(time, steps, only)  # type: ignore[arg-type]
        out[PRICE] = np.r_[now, np.full(steps - 1, 30.0)]
        out[CF] = np.zeros(steps)
        out[WORK] = np.zeros(steps)
        return out

    def quantile(channel: str, time: object, steps: int, level: float) -> np.ndarray:
        assert channel == PRICE  # only the price's distribution is read
        return np.full(steps, 10.0 + 40.0 * level)

    forecasts.predict = predict  # type: ignore[method-assign]
    forecasts.quantile = quantile  # type: ignore[method-assign]
    return forecasts


def test_later_intervals_are_priced_at_stratified_quantiles(exo: SiteExogenous) -> None:
    """K = 8 levels (k + ½)/8, i.e. 12.5, 17.5, ..., 47.5 $/MWh on the uniform price;
    the columns after the committed one take them in van der Corput order (levels 8/16,
    4/16, 12/16, 2/16, ... rounded to the grid: 9/16, 5/16, 13/16, 3/16, 11/16, 7/16,
    15/16, 1/16 and again); the committed interval keeps its point forecast."""
    np.testing.assert_allclose(stratified_levels(np.arange(9), 8) * 16,
                               [8, 9, 5, 13, 3, 11, 7, 15, 1])
    inputs = MpcPolicy(exo, uniform_price(exo, 25.0), 96, deferrable_price_levels=8
                       ).horizon_inputs(start_observation(exo, 0))[0]
    cycle = [32.5, 22.5, 42.5, 17.5, 37.5, 27.5, 47.5, 12.5]
    np.testing.assert_allclose(inputs.import_price_usd_per_mwh[0, :17], [25.0, *cycle, *cycle])


def committed_training(exo: SiteExogenous, now: float, levels: int) -> float:
    """Deferrable work [WU] the MPC commits at the run start (:func:`uniform_price`)."""
    policy = MpcPolicy(exo, uniform_price(exo, now), 96, deferrable_price_levels=levels)
    obs = start_observation(exo, 0)
    due = policy.horizon_inputs(obs)[1].df_due_cum_wu[0]
    # The run's 24 intervals must do 179.6 WU by their end: 31 % of their 25 WU each.
    assert due[23] == pytest.approx(179.6, abs=0.1) and not due[:23].any()
    return policy.decide(obs).campus(C).work_df_wu


def test_deferrable_work_waits_for_the_low_prices_the_window_is_likely_to_offer(
        exo: SiteExogenous) -> None:
    """The window needs 31 % of its capacity. On the point forecast, 25 $/MWh now is
    the cheapest interval in sight: the plan trains now (at least 21 WU). On the
    price's distribution 3 of every 8 later intervals are priced under 25 $/MWh
    (12.5, 17.5, 22.5), more than the 31 % needed: it waits (almost nothing now); at 10
    $/MWh, under every quantile, it trains now at the full 25 WU."""
    assert committed_training(exo, 25.0, 0) > 21.0
    assert committed_training(exo, 25.0, 8) < 2.5
    assert committed_training(exo, 10.0, 8) == pytest.approx(25.0)


def test_price_levels_are_off_where_the_prices_are_exact() -> None:
    """No distribution to plan on for ``perfect``, the ``oracle`` on prices or prices
    known ahead."""
    on = {"controller.deferrable_price_levels": 8}
    base = rcdc_short(0.25)
    assert with_overrides(base, on, "<test>").controller.price_levels == 8
    for extra in ({"controller.kind": "perfect"}, {"controller.price_known_ahead": True},
                  {"controller.channels.price.forecaster": "oracle"}):
        assert with_overrides(base, {**on, **extra}, "<test>").controller.price_levels == 0


@pytest.mark.parametrize(("key", "value"), [("controller.curtail_confidence", 0.4),
                                            ("controller.curtail_confidence", 1.0),
                                            ("controller.work_nd_quantile", 1.0),
                                            ("controller.deferrable_price_levels", -1)])
def test_out_of_range_hedges_are_refused_naming_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        with_overrides(rcdc_short(0.25), {key: value}, "<test>")
