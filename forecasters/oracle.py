"""Perfect foresight and controlled forecast error.

:class:`Oracle` returns the truth for the target times: it deliberately looks ahead
and is the perfect-foresight reference of every study. :class:`NoisyOracle` adds a
seeded error whose size is set by one parameter, for forecast-error studies.

Error model of :class:`NoisyOracle`: for an issue time ``t`` and target
``t + k * 15 min`` (lead ``k + 1`` intervals),

    e[t, k] = level * sigma * sqrt(1 / H_ref) * sum_{j <= k} z[t, j],   z ~ N(0, 1) iid,

a random walk along the lead, so ``std(e[t, k]) = level * sigma * sqrt((k + 1) / H_ref)``
grows with the square root of the lead and equals ``level * sigma`` at the
reference lead ``H_ref`` (96 intervals = 24 h). ``sigma`` is the standard deviation
of the truth (or ``error_scale``). Errors are correlated along a forecast, as real
forecast errors are, and independent between issue times. The draws ``z[t, :]``
come from a generator seeded by ``(seed, t)``, so a forecast does not depend on the
order of calls, on the horizon asked for (shorter horizons are prefixes) or on
other issue times.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import BaseForecaster, Bounds, check_grid_series, register_forecaster
from traces.errors import TraceRangeError
from traces.grid import STEP, STEPS_PER_DAY


class Oracle(BaseForecaster):
    """Perfect foresight: the truth at the target times.

    Parameters
    ----------
    truth : Series [series units]
        The realised series on the contiguous 15-min grid (NaN where unknown).
    bounds, max_stale_steps
        See :class:`~forecasters.base.BaseForecaster`.
    """

    name = "oracle"
    default_calibration = "model"  # the truth has no error to calibrate

    def __init__(
        self, truth: pd.Series, bounds: Bounds | None = None, max_stale_steps: int | None = None
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        self.truth = check_grid_series(truth, "oracle truth")
        if len(self.truth) == 0:
            raise ValueError("oracle truth: empty series")
        self._truth_values = self.truth.to_numpy(dtype=float)
        self._truth_start_ns = int(self.truth.index[0].value)

    def _truth_at(self, targets: pd.DatetimeIndex) -> np.ndarray:
        first = (int(targets[0].value) - self._truth_start_ns) // STEP.value
        if first < 0 or first + len(targets) > len(self._truth_values):
            raise TraceRangeError(
                f"{self.name}: truth covers [{self.truth.index[0]}, "
                f"{self.truth.index[-1] + STEP}); asked for [{targets[0]}, {targets[-1] + STEP})"
            )
        return self._truth_values[first : first + len(targets)]

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        return self._truth_at(targets).copy(), np.zeros(len(targets))


class NoisyOracle(Oracle):
    """Truth plus a seeded error that grows with lead time (see module docstring).

    Parameters
    ----------
    truth : Series [series units]
        The realised series.
    error_level : float [-]
        Error std at the reference lead as a fraction of ``sigma``; 0 gives the Oracle.
    seed : int
        Seed of the error draws.
    bounds
        Output clipping (the error is added first, then clipped).
    error_scale : float [series units], optional
        ``sigma``; default the standard deviation of ``truth`` (NaN ignored).
    reference_steps : int
        ``H_ref`` [intervals], default 96 (24 h).
    """

    name = "noisy_oracle"
    default_calibration = "model"  # its error distribution is known exactly

    def __init__(
        self,
        truth: pd.Series,
        error_level: float = 0.1,
        seed: int = 0,
        bounds: Bounds | None = None,
        error_scale: float | None = None,
        reference_steps: int = STEPS_PER_DAY,
        max_stale_steps: int | None = None,
    ) -> None:
        super().__init__(truth, bounds=bounds, max_stale_steps=max_stale_steps)
        if error_level < 0:
            raise ValueError(f"noisy_oracle: error_level must be >= 0, got {error_level}")
        if reference_steps < 1:
            raise ValueError(f"noisy_oracle: reference_steps must be >= 1, got {reference_steps}")
        self.error_level = float(error_level)
        self.seed = int(seed)
        self.reference_steps = int(reference_steps)
        sigma = float(np.nanstd(self._truth_values)) if error_scale is None else float(error_scale)
        self.error_scale = sigma if np.isfinite(sigma) else 0.0

    def error_path(self, issue_time: pd.Timestamp, horizon: int) -> np.ndarray:
        """The additive error for leads ``1..horizon`` at ``issue_time`` [series units]."""
        steps = int(pd.Timestamp(issue_time).value // STEP.value)
        rng = np.random.default_rng([self.seed, steps])
        walk = np.cumsum(rng.standard_normal(horizon))
        return self.error_level * self.error_scale * walk / np.sqrt(self.reference_steps)

    def lead_std(self, horizon: int) -> np.ndarray:
        """Error std for leads ``1..horizon`` [series units]."""
        leads = np.arange(1, horizon + 1)
        return self.error_level * self.error_scale * np.sqrt(leads / self.reference_steps)

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        truth = self._truth_at(targets)
        if self.error_level == 0.0:
            return truth.copy(), np.zeros(len(targets))
        return truth + self.error_path(targets[0], len(targets)), self.lead_std(len(targets))

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "error_level": self.error_level,
            "seed": self.seed,
            "error_scale": self.error_scale,
            "reference_steps": self.reference_steps,
        }


register_forecaster("oracle", Oracle)
register_forecaster("noisy_oracle", NoisyOracle)
