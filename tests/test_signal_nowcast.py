"""The MPC's price and renewable nowcast (issue 16): the last published value blended into
the first hours of the price and capacity-factor forecasts, by hand and without lookahead.

The site is the combined one of tests/loop_cases.py (a wholesale wind campus at node D,
a retail campus at F; synthetic hourly prices and wind, published at the end of each
hour), shortened to 4 hours; the forecaster is the daily seasonal naive, whose forecast
is yesterday's value and so differs from the last observation.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import mpc_dc.control.mpc as mpc_module
from mpc_dc.control.forecasting import ChannelForecasts, make_forecasters
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.problem import HorizonInputs, PlantState
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.policy import Decision, Observation
from mpc_dc.site.config import tariff_prices
from mpc_dc.site.scenario import Scenario
from tests.loop_cases import combined, poisoned, prepared
from traces.grid import STEP

TAUS = {"price": 4.0, "renewable": 8.0}
"""Time constants [intervals] of the nowcast under test: 1 h on prices, 2 h on wind."""


@pytest.fixture(scope="module")
def case() -> tuple[Scenario, SiteExogenous]:
    return prepared(combined(**{"run.days": 4 / 24}))


def _published_before(exo: SiteExogenous, forecasts: ChannelForecasts, step: int) -> None:
    """Feed ``forecasts`` what the loop publishes before ``step`` is decided."""
    for k in range(step):
        for when, values in exo.published_during(k):
            forecasts.observe(when, values)


def _inputs_by_step(exo: SiteExogenous, forecasts: ChannelForecasts,
                    taus: dict[str, float]) -> dict[int, HorizonInputs]:
    """The horizon inputs of every step of a closed-loop run of the MPC with ``taus``."""
    policy = MpcPolicy(exo, copy.deepcopy(forecasts), 8, nowcast_tau_steps=taus)
    inputs = policy.horizon_inputs
    seen: dict[int, HorizonInputs] = {}

    def spy(obs: Observation) -> tuple[HorizonInputs, PlantState]:
        got = inputs(obs)
        seen[obs.step] = got[0]
        return got

    policy.horizon_inputs = spy  # type: ignore[method-assign]
    simulate(exo, policy)
    return seen


def test_price_and_wind_nowcast_by_hand(case: tuple[Scenario, SiteExogenous]) -> None:
    """At 01:15 after the run start the last published hour is the first (published at
    01:00): its last quarter ends 30 min before the end of the first planned interval,
    so planned interval k gets ``f + (y − f) exp(−(2 + k)/τ)`` with ``y`` that hour's
    price (wind capacity factor), ``f`` the seasonal naive's forecast and τ in
    intervals; the retail campus's price goes through its tariff the same way."""
    _, exo = case
    fitted = make_forecasters(exo, "seasonal_naive_daily")
    seen = _inputs_by_step(exo, ChannelForecasts(fitted), TAUS)
    step = 5
    time = exo.time(step)
    assert (time - exo.run_start) == pd.Timedelta(minutes=75)
    # The forecasts the MPC started from, fed what the loop publishes before the step.
    raw = ChannelForecasts(copy.deepcopy(fitted))
    _published_before(exo, raw, step)
    n = 8
    point = raw.predict(time, n)
    k = np.arange(n)
    for i, c in enumerate(exo.site.campuses):
        price = column("price_usd_per_mwh", c.name)
        last = exo.last_published(price, step)
        assert last == time - 2 * STEP
        y = float(exo.truth(price)[last])
        f = point[price]
        assert not np.allclose(f, y)  # the blend has something to do
        blended = f + (y - f) * np.exp(-(2 + k) / TAUS["price"])
        want_im, want_ex = tariff_prices(blended, c.grid.tariff)
        np.testing.assert_allclose(seen[step].import_price_usd_per_mwh[i, :n], want_im,
                                   rtol=1e-12)
        np.testing.assert_allclose(seen[step].export_price_usd_per_mwh[i, :n], want_ex,
                                   rtol=1e-12)
        if c.renewable is None:
            continue
        cf = column("renewable_cf", c.name)
        y = float(exo.truth(cf)[exo.last_published(cf, step)])
        f = point[cf]
        want = np.clip(f + (y - f) * np.exp(-(2 + k) / TAUS["renewable"]), 0.0, 1.0)
        np.testing.assert_allclose(seen[step].renewable_cf[i, :n], want, rtol=1e-12)


def test_signal_nowcast_reads_nothing_unpublished(case: tuple[Scenario, SiteExogenous]
                                                  ) -> None:
    """Everything not published at issue times :15, :30 and :45 (the whole running hour
    of the hourly prices and wind) poisoned: the horizon inputs up to that step are
    bit-identical with the nowcast on, and the poison does reach later ones."""
    _, exo = case
    fitted = ChannelForecasts(make_forecasters(exo, "seasonal_naive_daily"))
    clean = _inputs_by_step(exo, fitted, TAUS)
    for cut in (5, 6, 7):
        assert exo.time(cut).minute in (15, 30, 45)
        dirty = _inputs_by_step(poisoned(exo, cut, seed=cut), fitted, TAUS)
        for step in range(cut + 1):
            for name in ("import_price_usd_per_mwh", "renewable_cf"):
                np.testing.assert_array_equal(getattr(clean[step], name),
                                              getattr(dirty[step], name))
        assert any(not np.array_equal(clean[s].import_price_usd_per_mwh,
                                      dirty[s].import_price_usd_per_mwh)
                   for s in range(cut + 1, len(clean)))


def test_curtailment_quantile_is_shifted_as_the_point(case: tuple[Scenario, SiteExogenous],
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """The price quantile that decides whether a planned curtailment is committed
    (``curtail_confidence``) is the forecaster's quantile shifted by the point's nowcast,
    ``q + (y − f) exp(−2/τ)`` for the committed interval at 01:15, so that the hedge
    reads the same level as the plan."""
    _, exo = case
    fitted = make_forecasters(exo, "seasonal_naive_daily")
    policy = MpcPolicy(exo, ChannelForecasts(copy.deepcopy(fitted)), 8,
                       nowcast_tau_steps=TAUS, curtail_confidence=0.8)
    wind = next(c for c in exo.site.campuses if c.renewable is not None)
    price = column("price_usd_per_mwh", wind.name)
    step = 5
    read: list[np.ndarray] = []
    real = mpc_module.tariff_prices

    def spy_tariff(values: np.ndarray, tariff: object) -> tuple[np.ndarray, np.ndarray]:
        read.append(np.array(values, dtype=float))
        return real(values, tariff)  # type: ignore[arg-type]

    decide = policy.decide

    def at_step(obs: Observation) -> Decision:
        decision = decide(obs)
        if obs.step == step:
            own = replace(decision.campus(wind.name), curtailed_mw=0.01)
            curtailing = replace(decision, campuses={**decision.campuses, wind.name: own})
            with monkeypatch.context() as patch:
                patch.setattr(mpc_module, "tariff_prices", spy_tariff)
                policy.confident_curtailment(obs, curtailing)
        return decision

    policy.decide = at_step  # type: ignore[method-assign]
    simulate(exo, policy)
    raw = ChannelForecasts(copy.deepcopy(fitted))
    _published_before(exo, raw, step)
    time = exo.time(step)
    f = raw.predict(time, 8)[price][0]
    q = raw.quantile(price, time, 1, 0.8)[0]
    y = float(exo.truth(price)[exo.last_published(price, step)])
    assert np.isfinite(q) and not np.isclose(y, f)
    assert len(read) == 1
    np.testing.assert_allclose(read[0], [q + (y - f) * np.exp(-2 / TAUS["price"])],
                               rtol=1e-12)


def test_nowcast_time_constants_per_group() -> None:
    """The backtest's τ per forecaster and group unless a key sets it; none for an
    Oracle (``perfect``, or the ``oracle`` on the group) nor for prices known ahead; a
    negative key is a one-line error naming it."""
    from mpc_dc.site.scenario import controller_variant
    from traces.errors import ConfigError

    spec = combined(**{"controller.forecaster": "sarimax"}).controller
    assert spec.nowcast_taus_steps == {"demand": 8.0, "price": 48.0, "renewable": 32.0}
    naive = combined(**{"controller.forecaster": "seasonal_naive_daily",
                        "controller.price_nowcast_tau_h": 0.5}).controller
    assert naive.nowcast_taus_steps == {"demand": 32.0, "price": 2.0, "renewable": 144.0}
    assert controller_variant(combined(), "perfect").controller.nowcast_taus_steps == {
        "demand": 0.0, "price": 0.0, "renewable": 0.0}
    own = combined(**{"controller.forecaster": "sarimax",
                      "controller.channels.price.forecaster": "oracle",
                      "controller.renewable_nowcast_tau_h": 1.0}).controller
    assert own.nowcast_taus_steps == {"demand": 8.0, "price": 0.0, "renewable": 4.0}
    known = combined(**{"controller.forecaster": "sarimax",
                        "controller.price_known_ahead": True}).controller
    assert known.group_nowcast_tau_steps("price") == 0.0
    with pytest.raises(ConfigError, match=r"controller\.renewable_nowcast_tau_h"):
        combined(**{"controller.renewable_nowcast_tau_h": -1.0})
