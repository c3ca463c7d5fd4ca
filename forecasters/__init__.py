"""Forecasters: one protocol, perfect foresight, controlled error, naive and statistical models,
direct median regression, combinations, and adapters to statsforecast and sktime.

See ``docs/forecasters.md`` for the time rule (no lookahead), the refit schedule and
the model choices.
"""

from forecasters.base import (
    DEFAULT_LEVELS,
    BaseForecaster,
    Bounds,
    Forecaster,
    ForecastFrame,
    LookaheadError,
    NotFittedError,
    forecaster_names,
    make_forecaster,
    register_forecaster,
)
from forecasters.combination import Combination
from forecasters.direct import DirectLad
from forecasters.known_ahead import KnownAhead
from forecasters.naive import Persistence, SeasonalNaive
from forecasters.oracle import NoisyOracle, Oracle
from forecasters.statistical import (
    AutoSarimaxForecaster,
    EtsForecaster,
    SarimaxForecaster,
    fourier_terms,
)

__all__ = [
    "DEFAULT_LEVELS",
    "AutoSarimaxForecaster",
    "BaseForecaster",
    "Bounds",
    "Combination",
    "DirectLad",
    "EtsForecaster",
    "ForecastFrame",
    "Forecaster",
    "KnownAhead",
    "LookaheadError",
    "NoisyOracle",
    "NotFittedError",
    "Oracle",
    "Persistence",
    "SarimaxForecaster",
    "SeasonalNaive",
    "forecaster_names",
    "fourier_terms",
    "make_forecaster",
    "register_forecaster",
]
