"""The MPC's hedges against forecast error (issue 16): a curtailment committed only when
the price is negative with confidence, the non-deferrable work planned at a quantile.

The site is ``rcdc_default.toml`` (one campus: 100 MW other IT, 150 MW wind, a 200-MW
connection, wholesale) on synthetic data; the forecasts of the price (and, for the
reserve, the workload) are pinned so that the expected decisions follow by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from mpc_dc.control.forecasting import ChannelForecasts, make_forecasters
from mpc_dc.control.mpc import MpcPolicy, start_observation
from mpc_dc.runner import prepare
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.scenario import with_overrides
from tests.loop_cases import rcdc_short
from traces.errors import ConfigError

C = "rcdc"
PRICE = column("price_usd_per_mwh", C)
WORK = column("workload_wu", C)


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

    def predict(time: pd.Timestamp, steps: int, only: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
        out = point(time, steps, only)
        out[PRICE] = np.full(steps, price)
        return out

    def quantile(channel: str, time: pd.Timestamp, steps: int, level: float) -> np.ndarray:
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


@pytest.mark.parametrize(("key", "value"), [("controller.curtail_confidence", 0.4),
                                            ("controller.curtail_confidence", 1.0),
                                            ("controller.work_nd_quantile", 1.0)])
def test_out_of_range_hedges_are_refused_naming_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        with_overrides(rcdc_short(0.25), {key: value}, "<test>")
