"""Calendar regressors: public holidays of the target's local date (the ``holidays`` package).

A holiday is known years ahead, so its indicator is a function of the target
timestamp alone, like the Fourier terms of the statistical models: it carries no
information from the future and needs no feed. Load and request demand drop on
public holidays much as on a Sunday; the models that take ``holidays=`` (a country
code, e.g. ``"US"``) add the indicator of the target's *local* date as a regressor.

The data sets' calendars: the Google cell-a trace (May 2019) and NYISO series have
real dates; BurstGPT has none (its day 0 is placed on the calendar by
``traces.burstgpt.DEFAULT_HOURLY_ORIGIN``), so a holiday there is a modelling
choice, not an observed effect.
"""

from __future__ import annotations

from functools import lru_cache

import holidays as holidays_lib
import numpy as np
import pandas as pd


@lru_cache(maxsize=32)
def _holiday_dates(country: str, subdiv: str | None, first_year: int, last_year: int) -> np.ndarray:
    """Sorted holiday dates of ``country`` (and ``subdiv``) as ``datetime64[D]``."""
    try:
        table = holidays_lib.country_holidays(
            country, subdiv=subdiv, years=range(first_year, last_year + 1)
        )
    except NotImplementedError:
        raise ValueError(
            f"holidays: unknown country code {country!r} (subdivision {subdiv!r}); expected an "
            f"ISO 3166 code the 'holidays' package knows, e.g. 'US'"
        ) from None
    return np.array(sorted(table), dtype="datetime64[D]")


def holiday_flags(
    starts: pd.DatetimeIndex, country: str, tz: str, subdiv: str | None = None
) -> np.ndarray:
    """1.0 where the local date of each interval start is a public holiday, else 0.0.

    Parameters
    ----------
    starts : DatetimeIndex (UTC)
        Interval (or hour) starts.
    country : str
        ISO 3166 country code of the ``holidays`` package, e.g. ``"US"``.
    tz : str
        IANA time zone whose calendar date counts.
    subdiv : str, optional
        Subdivision (state) code, e.g. ``"NY"``.

    Returns
    -------
    ndarray [-]
    """
    if len(starts) == 0:
        return np.zeros(0)
    local = pd.DatetimeIndex(starts).tz_convert(tz).tz_localize(None)
    days = local.to_numpy().astype("datetime64[D]")
    years = local.year
    dates = _holiday_dates(country, subdiv, int(years.min()), int(years.max()))
    return np.isin(days, dates).astype(float)
