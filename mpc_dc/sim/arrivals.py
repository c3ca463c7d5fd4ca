"""Request arrivals for the serving simulator: BurstGPT replay and generator fallback.

A run's requests are one set of numpy arrays sorted by arrival
(:class:`RequestArrays`), never one Python object per request: the request-level
server walks them with a tight loop (see :mod:`mpc_dc.sim.serving`).

Sources
-------
* **Replay** of a BurstGPT-format frame (``arrival_s, model, request_tokens,
  response_tokens[, log_type]``, as returned by
  :func:`traces.burstgpt.read_burstgpt_requests` read with both row policies
  ``KEEP``): trace second ``s`` is placed at run second ``s - trace_offset_s``.
* **Generator** (:func:`traces.synthetic.synth_requests`) for the part of the run
  the real slice does not cover: counts per 15-min interval (real BurstGPT hourly
  counts when given, else the calibrated count model) × token lengths from the
  copula fitted on the real rows.

Rules applied to both, in this order, each counted under a named reason
(``ArrivalStats.dropped``):

1. model mapping: a trace model name (``ChatGPT``, ``GPT-4``) is mapped to a served
   model family (a model of the quantization-to-power table); unmapped names are
   dropped as ``unmapped_model``;
2. zero-token rows (``request_tokens == 0``): :class:`ZeroTokenPolicy` ``DROP``
   (reason ``zero_request_tokens``) or ``KEEP``;
3. failed rows (``response_tokens == 0``, a row that is both counts under 2):
   ``DROP`` (reason ``failed_zero_response``) or ``KEEP`` (the request is served:
   its prompt is prefilled and it occupies a slot, but decodes no token);
4. rate multiplier ``m``: each request is kept ``floor(m)`` times plus once more
   with probability ``m - floor(m)`` (Bernoulli thinning below 1); copies after the
   first are shifted by ``U(0, copy_jitter_s)`` so that superposed copies are not
   simultaneous. The daily and weekly shape of the trace is kept (a time
   compression would change it); thinned rows count as ``thinned_by_rate``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from traces.errors import ConfigError
from traces.grid import STEP, STEP_H, STEPS_PER_DAY
from traces.synthetic import synth_requests

logger = logging.getLogger(__name__)

DEFAULT_MODEL_MAP: Mapping[str, str] = {"ChatGPT": "qwen3-32b", "GPT-4": "qwen3-235b-a22b"}
"""BurstGPT model names to served families: the smaller and the larger service tier."""

STEP_S = STEP.total_seconds()

SOURCE_TRACE = 0
SOURCE_GENERATOR = 1


class ZeroTokenPolicy(StrEnum):
    """What to do with a class of zero-token rows: ``DROP`` (counted) or ``KEEP`` (served)."""

    KEEP = "keep"
    DROP = "drop"


@dataclass(frozen=True)
class ArrivalConfig:
    """How a trace becomes the run's requests.

    Parameters
    ----------
    rate_multiplier : float [-]
        Scales the arrival rate (see module docstring, rule 4); ``> 0``.
    model_map : Mapping[str, str]
        Trace model name to served model family.
    zero_request : ZeroTokenPolicy
        Policy for rows with ``request_tokens == 0``.
    failed : ZeroTokenPolicy
        Policy for rows with ``response_tokens == 0`` (failed requests).
    copy_jitter_s : float [s]
        Spread of the copies made by a multiplier above 1.
    seed : int
        Seed of the thinning, the copy jitter and the generator.
    """

    rate_multiplier: float = 1.0
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))
    zero_request: ZeroTokenPolicy = ZeroTokenPolicy.DROP
    failed: ZeroTokenPolicy = ZeroTokenPolicy.KEEP
    copy_jitter_s: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.rate_multiplier > 0 and math.isfinite(self.rate_multiplier)):
            raise ConfigError("arrivals", "expected a positive number", key="rate_multiplier")
        if self.copy_jitter_s < 0:
            raise ConfigError("arrivals", "expected >= 0 seconds", key="copy_jitter_s")


@dataclass
class ArrivalStats:
    """Row accounting of one arrivals build.

    ``rows_in + copies_added == rows_out + sum(dropped)`` holds.

    Attributes
    ----------
    rows_in : int
        Rows read from the sources (trace and generator).
    rows_out : int
        Requests in the arrays.
    copies_added : int
        Extra copies made by a rate multiplier above 1.
    dropped : dict[str, int]
        Dropped rows by named reason.
    by_source : dict[str, int]
        Requests per source (``trace``, ``generator``).
    """

    rows_in: int = 0
    rows_out: int = 0
    copies_added: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Assert the row accounting closes."""
        if self.rows_in + self.copies_added != self.rows_out + sum(self.dropped.values()):
            raise AssertionError(f"arrival rows do not reconcile: {self}")


@dataclass(frozen=True)
class RequestArrays:
    """All requests of a run, sorted by arrival.

    Attributes
    ----------
    arrival_s : ndarray of float64 [s since run start]
    model : ndarray of int32
        Index into ``models``.
    request_tokens, response_tokens : ndarray of int64 [tokens]
    source : ndarray of int8
        ``SOURCE_TRACE`` or ``SOURCE_GENERATOR``.
    models : tuple of str
        Served model families.
    stats : ArrivalStats
    """

    arrival_s: np.ndarray
    model: np.ndarray
    request_tokens: np.ndarray
    response_tokens: np.ndarray
    source: np.ndarray
    models: tuple[str, ...]
    stats: ArrivalStats

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @classmethod
    def from_arrays(
        cls,
        arrival_s: np.ndarray,
        model: np.ndarray,
        request_tokens: np.ndarray,
        response_tokens: np.ndarray,
        models: tuple[str, ...],
    ) -> RequestArrays:
        """Requests given directly (tests, benchmarks); sorted here by arrival."""
        order = np.argsort(arrival_s, kind="stable")
        n = int(order.size)
        return cls(
            arrival_s=np.asarray(arrival_s, dtype=np.float64)[order],
            model=np.asarray(model, dtype=np.int32)[order],
            request_tokens=np.asarray(request_tokens, dtype=np.int64)[order],
            response_tokens=np.asarray(response_tokens, dtype=np.int64)[order],
            source=np.full(n, SOURCE_GENERATOR, dtype=np.int8),
            models=models,
            stats=ArrivalStats(rows_in=n, rows_out=n, by_source={"given": n}),
        )

    def interval_bounds(self, n_steps: int, step_s: float = STEP_S) -> np.ndarray:
        """Index of the first request of each interval, length ``n_steps + 1`` [-]."""
        edges = np.arange(n_steps + 1, dtype=np.float64) * step_s
        return np.searchsorted(self.arrival_s, edges, side="left")

    def per_interval(self, n_steps: int, step_s: float = STEP_S) -> dict[str, np.ndarray]:
        """Per-interval, per-model aggregates, shape ``(n_steps, n_models)``.

        Returns
        -------
        dict with ``requests`` [-], ``request_tokens`` and ``response_tokens`` [tokens].
        """
        k = np.floor(self.arrival_s / step_s).astype(np.int64)
        inside = (k >= 0) & (k < n_steps)
        flat = k[inside] * len(self.models) + self.model[inside]
        size = n_steps * len(self.models)
        shape = (n_steps, len(self.models))

        def count(weights: np.ndarray | None) -> np.ndarray:
            return np.bincount(flat, weights=weights, minlength=size).reshape(shape)

        return {
            "requests": count(None),
            "request_tokens": count(self.request_tokens[inside].astype(np.float64)),
            "response_tokens": count(self.response_tokens[inside].astype(np.float64)),
        }


def _apply_rules(
    arrival_s: np.ndarray,
    names: np.ndarray,
    request_tokens: np.ndarray,
    response_tokens: np.ndarray,
    config: ArrivalConfig,
    models: tuple[str, ...],
    rng: np.random.Generator,
    stats: ArrivalStats,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mapping, zero/failed policies and the rate multiplier (module docstring rules 1-4)."""
    stats.rows_in += int(arrival_s.size)
    model_pos = {m: i for i, m in enumerate(models)}
    uniq, inverse = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    lookup = np.array(
        [model_pos.get(config.model_map.get(str(u), ""), -1) for u in uniq], dtype=np.int32
    )
    model = lookup[inverse] if uniq.size else np.zeros(0, dtype=np.int32)
    keep = np.ones(arrival_s.size, dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        stats.dropped[reason] = stats.dropped.get(reason, 0) + int(hit.sum())
        keep[hit] = False

    drop(model < 0, "unmapped_model")
    if config.zero_request is ZeroTokenPolicy.DROP:
        drop(request_tokens == 0, "zero_request_tokens")
    if config.failed is ZeroTokenPolicy.DROP:
        drop(response_tokens == 0, "failed_zero_response")
    m = config.rate_multiplier
    copies = np.full(arrival_s.size, math.floor(m), dtype=np.int64)
    frac = m - math.floor(m)
    if frac > 0:
        copies += rng.random(arrival_s.size) < frac
    thinned = keep & (copies == 0)
    stats.dropped["thinned_by_rate"] = stats.dropped.get("thinned_by_rate", 0) + int(thinned.sum())
    copies[~keep] = 0
    stats.copies_added += int(np.maximum(copies - 1, 0).sum())
    idx = np.repeat(np.arange(arrival_s.size), copies)
    out_arrival = arrival_s[idx].astype(np.float64)
    if m > 1:
        # Copy number within each row: 0 for the original, 1.. for the extra copies.
        first = np.repeat(np.cumsum(copies) - copies, copies)
        copy_no = np.arange(idx.size) - first
        extra = copy_no > 0
        out_arrival[extra] += rng.uniform(0.0, config.copy_jitter_s, int(extra.sum()))
    return out_arrival, model[idx], request_tokens[idx], response_tokens[idx]


def _models_of(config: ArrivalConfig, models: tuple[str, ...] | None) -> tuple[str, ...]:
    if models is not None:
        return models
    return tuple(dict.fromkeys(config.model_map.values()))


def build_arrivals(
    run_start: pd.Timestamp,
    run_s: float,
    config: ArrivalConfig | None = None,
    *,
    trace: pd.DataFrame | None = None,
    trace_offset_s: float = 0.0,
    hourly_counts: pd.DataFrame | None = None,
    models: tuple[str, ...] | None = None,
    trace_end_s: float | None = None,
) -> RequestArrays:
    """The run's requests: trace replay, then the generator beyond the trace's end.

    Parameters
    ----------
    run_start : Timestamp
        UTC start of the run (interval start).
    run_s : float [s]
        Run length.
    config : ArrivalConfig, optional
    trace : DataFrame, optional
        BurstGPT-format rows (``arrival_s`` [s since trace start], ``model``,
        ``request_tokens``, ``response_tokens``). Without it the whole run comes from
        the generator.
    trace_offset_s : float [s]
        Trace second placed at run second 0.
    hourly_counts : DataFrame, optional
        Real request rates on the 15-min grid (``requests_per_h`` [requests/h],
        e.g. :func:`traces.datasets.burstgpt_hourly_counts`), indexed by interval
        start; the generator realises Poisson counts of ``rate × 0.25 h`` from it
        where it covers the run, else uses the calibrated count model.
    models : tuple of str, optional
        Served model families (default: the values of ``config.model_map``).
    trace_end_s : float [s], optional
        End of the trace's span in trace seconds; default: its last arrival rounded
        down to a whole interval of the run (a partly covered last interval would be
        under-counted).

    Returns
    -------
    RequestArrays
        Requests in ``[0, run_s)``, sorted by arrival.
    """
    config = config or ArrivalConfig()
    models = _models_of(config, models)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7]))
    stats = ArrivalStats()
    parts: list[tuple[np.ndarray, ...]] = []

    def add(
        source: int,
        name: str,
        arrival_s: np.ndarray,
        names: np.ndarray,
        request_tokens: np.ndarray,
        response_tokens: np.ndarray,
    ) -> None:
        arrays = _apply_rules(
            arrival_s, names, request_tokens, response_tokens, config, models, rng, stats
        )
        parts.append((*arrays, np.full(arrays[0].size, source, dtype=np.int8)))
        stats.by_source[name] = int(arrays[0].size)

    covered_s = 0.0
    if trace is not None and len(trace):
        t = trace["arrival_s"].to_numpy(dtype=np.float64) - trace_offset_s
        inside = (t >= 0) & (t < run_s)
        # The replay covers the run up to the last full interval the trace reaches.
        if trace_end_s is None:
            covered_s = min(run_s, math.floor(float(t.max()) / STEP_S) * STEP_S)
        else:
            covered_s = min(run_s, max(0.0, trace_end_s - trace_offset_s))
        inside &= t < covered_s
        add(
            SOURCE_TRACE,
            "trace",
            t[inside],
            trace["model"].to_numpy()[inside],
            trace["request_tokens"].to_numpy(dtype=np.int64)[inside],
            trace["response_tokens"].to_numpy(dtype=np.int64)[inside],
        )
        if covered_s < run_s:
            logger.info(
                "trace covers %.1f h of the %.1f h run; generator fills the rest",
                covered_s / 3600,
                run_s / 3600,
            )
    if covered_s < run_s:
        gen = _generate(run_start, covered_s, run_s, config, hourly_counts)
        add(
            SOURCE_GENERATOR,
            "generator",
            gen["arrival_s"].to_numpy(dtype=np.float64),
            gen["model"].to_numpy(),
            gen["request_tokens"].to_numpy(dtype=np.int64),
            gen["response_tokens"].to_numpy(dtype=np.int64),
        )
    arrival, model, req, resp, source = (np.concatenate(p) for p in zip(*parts, strict=True))
    inside = arrival < run_s
    stats.dropped["jitter_past_run_end"] = int((~inside).sum())
    order = np.argsort(arrival[inside], kind="stable")
    stats.rows_out = int(order.size)
    stats.check()
    return RequestArrays(
        arrival_s=arrival[inside][order],
        model=model[inside][order].astype(np.int32),
        request_tokens=req[inside][order].astype(np.int64),
        response_tokens=resp[inside][order].astype(np.int64),
        source=source[inside][order],
        models=models,
        stats=stats,
    )


def _generate(
    run_start: pd.Timestamp,
    from_s: float,
    run_s: float,
    config: ArrivalConfig,
    hourly_counts: pd.DataFrame | None,
) -> pd.DataFrame:
    """Generator requests for ``[from_s, run_s)`` with arrival in run seconds."""
    start = run_start + pd.Timedelta(seconds=from_s)
    days = math.ceil((run_s - from_s) / 86400.0)
    counts = None
    if hourly_counts is not None:
        index = pd.date_range(
            start, periods=days * STEPS_PER_DAY, freq=STEP, name="interval_start_utc"
        )
        rate = hourly_counts["requests_per_h"].reindex(index)
        if rate.notna().all():
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 11]))
            counts = pd.DataFrame(
                {"requests_per_15min": rng.poisson(rate.to_numpy() * STEP_H)}, index=index
            )
        else:
            logger.info(
                "hourly counts do not cover %s + %d days; calibrated counts used", start, days
            )
    frame = synth_requests(start, days, seed=config.seed, counts=counts)
    frame = frame.loc[frame["arrival_s"].to_numpy() + from_s < run_s].copy()
    frame["arrival_s"] = frame["arrival_s"].to_numpy() + from_s
    return frame
