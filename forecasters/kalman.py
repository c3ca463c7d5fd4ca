"""A small Kalman filter for fitted linear Gaussian state-space models (the MPC hot path).

Between refits the parameters of a SARIMAX model are fixed, so absorbing a new
observation and forecasting are a few small matrix products. statsmodels'
``results.extend`` and ``get_forecast`` each rebuild model objects (about 2 ms per
call); this filter does the same arithmetic in tens of microseconds, starting
from the state statsmodels predicted after the fit. Tests compare its forecasts
with statsmodels re-filtering the full history on the same parameters.

Model (one observed series, time-invariant matrices except the observation
intercept, which carries the regression on exogenous inputs)::

    y[t]   = Z a[t] + d[t] + e[t],          e ~ N(0, H)
    a[t+1] = T a[t] + c + R η[t],           η ~ N(0, Q)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from statsmodels.tsa.statespace.mlemodel import MLEResults

from forecasters.memo import enabled


@dataclass
class KalmanFilter:
    """Predicted state ``a[t]``, its covariance ``P[t]`` and the system matrices.

    Attributes
    ----------
    Z : ndarray, shape (m,)
    H : float
    T : ndarray, shape (m, m)
    c : ndarray, shape (m,)
    RQR : ndarray, shape (m, m)
    beta : ndarray, shape (k,)
        Regression coefficients: ``d[t] = x[t] @ beta``.
    a : ndarray, shape (m,)
        Predicted state of the next observation.
    P : ndarray, shape (m, m)
    """

    Z: np.ndarray
    H: float
    T: np.ndarray
    c: np.ndarray
    RQR: np.ndarray
    beta: np.ndarray
    a: np.ndarray
    P: np.ndarray
    _se_cache: tuple[bytes, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_results(cls, res: MLEResults) -> KalmanFilter:
        """The filter positioned after the last observation of ``res``.

        Raises
        ------
        ValueError
            If the model has time-varying matrices other than the observation
            intercept (not the case for SARIMAX with a constant trend).
        """
        fr = res.filter_results
        for name in ("design", "obs_cov", "transition", "selection", "state_cov"):
            if getattr(fr, name).shape[-1] != 1:
                raise ValueError(f"KalmanFilter: time-varying '{name}' is not supported")
        state_intercept = np.asarray(fr.state_intercept)
        if not np.allclose(state_intercept, state_intercept[:, -1:]):
            raise ValueError("KalmanFilter: time-varying state intercept is not supported")
        if np.asarray(fr.design).shape[0] != 1:
            raise ValueError("KalmanFilter: only one observed series is supported")
        R = np.asarray(fr.selection)[:, :, 0]
        Q = np.asarray(fr.state_cov)[:, :, 0]
        names = list(res.model.param_names)
        exog_names = list(getattr(res.model, "exog_names", None) or [])
        beta = np.asarray(res.params)[[names.index(n) for n in exog_names]] if exog_names else (
            np.zeros(0))
        return cls(
            Z=np.asarray(fr.design)[0, :, 0].copy(),
            H=float(np.asarray(fr.obs_cov)[0, 0, 0]),
            T=np.asarray(fr.transition)[:, :, 0].copy(),
            c=state_intercept[:, -1].copy(),
            RQR=R @ Q @ R.T,
            beta=beta.astype(float),
            a=np.asarray(fr.predicted_state)[:, -1].copy(),
            P=np.asarray(fr.predicted_state_cov)[:, :, -1].copy(),
        )

    def _intercepts(self, exog: np.ndarray | None, n: int) -> np.ndarray:
        if exog is None or self.beta.size == 0:
            return np.zeros(n)
        return np.asarray(exog, dtype=float) @ self.beta

    def update(self, y: np.ndarray, exog: np.ndarray | None = None) -> None:
        """Absorb observations ``y`` (NaN = missing) with regressors ``exog`` (n, k)."""
        d = self._intercepts(exog, len(y))
        Z, T, c, RQR = self.Z, self.T, self.c, self.RQR
        a, P = self.a, self.P
        for value, intercept in zip(np.asarray(y, dtype=float), d, strict=True):
            if np.isnan(value):
                a = T @ a + c
                P = T @ P @ T.T + RQR
                continue
            PZ = P @ Z
            F = float(Z @ PZ) + self.H
            K = (T @ PZ) / F
            v = value - float(Z @ a) - intercept
            a = T @ a + c + K * v
            P = T @ P @ T.T + RQR - np.outer(K, K) * F
            P = 0.5 * (P + P.T)  # keep it symmetric against round-off over long runs
        self.a, self.P = a, P

    def forecast(self, n: int, exog: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error of the next ``n`` observations."""
        d = self._intercepts(exog, n)
        mean = np.empty(n)
        a = self.a
        for h in range(n):
            mean[h] = float(self.Z @ a) + d[h]
            a = self.T @ a + self.c
        return mean, self._standard_errors(n)

    def _standard_errors(self, n: int) -> np.ndarray:
        """Standard errors of the next ``n`` observations. They depend on ``P`` alone
        (the system matrices are fixed): once the filter has reached its steady state,
        ``P`` comes back bit for bit hour after hour, and the errors of the last call
        are reused (keyed by ``P``'s bytes; off under :func:`forecasters.memo.disabled`)."""
        key = self.P.tobytes()
        cached = self._se_cache
        if enabled() and cached is not None and cached[0] == key and len(cached[1]) >= n:
            return cached[1][:n].copy()
        se = np.empty(n)
        P = self.P
        for h in range(n):
            se[h] = np.sqrt(max(float(self.Z @ P @ self.Z) + self.H, 0.0))
            P = self.T @ P @ self.T.T + self.RQR
        if enabled():
            self._se_cache = (key, se.copy())
        return se
