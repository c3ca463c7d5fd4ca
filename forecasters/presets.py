"""Forecaster settings per kind of quantity, shared by the backtest and the closed loop.

Bounds follow from the quantity: prices can be negative (unbounded), a capacity
factor lies in [0, 1], request rates, loads and carbon intensities are
non-negative. The statistical-model settings were chosen by a rolling-origin
backtest on the real series against the ``alternatives`` listed with each
preset (``mpc-dc backtest ... --variants``; the table and the exact commands are
in docs/forecasters.md), by the mean MAE over the leads 15 min … 24 h.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from forecasters.base import BaseForecaster, Bounds, make_forecaster

Quantity = Literal["price", "capacity_factor", "request_rate", "load", "carbon"]

STATISTICAL = frozenset({"sarimax", "ets"})
"""Forecasters that take the statistical settings."""

ONLY_FOR: dict[str, frozenset[str]] = {
    "sarimax": frozenset({"order", "daily_harmonics", "weekly_harmonics"}),
    "ets": frozenset({"seasonal_period_hours", "damped_trend"}),
}
"""Statistical settings that only one of the models takes."""


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
    """

    bounds: Bounds | None = None
    statistical: Mapping[str, Any] = field(default_factory=dict)
    per_model: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    alternatives: tuple[Mapping[str, Any], ...] = ()


# Chosen by ``mpc-dc backtest ... --variants`` (docs/forecasters.md, "Presets"): the
# lowest mean MAE over the leads 15 min ... 24 h; variants within 0.5 % of the best
# count as equal and the one with the fewest parameters is kept. Model defaults
# (forecasters.statistical): SARIMAX order (2, 0, 1), 3 daily and 2 weekly Fourier
# pairs, no transform; ETS(A, N, A) with a 24-h season.
PRESETS: dict[Quantity, QuantitySettings] = {
    # Weekly terms made the LMP forecast worse than persistence at 24 h (zones F, J).
    "price": QuantitySettings(
        None,
        {"weekly_harmonics": 0},
        alternatives=(
            {"weekly_harmonics": 2},
            {"weekly_harmonics": 1},
            {"daily_harmonics": 5},
            {"order": (2, 0, 0)},
        ),
    ),
    "capacity_factor": QuantitySettings(
        (0.0, 1.0),
        {"weekly_harmonics": 0, "order": (2, 0, 0), "daily_harmonics": 1},
        alternatives=(
            {"daily_harmonics": 3},
            {"daily_harmonics": 0},
            {"order": (2, 0, 1)},
        ),
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
        ),
    ),
    # One month of data (7 days of history): no weekly cycle to learn.
    "load": QuantitySettings(
        (0.0, None),
        {"order": (1, 0, 0), "weekly_harmonics": 0},
        alternatives=(
            {"weekly_harmonics": 2},
            {"order": (2, 0, 1)},
            {"daily_harmonics": 5},
        ),
    ),
    "carbon": QuantitySettings(
        (0.0, None),
        {"weekly_harmonics": 1},
        alternatives=(
            {"weekly_harmonics": 2},
            {"weekly_harmonics": 0},
            {"order": (2, 0, 0)},
        ),
    ),
}


def statistical_settings(
    name: str, quantity: Quantity, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of ``quantity`` (with ``overrides``) that forecaster ``name`` takes."""
    preset = PRESETS[quantity]
    settings = (dict(preset.statistical) | dict(preset.per_model.get(name, {}))
                | dict(overrides or {}))
    foreign = set().union(*(keys for model, keys in ONLY_FOR.items() if model != name))
    return {k: v for k, v in settings.items() if k not in foreign}


def variants(name: str, quantity: Quantity) -> list[tuple[str, dict[str, Any]]]:
    """``(label, overrides)`` of the preset (label ``"preset"``) and of each alternative
    that changes what forecaster ``name`` is given (none for non-statistical ones)."""
    out: list[tuple[str, dict[str, Any]]] = [("preset", {})]
    if name not in STATISTICAL:
        return out
    seen = [statistical_settings(name, quantity)]
    for alt in PRESETS[quantity].alternatives:
        settings = statistical_settings(name, quantity, alt)
        if settings not in seen:
            seen.append(settings)
            label = ",".join(f"{k}={_text(v)}" for k, v in alt.items())
            out.append((label, dict(alt)))
    return out


def _text(value: Any) -> str:
    return "".join(str(value).split()) if isinstance(value, tuple) else str(value)


def make_for(name: str, quantity: Quantity, **params: Any) -> BaseForecaster:
    """Forecaster ``name`` with the settings of ``quantity`` (``params`` override them)."""
    return make_variant(name, quantity, None, **params)


def make_variant(
    name: str, quantity: Quantity, variant: Mapping[str, Any] | None, **params: Any
) -> BaseForecaster:
    """:func:`make_for` with ``variant`` overriding the statistical settings (an entry of
    :func:`variants`)."""
    settings: dict[str, Any] = {"bounds": PRESETS[quantity].bounds}
    if name in STATISTICAL:
        settings |= statistical_settings(name, quantity, variant)
    return make_forecaster(name, **(settings | params))
