"""Forecaster settings per kind of quantity, shared by the backtest and the closed loop.

The settings were chosen on the real series (docs/forecasters.md): prices can be
negative (unbounded) and follow a weekly cycle; wind has no weekly cycle and a
capacity factor lies in [0, 1]; request counts are bursty, so they are modelled as
``log1p`` (measured: −20 % MAE on BurstGPT); loads and carbon intensity are
non-negative. Model orders: the MA term did not raise the likelihood of the wind
(AR(2): 611.8 vs ARMA(2,1): 612.0 on 14 days of April 2022) nor of the Google load
shape (AR(1): −74.2 vs −73.8) but made each fit 7-15× slower, so those use pure AR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from forecasters.base import BaseForecaster, Bounds, make_forecaster

Quantity = Literal["price", "capacity_factor", "request_rate", "load", "carbon"]

STATISTICAL = frozenset({"sarimax", "ets"})
"""Forecasters that take the statistical settings."""


@dataclass(frozen=True)
class QuantitySettings:
    """Bounds and statistical-model settings of one kind of quantity."""

    bounds: Bounds | None = None
    statistical: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[Quantity, QuantitySettings] = {
    "price": QuantitySettings(),
    "capacity_factor": QuantitySettings((0.0, 1.0), {"weekly_harmonics": 0, "order": (2, 0, 0)}),
    "request_rate": QuantitySettings((0.0, None), {"transform": "log1p"}),
    "load": QuantitySettings((0.0, None), {"order": (1, 0, 0)}),
    "carbon": QuantitySettings((0.0, None)),
}


def make_for(name: str, quantity: Quantity, **params: Any) -> BaseForecaster:
    """Forecaster ``name`` with the settings of ``quantity`` (``params`` override them)."""
    preset = PRESETS[quantity]
    settings: dict[str, Any] = {"bounds": preset.bounds}
    if name in STATISTICAL:
        statistical = dict(preset.statistical)
        if name == "ets":
            statistical.pop("weekly_harmonics", None)
            statistical.pop("order", None)
        settings |= statistical
    return make_forecaster(name, **(settings | params))
