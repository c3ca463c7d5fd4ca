"""Forecasting cost per MPC step, and a month of steps for the RCDC series with SARIMAX.

Per step = one ``update`` with the newest 15-min observation + ``predict`` of a
96-interval horizon, averaged over a day of steps (so statistical models include
their hourly filter updates; scheduled refits are counted in the month benchmark).
With ``--benchmark-disable`` (CI smoke) the sizes shrink.

``test_bench_step_vs_uncalibrated``: the cost of calibration (issue 17), side by side
in one run: each forecaster that existed before it, stepped with its quantiles made
as before (``calibration="model"``: no scoring, the model's Gaussian band, the
code path of the previous release) and as now (conformal: an hourly scoring
forecast, quantiles from the recorded errors), for a point step (``predict``, the
RCDC loop) and a quantile step (``predict`` + ``predict_quantiles``, the fleet loop).
The ratio must stay below 2.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters import forecaster_names, make_forecaster
from traces.grid import STEPS_PER_DAY, grid_index

HORIZON = STEPS_PER_DAY


def _synthetic(days: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    hourly = 0.5 + 0.3 * np.sin(2 * np.pi * hours / 24) + 0.1 * rng.standard_normal(len(hours))
    return pd.Series(np.repeat(np.clip(hourly, 0, 1), 4), index=grid_index("2022-04-01", days * 96))


def _run_steps(fc: Any, y: pd.Series, first: int, n_steps: int) -> None:
    for pos in range(first, first + n_steps):
        fc.update(y.iloc[pos - 1 : pos])
        fc.predict(y.index[pos], HORIZON)


def _run_quantile_steps(fc: Any, y: pd.Series, first: int, n_steps: int) -> None:
    for pos in range(first, first + n_steps):
        fc.update(y.iloc[pos - 1 : pos])
        fc.predict(y.index[pos], HORIZON)
        fc.predict_quantiles(y.index[pos], HORIZON, (0.1, 0.5, 0.9))


BEFORE_ISSUE_17 = ("persistence", "seasonal_naive_daily", "seasonal_naive_weekly", "sarimax",
                   "ets", "day_ahead_known")
"""Forecasters whose per-step cost must stay within 2x of what it was before issue 17."""


@pytest.mark.parametrize("kind", ["point", "quantile"])
@pytest.mark.parametrize("name", BEFORE_ISSUE_17)
def test_bench_step_vs_uncalibrated(benchmark: Any, name: str, kind: str, smoke: bool) -> None:
    y = _synthetic(12 if smoke else 40)
    fit_end = len(y) - 2 * STEPS_PER_DAY
    n_steps = 8 if smoke else STEPS_PER_DAY
    run = _run_steps if kind == "point" else _run_quantile_steps
    params: dict[str, Any] = {"bounds": (0.0, 1.0)}
    if name == "day_ahead_known":
        params["truth"] = y
    timings: dict[str, list[float]] = {"model": [], "conformal": []}

    def both() -> None:
        # Interleaved, so machine load hits both alike; each on a fresh fitted copy.
        for calibration in ("model", "conformal"):
            if name == "day_ahead_known":  # the wrapper is exact; its inner model calibrates
                fc = make_forecaster(name, inner_params={"calibration": calibration}, **params)
            else:
                fc = make_forecaster(name, calibration=calibration, **params)
            fc.fit(y.iloc[: fit_end - 1])
            t0 = time.perf_counter()
            run(fc, y, fit_end, n_steps)
            timings[calibration].append(time.perf_counter() - t0)

    benchmark.pedantic(both, rounds=1 if smoke else 5, iterations=1)
    before = 1e3 * min(timings["model"]) / n_steps
    after = 1e3 * min(timings["conformal"]) / n_steps
    benchmark.extra_info.update({"before_ms": round(before, 4), "after_ms": round(after, 4),
                                 "ratio": round(after / before, 3)})
    if not smoke:
        assert after < 2.0 * before, (name, kind, before, after)


@pytest.mark.parametrize("name", forecaster_names())
def test_bench_step(benchmark: Any, name: str, smoke: bool) -> None:
    y = _synthetic(12 if smoke else 40)
    fit_end = len(y) - 2 * STEPS_PER_DAY
    n_steps = 8 if smoke else STEPS_PER_DAY
    params: dict[str, Any] = {"bounds": (0.0, 1.0)}
    if name in ("oracle", "noisy_oracle", "day_ahead_known"):
        params["truth"] = y

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        fc = make_forecaster(name, **params).fit(y.iloc[: fit_end - 1])
        return (fc, y, fit_end, n_steps), {}

    benchmark.pedantic(_run_steps, setup=setup, rounds=1 if smoke else 3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["per_step_ms"] = 1e3 * benchmark.stats.stats.mean / n_steps


@pytest.mark.shared_data
def test_bench_rcdc_month_sarimax(
    benchmark: Any, shared_data: Path, smoke: bool
) -> None:
    """A month of 2,880 steps for LMP (zone J), wind CF and the load shape: < 10 s."""
    from mpc_dc.commands.backtest import build_forecaster
    from traces import datasets

    lmp = datasets.nyiso_rt_lmp(shared_data, year=2022, zones=["J"])[0]["lmp_usd_per_mwh[J]"]
    wind = datasets.ny_wind_cf(shared_data)[0]["wind_cf"]
    load = datasets.google_load_shape(shared_data)[0]["load_shape"]
    # The load shape covers May 2019 only: fit on its first 7 days, run the rest.
    cases = [
        ("lmp", lmp, "2022-04-01", 28.0),
        ("wind_cf", wind, "2022-04-01", 28.0),
        ("load", load, None, 7.0),
    ]
    n_steps = 96 if smoke else 30 * STEPS_PER_DAY
    timings: dict[str, float] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        runs = []
        for key, y, start_s, train_days in cases:
            first = y.first_valid_index()
            assert first is not None
            start = (
                pd.Timestamp(start_s, tz="UTC")
                if start_s
                else first + pd.Timedelta(days=train_days)
            )
            pos = int(y.index.get_loc(start))
            fc = build_forecaster("sarimax", key, y)
            fc.fit(y.iloc[max(0, pos - int(train_days * 96)) : pos - 1])
            steps = min(n_steps, len(y) - pos - HORIZON)
            runs.append((key, fc, y, pos, steps))
        return (runs,), {}

    def month(runs: list[tuple[str, Any, pd.Series, int, int]]) -> None:
        for key, fc, y, pos, steps in runs:
            t0 = time.perf_counter()
            _run_steps(fc, y, pos, steps)
            timings[key] = time.perf_counter() - t0
            timings[f"{key}_steps"] = steps
            timings[f"{key}_refits"] = fc.n_refits - 1

    benchmark.pedantic(month, setup=setup, rounds=1, iterations=1)
    total = sum(v for k, v in timings.items() if not k.endswith(("_steps", "_refits")))
    benchmark.extra_info.update({k: round(v, 3) for k, v in timings.items()})
    benchmark.extra_info["total_s"] = round(total, 3)
    if not smoke:
        assert total < 10.0, timings


# ----------------------------------------------------------------------------- closed loop

LOOP_FORECASTERS = tuple(n for n in forecaster_names() if n != "day_ahead_known")
"""Every forecaster of every channel (``day_ahead_known`` wraps one price channel)."""


@pytest.fixture(scope="module")
def loop_site(request: pytest.FixtureRequest) -> Any:
    """The embedded default site's exogenous data (synthetic ``nyiso_wind_fleet``: three
    campuses, two models, 8 channels: no carbon price, so no carbon forecast); two days of
    history in smoke mode."""
    from benchmarks.conftest import is_smoke
    from mpc_dc.runner import prepare
    from mpc_dc.site.scenario import default_scenario, with_overrides

    smoke = is_smoke(request.config)
    scenario = with_overrides(default_scenario(), {"run.days": 1.0, "run.history_days":
                                                   2 if smoke else 7}, "<bench>")
    return prepare(scenario)[1]


def _loop_steps(forecasts: Any, exo: Any, first: int, n_steps: int) -> None:
    """What the MPC asks of its forecasts per step (as the simulator runs it): a point
    forecast of every channel and the demand quantile of every model over 24 h, then
    the values published by the end of the interval."""
    demand = [c for c in forecasts.forecasters if c.startswith("tokens_per_s")]
    for step in range(first, first + n_steps):
        forecasts.predict(exo.time(step), HORIZON)
        for channel in demand:
            forecasts.quantile(channel, exo.time(step), HORIZON, 0.9)
        for when, values in exo.published_during(step):
            forecasts.observe(when, values)


@pytest.mark.parametrize("name", LOOP_FORECASTERS)
def test_bench_loop_step_vs_persistence(benchmark: Any, name: str, loop_site: Any,
                                        smoke: bool) -> None:
    """Per-step forecasting cost of the closed loop (:class:`ChannelForecasts`, every
    channel of the site) for ``name`` and for persistence, side by side in one run
    (interleaved rounds, each on a fresh copy of the fitted forecasters):
    ``ratio_vs_persistence`` = name / persistence.

    Also each forecaster with and without the forecast-error scoring of issue 17 part B
    (:class:`ForecastErrors`; without it is the code path before): that ratio must stay
    below 2.
    """
    from mpc_dc.control.forecasting import (
        ChannelForecasts,
        ForecastErrors,
        channels,
        make_forecasters,
    )
    from tests.loop_cases import fast_fits

    exo = loop_site
    n_steps = 4 if smoke else STEPS_PER_DAY
    fit_s: dict[str, float] = {}
    fitted: dict[str, Any] = {}
    for forecaster in dict.fromkeys(("persistence", name)):
        # Smoke: settings that fit in a blink (the code path, not the cost, is checked).
        params = fast_fits(forecaster, channels(exo.site)) if smoke else None
        tick = time.perf_counter()
        fitted[forecaster] = make_forecasters(exo, forecaster, params=params)
        fit_s[forecaster] = time.perf_counter() - tick
    timings: dict[str, list[float]] = {"persistence": [], "plain": [], "scored": []}

    def rounds() -> None:
        for label in ("persistence", "plain", "scored"):
            forecaster = "persistence" if label == "persistence" else name
            errors = ForecastErrors.of(exo) if label == "scored" else None
            forecasts = ChannelForecasts(copy.deepcopy(fitted[forecaster]), errors=errors)
            t0 = time.perf_counter()
            _loop_steps(forecasts, exo, 0, n_steps)
            timings[label].append(time.perf_counter() - t0)

    benchmark.pedantic(rounds, rounds=1 if smoke else 3, iterations=1)
    ms = {k: 1e3 * min(v) / n_steps for k, v in timings.items()}
    benchmark.extra_info.update({
        "persistence_ms": round(ms["persistence"], 4), "step_ms": round(ms["plain"], 4),
        "scored_ms": round(ms["scored"], 4),
        "ratio_vs_persistence": round(ms["plain"] / ms["persistence"], 3),
        "scoring_ratio": round(ms["scored"] / ms["plain"], 3),
        "fit_s": round(fit_s[name], 3)})
    if not smoke:
        assert ms["scored"] < 2.0 * ms["plain"], (name, ms)
