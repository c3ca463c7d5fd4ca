"""Recognise a public data file by its header and read it with the matching reader.

:func:`sniff_format` looks only at the first lines (or, for folders and JSON, at
names and keys); :func:`read_any` dispatches to the reader registered for that
format. Readers are imported lazily so that this module stays cheap to import.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata
from traces.validate import read_text

READERS: dict[str, tuple[str, str]] = {
    "eia_lmp": ("traces.eia", "read_eia_lmp"),
    "greendcc_prices": ("traces.greendcc", "read_standardized_prices"),
    "electricitymaps_carbon": ("traces.greendcc", "read_electricitymaps_carbon"),
    "eia930_fuel_mix": ("traces.eia930", "read_eia930_fuel_mix"),
    "burstgpt_requests": ("traces.burstgpt", "read_burstgpt_requests"),
    "burstgpt_hourly": ("traces.burstgpt", "read_burstgpt_hourly"),
    "google_pdu": ("traces.google_power", "read_google_pdu"),
    "windpowerlib_weather": ("traces.windpowerlib", "read_weather"),
    "windpowerlib_power_curves": ("traces.windpowerlib", "read_power_curves_table"),
    "mlenergy_v3": ("traces.llm_power", "read_mlenergy_v3"),
    "mlenergy_v3_dir": ("traces.llm_power", "read_mlenergy_v3_dir"),
    "mlenergy_v2": ("traces.llm_power", "read_mlenergy_v2"),
    "llm_perf": ("traces.llm_power", "read_llm_perf"),
}
"""Format name -> (module, reader function). Every reader returns ``(frame, metadata)``."""

_HEADER_RULES: tuple[tuple[str, Callable[[list[str]], bool]], ...] = (
    (
        "greendcc_prices",
        lambda h: h[:3] == ["Datetime (UTC)", "Datetime (Local)", "Price (USD/MWh)"],
    ),
    ("electricitymaps_carbon", lambda h: h[:1] == ["Datetime (UTC)"] and "Zone Id" in h),
    ("eia930_fuel_mix", lambda h: h[:1] == ["timestamp"] and {"WND", "avg_CI"} <= set(h)),
    ("burstgpt_hourly", lambda h: h[:2] == ["day", "hour"] and "conversation" in h),
    ("burstgpt_requests", lambda h: {"Timestamp", "Request tokens", "Response tokens"} <= set(h)),
    ("google_pdu", lambda h: {"time", "measured_power_util"} <= set(h)),
    ("windpowerlib_weather", lambda h: h[:1] == ["variable_name"]),
    ("windpowerlib_power_curves", lambda h: h[:2] == ["turbine_type", "0.0"]),
    ("llm_perf", lambda h: any(c.startswith("Energy (tokens/kWh)") for c in h)),
)


def sniff_format(path: str | Path) -> str:
    """Name of the format of ``path`` (a key of :data:`READERS`).

    Raises
    ------
    TraceError
        One line naming the file and the formats known, if nothing matches.
    """
    source = Path(path)
    if source.is_dir():
        if any(source.rglob("schema.yaml")):
            return "mlenergy_v2"
        if any(source.glob("*__*.json")) or any(source.glob("models/*__*.json")):
            return "mlenergy_v3_dir"
        raise TraceError(
            source, f"unknown data folder; expected an ML.ENERGY v2 or v3 folder{_known()}"
        )
    text = read_text(source)
    if source.suffix.lower() == ".json":
        try:
            document: Any = json.loads(text)
        except json.JSONDecodeError as err:
            raise TraceError(source, f"invalid JSON ({err.msg})", line=err.lineno) from None
        if isinstance(document, dict) and "configurations" in document:
            return "mlenergy_v3"
        raise TraceError(
            source, f"unknown JSON format; expected an ML.ENERGY v3 model file{_known()}"
        )
    lines = text.splitlines()
    first = lines[0] if lines else ""
    if len(lines) >= 4 and "Marginal Prices" in first and lines[3].startswith("UTC Timestamp"):
        return "eia_lmp"
    header = [cell.strip() for cell in first.split(",")]
    for name, rule in _HEADER_RULES:
        if rule(header):
            return name
    raise TraceError(source, f"unknown format (first line starts {first[:50]!r}){_known()}", line=1)


def _known() -> str:
    return "; known formats: " + ", ".join(READERS)


def reader_for(name: str) -> Callable[..., tuple[pd.DataFrame, TraceMetadata]]:
    """The reader function registered for format ``name`` (imported on first use)."""
    if name not in READERS:
        raise KeyError(f"unknown format {name!r}; known: {sorted(READERS)}")
    module_name, function = READERS[name]
    reader: Callable[..., tuple[pd.DataFrame, TraceMetadata]] = getattr(
        importlib.import_module(module_name), function
    )
    return reader


def read_any(path: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Sniff the format of ``path`` and read it with its reader's defaults.

    Returns
    -------
    frame, metadata
        As returned by the matching reader (see :data:`READERS`).
    """
    return reader_for(sniff_format(path))(path)
