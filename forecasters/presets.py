"""Forecaster settings per kind of quantity, shared by the backtest and the closed loop.

Bounds follow from the quantity: prices can be negative (unbounded), a capacity
factor lies in [0, 1], request rates, loads and carbon intensities are
non-negative. The statistical-model settings were chosen by a rolling-origin
backtest on the real series against the ``alternatives`` listed with each
preset (``mpc-dc backtest ... --variants``; the table and the exact commands are
in docs/forecasters.md), by the mean MAE over the leads 15 min … 24 h.

Known-ahead regressors: a quantity lists the regressors its regression models
(``sarimax``, ``auto_sarimax``, ``direct_lad``) read *when the caller has them*
(``available=``): the price's day-ahead price ``lmp_da`` exists for NYISO zone F
only, so a zone-J price model runs without it. The caller then feeds them
(``update_known``, see forecasters.base). ``combination`` is built from the
quantity's ``members``, each with its own preset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from forecasters.base import BaseForecaster, Bounds, make_forecaster

Quantity = Literal["price", "capacity_factor", "request_rate", "load", "carbon"]

_HOURLY = frozenset({"transform", "fit_window_days", "refit_every_hours", "min_fit_hours"})
_REGRESSION = frozenset({"holidays", "holiday_tz", "regressors"})
_SARIMAX = _HOURLY | _REGRESSION | {"maxiter", "weekly_harmonics"}
ACCEPTS: dict[str, frozenset[str]] = {
    "sarimax": _SARIMAX | {"order", "daily_harmonics"},
    "auto_sarimax": _SARIMAX | {"orders", "daily_harmonics_grid", "criterion",
                                "select_every_hours"},
    "ets": _HOURLY | {"maxiter", "seasonal_period_hours", "damped_trend"},
    "direct_lad": _HOURLY | _REGRESSION | {"use_last", "use_seasonal", "iterations"},
}
"""The statistical settings each model takes (the others are not passed to it)."""

STATISTICAL = frozenset(ACCEPTS)
"""Forecasters that take the statistical settings."""

COMBINATIONS = frozenset({"combination", "combination_equal"})
"""Forecasters built from the quantity's ``members``."""


@dataclass(frozen=True)
class QuantitySettings:
    """Bounds and statistical-model settings of one kind of quantity.

    Attributes
    ----------
    bounds : (low, high) or None
        Output clipping [series units].
    statistical : Mapping[str, Any]
        Constructor settings of the statistical models (each takes the keys it knows).
    per_model : Mapping[str, Mapping[str, Any]]
        Settings of one model that differ from ``statistical`` (by model name).
    alternatives : tuple of Mapping[str, Any]
        Overrides that were backtested against the preset (``--variants``).
    known_ahead : tuple of str
        Known-ahead regressors the regression models read when available.
    members : tuple of str
        Members of ``combination`` (each built with this quantity's preset).
    model_alternatives : Mapping[str, tuple of Mapping[str, Any]]
        Alternatives backtested for one model only (by model name).
    """

    bounds: Bounds | None = None
    statistical: Mapping[str, Any] = field(default_factory=dict)
    per_model: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alternatives: tuple[Mapping[str, Any], ...] = ()
    known_ahead: tuple[str, ...] = ()
    members: tuple[str, ...] = ("seasonal_naive_daily", "sarimax")
    model_alternatives: Mapping[str, tuple[Mapping[str, Any], ...]] = field(
        default_factory=dict)


# Chosen by ``mpc-dc backtest ... --variants`` (docs/forecasters.md, "Presets"): the
# lowest mean MAE over the leads 15 min ... 24 h; variants within 0.5 % of the best
# count as equal and the one with the fewest parameters is kept. Model defaults
# (forecasters.statistical): SARIMAX order (2, 0, 1), 3 daily and 2 weekly Fourier
# pairs, no transform; ETS(A, N, A) with a 24-h season.
PRESETS: dict[Quantity, QuantitySettings] = {
    # Weekly terms made the LMP forecast worse than persistence at 24 h (zones F, J).
    # The day-ahead price is read where published (zone F): direct_lad and SARIMAX.
    "price": QuantitySettings(
        None,
        {"weekly_harmonics": 0},
        alternatives=(
            {"weekly_harmonics": 2},
            {"weekly_harmonics": 1},
            {"daily_harmonics": 5},
            {"order": (2, 0, 0)},
            {"regressors": ()},
        ),
        known_ahead=("lmp_da",),
        members=("direct_lad", "sarimax"),
        model_alternatives={"direct_lad": ({"fit_window_days": 14}, {"fit_window_days": 56})},
    ),
    "capacity_factor": QuantitySettings(
        (0.0, 1.0),
        {"weekly_harmonics": 0, "order": (2, 0, 0), "daily_harmonics": 1},
        alternatives=(
            {"daily_harmonics": 3},
            {"daily_harmonics": 0},
            {"order": (2, 0, 1)},
        ),
        members=("sarimax", "direct_lad"),
        model_alternatives={"direct_lad": ({"fit_window_days": 14}, {"fit_window_days": 56})},
    ),
    # Bursty counts: log1p for SARIMAX; ETS is better on the counts themselves.
    "request_rate": QuantitySettings(
        (0.0, None),
        {"transform": "log1p", "weekly_harmonics": 0, "daily_harmonics": 5},
        per_model={"ets": {"transform": "none"}},
        alternatives=(
            {"daily_harmonics": 3, "weekly_harmonics": 2},
            {"daily_harmonics": 3},
            {"weekly_harmonics": 1},
            {"transform": "none"},
            {"transform": "log1p"},
            {"holidays": "US"},
        ),
        members=("sarimax", "direct_lad"),
    ),
    # One month of data (7 days of history): no weekly cycle to learn.
    "load": QuantitySettings(
        (0.0, None),
        {"order": (1, 0, 0), "weekly_harmonics": 0},
        alternatives=(
            {"weekly_harmonics": 2},
            {"order": (2, 0, 1)},
            {"daily_harmonics": 5},
            {"holidays": "US"},
        ),
        members=("ets", "seasonal_naive_daily"),
    ),
    "carbon": QuantitySettings(
        (0.0, None),
        {"weekly_harmonics": 1},
        alternatives=(
            {"weekly_harmonics": 2},
            {"weekly_harmonics": 0},
            {"order": (2, 0, 0)},
        ),
        members=("sarimax", "seasonal_naive_daily"),
    ),
}


def statistical_settings(
    name: str,
    quantity: Quantity,
    overrides: Mapping[str, Any] | None = None,
    available: Sequence[str] = (),
) -> dict[str, Any]:
    """The settings of ``quantity`` (with ``overrides``) that forecaster ``name`` takes;
    a regression model gets the quantity's known-ahead regressors found in ``available``
    (unless ``overrides`` set ``regressors``)."""
    preset = PRESETS[quantity]
    known = tuple(r for r in preset.known_ahead if r in available)
    base: dict[str, Any] = {"regressors": known} if known else {}
    settings = (base | dict(preset.statistical) | dict(preset.per_model.get(name, {}))
                | dict(overrides or {}))
    accepted = ACCEPTS.get(name, frozenset())
    return {k: v for k, v in settings.items() if k in accepted}


def variants(
    name: str, quantity: Quantity, available: Sequence[str] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """``(label, overrides)`` of the preset (label ``"preset"``) and of each alternative
    that changes what forecaster ``name`` is given (none for non-statistical ones)."""
    out: list[tuple[str, dict[str, Any]]] = [("preset", {})]
    if name not in STATISTICAL:
        return out
    seen = [statistical_settings(name, quantity, None, available)]
    preset = PRESETS[quantity]
    for alt in (*preset.alternatives, *preset.model_alternatives.get(name, ())):
        settings = statistical_settings(name, quantity, alt, available)
        if settings not in seen:
            seen.append(settings)
            label = ",".join(f"{k}={_text(v)}" for k, v in alt.items())
            out.append((label, dict(alt)))
    return out


def _text(value: Any) -> str:
    return "".join(str(value).split()) if isinstance(value, tuple) else str(value)


def make_for(name: str, quantity: Quantity, **params: Any) -> BaseForecaster:
    """Forecaster ``name`` with the settings of ``quantity`` (``params`` override them).

    ``available=`` (a sequence of str, default none): the known-ahead regressors the
    caller will feed (e.g. ``("lmp_da",)``); the returned forecaster's ``known_ahead``
    lists those it reads. (Taken from ``params`` so that callers passing a mapping of
    constructor settings type-check.)
    """
    available = tuple(params.pop("available", ()))
    return make_variant(name, quantity, None, available=available, **params)


def make_variant(
    name: str,
    quantity: Quantity,
    variant: Mapping[str, Any] | None,
    *,
    available: Sequence[str] = (),
    **params: Any,
) -> BaseForecaster:
    """:func:`make_for` with ``variant`` overriding the statistical settings (an entry of
    :func:`variants`)."""
    settings: dict[str, Any] = {"bounds": PRESETS[quantity].bounds}
    if name in STATISTICAL:
        settings |= statistical_settings(name, quantity, variant, available)
    if name in COMBINATIONS and "members" not in params:
        # Members with this quantity's presets; ``member_params`` override by member name.
        member_params = dict(params.pop("member_params", None) or {})
        settings["members"] = [
            make_variant(member, quantity, None, available=available,
                         **({"calibration": "model"} | dict(member_params.get(member, {}))))
            for member in PRESETS[quantity].members
        ]
    return make_forecaster(name, **(settings | params))
