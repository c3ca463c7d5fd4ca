"""Forecast combination: a weighted mean of member forecasters, weights by lead.

``weights="equal"``: the plain mean. ``weights="inverse_error"``: at each lead ``L``
(intervals after the cutoff) member ``k`` gets

    w[k, L] = MAE[k, L] ** -power / sum_j MAE[j, L] ** -power,

with ``MAE[k, L]`` the member's mean absolute error at that lead over the origins of
the last ``window_days`` (hourly scoring origins, :class:`~forecasters.base.ScoreBook`:
each complete hour the combination records every member's forecast and scores it
as the observations arrive). Where a lead has no scored error yet for some member,
the weights there are equal. The weights are recomputed once per scoring origin.

The members receive every ``fit``, ``update`` and known-ahead feed the combination
does (a feed goes to the members that read that regressor), so the time rule and
the publication rule are the members' own. Their quantiles are not combined: the
combination calibrates its own (conformal, :mod:`forecasters.base`); its model
fallback is the weighted mean of the members' model quantiles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
import pandas as pd

from forecasters.base import (
    CALIBRATION_STEPS,
    BaseForecaster,
    Bounds,
    make_forecaster,
    register_forecaster,
)
from forecasters.memo import ns
from traces.grid import STEP

Weights = Literal["equal", "inverse_error"]

DEFAULT_MEMBERS = ("seasonal_naive_daily", "sarimax")
"""Members when none are named: the benchmark and the model it should beat."""


class Combination(BaseForecaster):
    """Weighted mean of member forecasters (module docstring).

    Parameters
    ----------
    members : sequence of BaseForecaster
        At least two fresh forecasters of the same series (distinct names).
    weights : {"equal", "inverse_error"}
    window_days : float [d]
        Rolling window of the error weights.
    power : float
        Exponent of the inverse error (1: inverse MAE).
    bounds, max_stale_steps
        See :class:`~forecasters.base.BaseForecaster`.
    """

    name = "combination"

    def __init__(
        self,
        members: Sequence[BaseForecaster],
        weights: Weights = "inverse_error",
        window_days: float = 14.0,
        power: float = 1.0,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        if len(members) < 2:
            raise ValueError(f"{self.name}: needs at least two members, got {len(members)}")
        if weights not in ("equal", "inverse_error"):
            raise ValueError(f"{self.name}: weights must be 'equal' or 'inverse_error', "
                             f"got {weights!r}")
        if window_days <= 0 or power <= 0:
            raise ValueError(f"{self.name}: window_days and power must be > 0")
        self.members = list(members)
        self.weights: Weights = weights
        self.window_days = float(window_days)
        self.power = float(power)
        self.known_ahead = {k: v for m in self.members for k, v in m.known_ahead.items()}
        self._weight_table: np.ndarray | None = None
        self._weights_at = -1
        if self.window_days * 24 > self.calibration_window_days * 24:
            self.calibration_window_days = self.window_days

    # ------------------------------------------------------- observations
    def _after_fit(self) -> None:
        history = pd.Series(
            self.observations,
            index=pd.date_range(self.start, periods=len(self.observations), freq=STEP),
        )
        for member in self.members:
            member.fit(history)
        self._weight_table, self._weights_at = None, -1

    def _after_update(self, n_before: int) -> None:
        first = self.start + n_before * STEP
        new = self.observations[n_before:]
        for member in self.members:
            member.update_values(first, new)

    def update_known(self, name: str, values: pd.Series) -> Self:
        """Feed a known-ahead regressor to the members that read it."""
        if name not in self.known_ahead:
            known = ", ".join(sorted(self.known_ahead)) or "none"
            raise ValueError(f"{self.name}: no known-ahead regressor '{name}' (its members "
                             f"read: {known})")
        for member in self.members:
            if name in member.known_ahead:
                member.update_known(name, values)
        return self

    # ------------------------------------------------------------ weights
    def _needs_scoring(self) -> bool:
        return super()._needs_scoring() or self.weights == "inverse_error"

    def _score_width(self) -> int:
        return 1 + len(self.members)

    def _score_rows(self, targets: pd.DatetimeIndex) -> np.ndarray:
        member_rows = self._member_points(targets)
        combined = self._combine(member_rows, targets)
        return np.vstack([combined[None, :], member_rows])

    def weight_table(self) -> np.ndarray:
        """Member weights by lead, shape (members, CALIBRATION_STEPS) [-]; columns sum to 1."""
        k = len(self.members)
        book = self.score_book
        if self.weights == "equal" or book is None or not len(book):
            return np.full((k, CALIBRATION_STEPS), 1.0 / k)
        if self._weight_table is not None and self._weights_at == book.n_recorded:
            return self._weight_table
        recent = max(1, round(self.window_days * 24))
        errors = book.errors(self.observations)[-recent:, 1:, :]
        count = (~np.isnan(errors)).sum(axis=0)
        mae = np.nansum(np.abs(errors), axis=0) / np.maximum(count, 1)
        ok = (count > 0).all(axis=0) & (mae > 0).all(axis=0)
        inv = np.where(ok[None, :], np.maximum(mae, 1e-300) ** -self.power, 1.0)
        table = inv / inv.sum(axis=0, keepdims=True)
        self._weight_table, self._weights_at = table, book.n_recorded
        return table

    def _leads(self, targets: pd.DatetimeIndex) -> np.ndarray:
        offset = (ns(targets) - int(self.start.value)) // STEP.value
        return np.clip(offset - (len(self.observations) - 1), 1, CALIBRATION_STEPS)

    def _combine(self, member_rows: np.ndarray, targets: pd.DatetimeIndex) -> np.ndarray:
        w = self.weight_table()[:, self._leads(targets) - 1]
        return self._clip(np.sum(w * member_rows, axis=0))

    def _member_points(self, targets: pd.DatetimeIndex) -> np.ndarray:
        return np.vstack([m._point_values(targets) for m in self.members])

    # ---------------------------------------------------------- prediction
    def _point_values(self, targets: pd.DatetimeIndex) -> np.ndarray:
        return self._combine(self._member_points(targets), targets)

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        # Model fallback of the quantiles: each member's one-sigma band from its own
        # model quantiles, averaged with the weights (NaN if a member's is unknown).
        w = self.weight_table()[:, self._leads(targets) - 1]
        sigma = np.zeros(len(targets))
        for k, member in enumerate(self.members):
            band = member.predict_quantiles(targets[0], len(targets), (0.158655, 0.841345))
            values = band.to_numpy()
            half = 0.5 * (values[:, 1] - values[:, 0])
            sigma += w[k] * np.where(np.isfinite(half), half, np.nan)
        return self._point_values(targets), sigma

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "members": [m.name for m in self.members],
            "member_params": [m.get_params() for m in self.members],
            "weights": self.weights,
            "window_days": self.window_days,
            "power": self.power,
        }


def combination(
    members: Sequence[str | BaseForecaster] = DEFAULT_MEMBERS,
    member_params: Mapping[str, Mapping[str, Any]] | None = None,
    weights: Weights = "inverse_error",
    window_days: float = 14.0,
    power: float = 1.0,
    bounds: Bounds | None = None,
    max_stale_steps: int | None = None,
) -> Combination:
    """Registry factory: members by registered name (or ready instances).

    ``bounds`` and ``max_stale_steps`` go to named members too (``member_params``
    override them); the members' own quantiles are model-based (the combination
    calibrates its own).
    """
    built: list[BaseForecaster] = []
    for member in members:
        if isinstance(member, BaseForecaster):
            built.append(member)
            continue
        params = {"bounds": bounds, "max_stale_steps": max_stale_steps} | dict(
            (member_params or {}).get(member, {}))
        built.append(make_forecaster(member, calibration="model", **params))
    return Combination(built, weights, window_days, power, bounds, max_stale_steps)


def equal_combination(**params: Any) -> Combination:
    """:func:`combination` with equal weights."""
    fc = combination(weights="equal", **params)
    fc.name = "combination_equal"
    return fc


register_forecaster("combination", combination)
register_forecaster("combination_equal", equal_combination)
