"""Adapters: statsforecast and sktime models behind our protocol (optional extras).

``pip install mpc-dc[statsforecast]`` / ``mpc-dc[sktime]``. Each adapter is an
:class:`~forecasters.hourly.HourlyForecaster`, so the library model sees complete
UTC hours (the mean of four published quarters), is refitted every
``refit_every_hours`` on the last ``fit_window_days``, and its hourly forecast is
held over the quarters; the time rule, the publication rule, bounds and calibrated
quantiles are ours. Missing hours are filled linearly for the library (neither
library takes NaN); an hour never observed is not invented beyond the window's ends
(held).

* statsforecast (``sf_autoarima``, ``sf_autoets``, ``sf_mstl``): fitted with
  ``fit(y)``; between refits the fitted model is applied to the newest window with
  ``forward(y, h)`` (its parameters are not re-estimated). The model std is half the
  width of its 68.27 % interval.
* sktime (``sktime``, any sktime forecaster: ``estimator=`` an instance or a dotted
  class path, ``estimator_params=``): a clone is fitted on the window; new hours are
  passed with ``update(y, update_params=False)``; intervals where the estimator has
  the ``capability:pred_int`` tag.

The adapters are registered only when their library imports; with it missing,
``make_forecaster`` names only what is installed.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import register_forecaster
from forecasters.hourly import HOURS_PER_DAY, HOURS_PER_WEEK, HourlyForecaster

logger = logging.getLogger(__name__)

ONE_SIGMA_PCT = 68.27
"""Coverage [%] of a Gaussian one-sigma interval, to read a model std off an interval."""
STATSFORECAST_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "sf_autoarima": (
        "AutoARIMA",
        # The default seasonal search on 672 hourly values takes ~50 s; the
        # approximate likelihood with at most one seasonal AR/MA term takes ~1.5 s.
        {"season_length": HOURS_PER_DAY, "approximation": True, "max_P": 1, "max_Q": 1,
         "max_D": 0},
    ),
    "sf_autoets": ("AutoETS", {"season_length": HOURS_PER_DAY}),
    "sf_mstl": ("MSTL", {"season_length": [HOURS_PER_DAY, HOURS_PER_WEEK]}),
}
"""Registry name -> (statsforecast model class, default constructor parameters)."""


def _filled(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN, held at the ends (the libraries take no NaN)."""
    series = pd.Series(values, dtype=float)
    if series.isna().all():
        raise ValueError("adapter: no observed hour in the window")
    return series.interpolate(limit_direction="both").to_numpy()


class StatsforecastForecaster(HourlyForecaster):
    """A statsforecast model (module docstring).

    Parameters
    ----------
    model : str
        Class name in ``statsforecast.models`` (``AutoARIMA``, ``AutoETS``, ``MSTL``...).
    model_params : Mapping, optional
        Its constructor parameters.
    **kwargs
        See :class:`~forecasters.hourly.HourlyForecaster` (no regressors).
    """

    name = "statsforecast"
    scoring_every_hours = 6  # forward() costs up to ~0.3 s (MSTL): score every 6 h

    def __init__(
        self, model: str = "AutoETS", model_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.n_regressors:
            raise ValueError(f"{self.name}: the adapter takes no regressors")
        module = importlib.import_module("statsforecast.models")
        try:
            self._cls = getattr(module, model)
        except AttributeError:
            raise ValueError(f"{self.name}: statsforecast.models has no model '{model}'") from None
        self.model = model
        self.model_params = dict(model_params or {})
        self._model: Any = None

    def _window(self) -> np.ndarray:
        n = len(self._hourly)
        first = max(0, n - round(self.fit_window_days * HOURS_PER_DAY))
        return _filled(self._hourly.values[first:n])

    def _estimate(self, endog: np.ndarray, first_hour: int) -> None:
        model = self._cls(**self.model_params)
        with warnings.catch_warnings():
            # Convergence notes of the library's optimiser; the fit is still usable.
            warnings.simplefilter("ignore", UserWarning)
            model.fit(_filled(endog))
        self._model = model

    def _absorb(self, endog: np.ndarray, first_hour: int) -> None:
        """The fitted model is applied to the newest window when forecasting."""

    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        level = [ONE_SIGMA_PCT]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = self._model.forward(y=self._window(), h=n, level=level)
        mean = np.asarray(out["mean"], dtype=float)
        lo, hi = out.get(f"lo-{ONE_SIGMA_PCT}"), out.get(f"hi-{ONE_SIGMA_PCT}")
        se = (np.asarray(hi, float) - np.asarray(lo, float)) / 2 if lo is not None else (
            np.full(n, np.nan))
        return mean, se

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {"model": self.model, "model_params": self.model_params}


class SktimeForecaster(HourlyForecaster):
    """Any sktime forecaster (module docstring).

    Parameters
    ----------
    estimator : sktime forecaster or str, optional
        An instance (cloned at each refit) or a dotted class path; default
        ``sktime.forecasting.theta.ThetaForecaster`` with an additive 24-h season (the
        multiplicative default fails on zeros).
    estimator_params : Mapping, optional
        Constructor parameters when ``estimator`` is a path.
    **kwargs
        See :class:`~forecasters.hourly.HourlyForecaster` (no regressors).
    """

    name = "sktime"
    scoring_every_hours = 6

    def __init__(
        self,
        estimator: Any = None,
        estimator_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if self.n_regressors:
            raise ValueError(f"{self.name}: the adapter takes no regressors")
        if estimator is None:
            estimator = "sktime.forecasting.theta.ThetaForecaster"
            estimator_params = {"sp": HOURS_PER_DAY, "deseasonalize_model": "additive"} | dict(
                estimator_params or {})
        if isinstance(estimator, str):
            module_name, _, cls_name = estimator.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module_name), cls_name)
            except (ImportError, AttributeError, ValueError):
                raise ValueError(f"{self.name}: cannot import estimator '{estimator}'") from None
            estimator = cls(**dict(estimator_params or {}))
        self.estimator = estimator
        self._est: Any = None

    def _index(self, first_hour: int, n: int) -> pd.DatetimeIndex:
        # sktime wants a regular, tz-naive index with a frequency (UTC hours).
        return pd.date_range(self.hour_start(first_hour).tz_localize(None), periods=n, freq="h")

    def _estimate(self, endog: np.ndarray, first_hour: int) -> None:
        est = self.estimator.clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            est.fit(pd.Series(_filled(endog), index=self._index(first_hour, len(endog))))
        self._est = est
        self._fed = first_hour + len(endog)

    def _absorb(self, endog: np.ndarray, first_hour: int) -> None:
        window = self._hourly.values[: first_hour + len(endog)]
        new = _filled(window)[first_hour:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._est.update(pd.Series(new, index=self._index(first_hour, len(new))),
                             update_params=False)
        self._fed = first_hour + len(endog)

    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        fh = np.arange(1, n + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            mean = np.asarray(self._est.predict(fh=fh), dtype=float).reshape(-1)
            se = np.full(n, np.nan)
            if self._est.get_tag("capability:pred_int", False):
                band = np.asarray(self._est.predict_interval(fh=fh, coverage=ONE_SIGMA_PCT / 100))
                se = (band[:, 1] - band[:, 0]) / 2
        return mean, se

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {"estimator": type(self.estimator).__name__}


def _statsforecast_factory(key: str) -> Any:
    model, defaults = STATSFORECAST_MODELS[key]

    def factory(model_params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        fc = StatsforecastForecaster(model, dict(defaults) | dict(model_params or {}), **kwargs)
        fc.name = key
        return fc

    return factory


def available(library: str) -> bool:
    """Whether ``library`` imports (an optional extra is installed)."""
    try:
        importlib.import_module(library)
    except ImportError:
        return False
    return True


if available("statsforecast"):
    for _key in STATSFORECAST_MODELS:
        register_forecaster(_key, _statsforecast_factory(_key))
if available("sktime"):
    register_forecaster("sktime", SktimeForecaster)
