"""Perfect foresight and controlled forecast error.

:class:`Oracle` returns the truth for the target times: it deliberately looks ahead
and is the perfect-foresight reference of every study. :class:`NoisyOracle` adds a
seeded error whose size is set by one parameter, for forecast-error studies.

Error model of :class:`NoisyOracle`: for an issue time ``t`` and target
``t + k * 15 min`` (lead ``k + 1`` intervals), three parameters set the error's
spread, its correlation along the lead and its bias:

    e[t, 0] = c * z[t, 0],   e[t, k] = phi * e[t, k - 1] + c * z[t, k],   z ~ N(0, 1) iid,
    error[t, k] = bias * sigma + e[t, k],

an AR(1) path along the lead with coefficient ``phi`` (``autocorrelation``, the
correlation of the errors of two neighbouring leads), scaled so that
``std(e)`` equals ``level * sigma`` at the reference lead ``H_ref`` (96 intervals =
24 h): ``c = level * sigma / sqrt(S(H_ref))`` with ``S(K) = sum_{j < K} phi^(2 j)``,
and ``std(e[t, k]) = c * sqrt(S(k + 1))``. ``sigma`` is the standard deviation of the
truth (or ``error_scale``).

* ``phi = 1`` (the default) is a random walk: the std grows with the square root of
  the lead, ``level * sigma * sqrt((k + 1) / H_ref)``;
* ``phi < 1``: the std saturates after about ``1 / (1 - phi)`` intervals and the
  errors of distant leads decorrelate; ``phi = 0`` is white noise of std
  ``level * sigma`` at every lead;
* ``bias`` (a fraction of ``sigma``, signed) shifts every lead alike.

Errors are correlated along a forecast, as real forecast errors are, and
independent between issue times. The draws ``z[t, :]``
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
    bias : float [-]
        Constant error at every lead as a fraction of ``sigma`` (signed).
    autocorrelation : float [-]
        ``phi`` in [0, 1]: correlation of the errors of neighbouring leads (1: random
        walk, 0: white noise).
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
        bias: float = 0.0,
        autocorrelation: float = 1.0,
    ) -> None:
        super().__init__(truth, bounds=bounds, max_stale_steps=max_stale_steps)
        if error_level < 0:
            raise ValueError(f"noisy_oracle: error_level must be >= 0, got {error_level}")
        if reference_steps < 1:
            raise ValueError(f"noisy_oracle: reference_steps must be >= 1, got {reference_steps}")
        if not 0.0 <= autocorrelation <= 1.0:
            raise ValueError(
                f"noisy_oracle: autocorrelation must lie in [0, 1], got {autocorrelation}")
        if not np.isfinite(bias):
            raise ValueError(f"noisy_oracle: bias must be finite, got {bias}")
        self.error_level = float(error_level)
        self.seed = int(seed)
        self.reference_steps = int(reference_steps)
        self.bias = float(bias)
        self.autocorrelation = float(autocorrelation)
        sigma = float(np.nanstd(self._truth_values)) if error_scale is None else float(error_scale)
        self.error_scale = sigma if np.isfinite(sigma) else 0.0

    def _partial_sums(self, n: int) -> np.ndarray:
        """``S(k) = sum_{j < k} phi^(2 j)`` for ``k = 1..n``."""
        phi2 = self.autocorrelation**2
        if phi2 == 1.0:
            return np.arange(1, n + 1, dtype=float)
        return (1.0 - phi2 ** np.arange(1, n + 1)) / (1.0 - phi2)

    def _innovation_scale(self) -> float:
        """``c`` of the module docstring [series units]."""
        ref = float(self._partial_sums(self.reference_steps)[-1])
        return self.error_level * self.error_scale / np.sqrt(ref)

    def error_path(self, issue_time: pd.Timestamp, horizon: int) -> np.ndarray:
        """The additive error for leads ``1..horizon`` at ``issue_time`` [series units]."""
        steps = int(pd.Timestamp(issue_time).value // STEP.value)
        rng = np.random.default_rng([self.seed, steps])
        z = rng.standard_normal(horizon)
        offset = self.bias * self.error_scale
        if self.autocorrelation == 1.0:
            # The random walk, written as before the AR(1) generalisation (same bits).
            walk = np.cumsum(z)
            return offset + self.error_level * self.error_scale * walk / np.sqrt(
                self.reference_steps)
        c, phi = self._innovation_scale(), self.autocorrelation
        path = np.empty(horizon)
        level = 0.0
        for k in range(horizon):
            level = phi * level + c * z[k]
            path[k] = level
        return offset + path

    def lead_std(self, horizon: int) -> np.ndarray:
        """Error std for leads ``1..horizon`` (about the bias) [series units]."""
        return self._innovation_scale() * np.sqrt(self._partial_sums(horizon))

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        truth = self._truth_at(targets)
        if self.error_level == 0.0 and self.bias == 0.0:
            return truth.copy(), np.zeros(len(targets))
        return truth + self.error_path(targets[0], len(targets)), self.lead_std(len(targets))

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "error_level": self.error_level,
            "seed": self.seed,
            "error_scale": self.error_scale,
            "reference_steps": self.reference_steps,
            "bias": self.bias,
            "autocorrelation": self.autocorrelation,
        }


register_forecaster("oracle", Oracle)
register_forecaster("noisy_oracle", NoisyOracle)
