"""The quantization-to-power table: per (model, precision, GPU) serving figures.

The table is package data (``mpc_dc/params/quant_power_table.csv``) derived
from public measurements by :mod:`mpc_dc.params.derive_quant_table`; how each
column was obtained is in ``docs/quant_power_table.md`` and in each row's
``provenance``.

Power model of one instance serving ``x`` tokens/s (``0 <= x <=
tokens_per_s_at_slo``)::

    P(x) = idle_power_w + marginal_energy_per_token_j * x        [W]

which equals ``active_power_w`` at the operating point. ``energy_per_token_j``
is the measured *average* at the operating point (``active_power_w /
tokens_per_s_at_slo``); do not add it to the idle term.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import pandas as pd

from traces.errors import TraceError
from traces.validate import read_csv_checked

#: Precisions the table may hold.
PRECISIONS: tuple[str, ...] = ("BF16", "FP8", "INT8", "INT4")
#: ``basis`` values: the operating point was measured or derived from measurements.
BASES: tuple[str, ...] = ("measured", "derived")
#: Relative tolerance of the consistency checks (CSV keeps 6 significant digits).
_REL_TOL = 1e-3


@dataclass(frozen=True)
class QuantRow:
    """One (model, precision, GPU) row of the table.

    Parameters
    ----------
    model : str
        Model family, e.g. ``"qwen3-8b"``.
    hf_model_id : str
        Hugging Face id of the measured weights.
    precision : str
        ``BF16``, ``FP8``, ``INT8`` or ``INT4`` (weights).
    gpu : str
        GPU model, e.g. ``"H100"``.
    gpus_per_instance : int [GPUs]
    max_batch : int [requests]
        vLLM ``max_num_seqs`` of the operating point.
    itl_slo_p90_ms : float [ms]
        Latency SLO on p90 inter-token latency the operating point meets.
    tokens_per_s_at_slo : float [tokens/s]
        Output throughput of one instance at the operating point.
    tokens_per_s_per_gpu : float [tokens/s/GPU]
    active_power_w : float [W]
        Power of one instance (all its GPUs) at the operating point.
    idle_power_w : float [W]
        Zero-load intercept of the instance's power line.
    energy_per_token_j : float [J/token]
        Average energy per output token at the operating point.
    marginal_energy_per_token_j : float [J/token]
        ``(active_power_w - idle_power_w) / tokens_per_s_at_slo``.
    itl_p90_ms : float [ms]
        p90 inter-token latency at the operating point.
    quality_delta_pct_points : float [Open LLM score points]
        Score at this precision minus score at BF16 (negative = worse).
    load_time_s : float [s]
        Time from start to serving (engine start + weight load).
    prefill_tokens_per_s : float [tokens/s]
        Prompt processing rate of one instance.
    weight_gb : float [GB]
        Weight bytes of one instance.
    basis : str
        ``measured`` or ``derived`` (the operating point).
    provenance : str
        How every figure of the row was obtained.
    """

    model: str
    hf_model_id: str
    precision: str
    gpu: str
    gpus_per_instance: int
    max_batch: int
    itl_slo_p90_ms: float
    tokens_per_s_at_slo: float
    tokens_per_s_per_gpu: float
    active_power_w: float
    idle_power_w: float
    energy_per_token_j: float
    marginal_energy_per_token_j: float
    itl_p90_ms: float
    quality_delta_pct_points: float
    load_time_s: float
    prefill_tokens_per_s: float
    weight_gb: float
    basis: str
    provenance: str

    @property
    def quality_loss_pct_points(self) -> float:
        """Quality loss vs BF16 [points], ``-quality_delta_pct_points`` (>= 0 = worse)."""
        return -self.quality_delta_pct_points

    def power_w(self, tokens_per_s: float) -> float:
        """Instance power at ``tokens_per_s`` [W] on the affine model (no extrapolation).

        Raises
        ------
        ValueError
            If ``tokens_per_s`` is outside ``[0, tokens_per_s_at_slo]``.
        """
        if not 0.0 <= tokens_per_s <= self.tokens_per_s_at_slo * (1 + 1e-9):
            raise ValueError(
                f"{self.model} {self.precision}: {tokens_per_s:g} tokens/s outside "
                f"[0, {self.tokens_per_s_at_slo:g}]"
            )
        return self.idle_power_w + self.marginal_energy_per_token_j * tokens_per_s


_TEXT_FIELDS = ("model", "hf_model_id", "precision", "gpu", "basis", "provenance")
_INT_FIELDS = ("gpus_per_instance", "max_batch")
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(QuantRow))


@dataclass(frozen=True)
class QuantTable:
    """The validated table; look rows up by (model, precision[, gpu]).

    Parameters
    ----------
    rows : tuple of QuantRow
    source : str
        Where the table was read from.
    """

    rows: tuple[QuantRow, ...]
    source: str

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[QuantRow]:
        return iter(self.rows)

    @property
    def models(self) -> tuple[str, ...]:
        """Model families, in table order."""
        return tuple(dict.fromkeys(r.model for r in self.rows))

    def precisions(self, model: str) -> tuple[str, ...]:
        """Precisions available for ``model``, in table order."""
        found = tuple(r.precision for r in self.rows if r.model == model)
        if not found:
            raise KeyError(f"{self.source}: no model '{model}'; models: {', '.join(self.models)}")
        return found

    def get(self, model: str, precision: str, gpu: str | None = None) -> QuantRow:
        """The row of (``model``, ``precision``) on ``gpu`` (any GPU when ``None``).

        Raises
        ------
        KeyError
            When no row matches, or several do and ``gpu`` was not given.
        """
        found = [
            r
            for r in self.rows
            if r.model == model and r.precision == precision and (gpu is None or r.gpu == gpu)
        ]
        if not found:
            have = ", ".join(self.precisions(model))
            raise KeyError(
                f"{self.source}: no row for model '{model}' precision '{precision}'"
                + (f" gpu '{gpu}'" if gpu else "")
                + f"; available precisions: {have}"
            )
        if len(found) > 1:
            raise KeyError(f"{self.source}: '{model}' '{precision}' is on several GPUs; name one")
        return found[0]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with :data:`COLUMNS`."""
        return pd.DataFrame([r.__dict__ for r in self.rows], columns=list(COLUMNS))


def default_table_path() -> Path:
    """Path of the committed table (package data)."""
    return Path(str(resources.files("mpc_dc.params").joinpath("quant_power_table.csv")))


def load_quant_table(path: str | Path | None = None) -> QuantTable:
    """Read and validate the quantization-to-power table.

    Parameters
    ----------
    path
        CSV file; the committed package table when ``None``.

    Returns
    -------
    QuantTable

    Raises
    ------
    TraceError
        One line naming the file, line (row) and column: missing column,
        empty cell, non-numeric or non-positive value, unknown precision or
        basis, duplicated (model, precision, GPU), empty provenance, or figures
        that contradict each other (power ≠ energy/token × tokens/s, idle above
        active power, ITL above the SLO, tokens/s per GPU inconsistent).
    """
    source = Path(path) if path is not None else default_table_path()
    frame = read_csv_checked(source, required=COLUMNS, dtype={c: "str" for c in _TEXT_FIELDS})
    rows: list[QuantRow] = []
    seen: dict[tuple[str, str, str], int] = {}
    for pos, record in enumerate(frame.to_dict("records")):
        line = pos + 2
        values: dict[str, object] = {}
        for name in COLUMNS:
            raw = record[name]
            if name in _TEXT_FIELDS:
                text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else raw
                text = str(text).strip()
                if not text:
                    raise TraceError(source, "empty cell; expected text", line=line, field=name)
                values[name] = text
                continue
            values[name] = _number(source, raw, line, name, integer=name in _INT_FIELDS)
        row = QuantRow(**values)  # type: ignore[arg-type]
        _check_row(source, row, line)
        key = (row.model, row.precision, row.gpu)
        if key in seen:
            raise TraceError(
                source,
                f"duplicated (model, precision, gpu) {key}; first on line {seen[key]}",
                line=line,
                field="precision",
            )
        seen[key] = line
        rows.append(row)
    return QuantTable(rows=tuple(rows), source=str(source))


def _number(source: Path, raw: object, line: int, name: str, *, integer: bool) -> float | int:
    try:
        number = float(str(raw))
    except ValueError:
        raise TraceError(source, f"expected a number, got {raw!r}", line=line, field=name) from None
    if not math.isfinite(number):
        raise TraceError(source, f"expected a finite number, got {raw!r}", line=line, field=name)
    if integer:
        if number != int(number) or number < 1:
            raise TraceError(
                source, f"expected a positive integer, got {raw!r}", line=line, field=name
            )
        return int(number)
    return number


def _check_row(source: Path, row: QuantRow, line: int) -> None:
    def fail(field: str, message: str) -> None:
        raise TraceError(source, message, line=line, field=field)

    if row.precision not in PRECISIONS:
        fail("precision", f"unknown precision {row.precision!r}; expected one of {PRECISIONS}")
    if row.basis not in BASES:
        fail("basis", f"unknown basis {row.basis!r}; expected one of {BASES}")
    for name in (
        "itl_slo_p90_ms",
        "tokens_per_s_at_slo",
        "tokens_per_s_per_gpu",
        "active_power_w",
        "energy_per_token_j",
        "itl_p90_ms",
        "load_time_s",
        "prefill_tokens_per_s",
        "weight_gb",
    ):
        if getattr(row, name) <= 0:
            fail(name, f"expected a positive value, got {getattr(row, name):g}")
    for name in ("idle_power_w", "marginal_energy_per_token_j"):
        if getattr(row, name) < 0:
            fail(name, f"expected a non-negative value, got {getattr(row, name):g}")
    if row.idle_power_w > row.active_power_w:
        fail("idle_power_w", f"idle {row.idle_power_w:g} W exceeds active {row.active_power_w:g} W")
    if row.itl_p90_ms > row.itl_slo_p90_ms * (1 + _REL_TOL):
        fail("itl_p90_ms", f"{row.itl_p90_ms:g} ms exceeds the SLO {row.itl_slo_p90_ms:g} ms")
    expected_power = row.energy_per_token_j * row.tokens_per_s_at_slo
    if not math.isclose(row.active_power_w, expected_power, rel_tol=2e-2):
        fail(
            "active_power_w",
            f"{row.active_power_w:g} W differs from energy/token x tokens/s = "
            f"{expected_power:g} W by more than 2 %",
        )
    per_gpu = row.tokens_per_s_at_slo / row.gpus_per_instance
    if not math.isclose(row.tokens_per_s_per_gpu, per_gpu, rel_tol=_REL_TOL):
        fail("tokens_per_s_per_gpu", f"expected tokens_per_s_at_slo / gpus = {per_gpu:g}")
    marginal = (row.active_power_w - row.idle_power_w) / row.tokens_per_s_at_slo
    if not math.isclose(row.marginal_energy_per_token_j, marginal, rel_tol=_REL_TOL, abs_tol=1e-6):
        fail("marginal_energy_per_token_j", f"expected (active - idle) / tokens/s = {marginal:g}")
