"""Readers of the public data formats, validation, the 15-min grid and the synthetic default.

Every reader follows pvlib's ``read_*(path) -> (DataFrame, TraceMetadata)``:
a UTC ``DatetimeIndex`` of interval starts and units in column names.
"""

from traces.errors import ConfigError, TraceError, TraceRangeError
from traces.grid import STEP, STEP_H, STEPS_PER_DAY, Gap, GapPolicy, Resample, TraceMetadata
from traces.trace import Trace

__all__ = [
    "STEP",
    "STEPS_PER_DAY",
    "STEP_H",
    "ConfigError",
    "Gap",
    "GapPolicy",
    "Resample",
    "Trace",
    "TraceError",
    "TraceMetadata",
    "TraceRangeError",
]
