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
* **Generator** for the part of the run the real slice does not cover. On real
  BurstGPT hourly counts with real rows to fit on (``trace``): the **burst model**
  (:class:`traces.burstgpt.BurstModel`, fitted on the rows): each clock hour's count
  split by model label, arrivals of a label within the hour from a Gamma renewal
  process of the label's fitted shape rescaled to the hour, token pairs drawn from
  the label's rows. Otherwise :func:`traces.synthetic.synth_requests`: counts per
  15-min interval (the real hourly counts, else the calibrated count model: all its
  streams or those named by ``count_streams``), arrivals uniform within the
  interval, token lengths from the copula fitted on the real rows.

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
4. rate multiplier ``r`` superposes ``r`` independent streams: the source's own
   rows (stream 0), plus ``ceil(r) - 1`` resampled streams. A resampled request
   keeps the hour (UTC clock hour, clipped to the source's span) and the model
   label of a source row; its arrival is drawn uniformly within that hour and its
   ``(request_tokens, response_tokens)`` pair from the source's rows of the same
   label (the empirical joint distribution). Stream ``k`` takes every row with
   probability ``min(1, r - k)``, so the hourly counts are ``r`` × the source's in
   expectation (exactly, for an integer ``r``) and no request is a copy of
   another. Below 1 only stream 0 exists, thinned: the dropped rows count as
   ``thinned_by_rate``; rows added by the resampled streams as ``added_by_rate``.
   The generator on real hourly counts draws its Poisson counts at ``r`` × the
   rate instead (``r`` independent Poisson streams superposed are one Poisson
   stream at ``r`` × the rate), so its counts carry the noise of ``r`` streams, not
   ``r`` × the noise of one; with the burst model it draws ``r`` bursty streams and
   superposes them (each its own Gamma renewal process within the hour), and the
   resampled streams of a replay place each hour's requests of a label that way too.
   Cloning (``r`` copies of each row) would put ``r``
   identical requests within seconds of each other: an artificial burst that no
   superposition of independent users makes. The trace's daily and weekly shape is
   kept (a time compression would change it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np
import pandas as pd

from traces.burstgpt import BurstModel, burst_times, fit_burst_model
from traces.errors import ConfigError
from traces.grid import STEP, STEP_H, STEPS_PER_DAY
from traces.synthetic import synth_request_counts, synth_requests

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
        Number of independent streams superposed (see module docstring, rule 4);
        ``> 0``.
    model_map : Mapping[str, str]
        Trace model name to served model family.
    zero_request : ZeroTokenPolicy
        Policy for rows with ``request_tokens == 0``.
    failed : ZeroTokenPolicy
        Policy for rows with ``response_tokens == 0`` (failed requests).
    seed : int
        Seed of the thinning, the resampled streams and the generator.
    """

    rate_multiplier: float = 1.0
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))
    zero_request: ZeroTokenPolicy = ZeroTokenPolicy.DROP
    failed: ZeroTokenPolicy = ZeroTokenPolicy.KEEP
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.rate_multiplier > 0 and math.isfinite(self.rate_multiplier)):
            raise ConfigError("arrivals", "expected a positive number", key="rate_multiplier")


@dataclass
class ArrivalStats:
    """Row accounting of one arrivals build.

    ``rows_in + added_by_rate == rows_out + sum(dropped)`` holds.

    Attributes
    ----------
    rows_in : int
        Rows read from the sources (trace and generator).
    rows_out : int
        Requests in the arrays.
    added_by_rate : int
        Requests of the resampled streams of a rate multiplier above 1.
    dropped : dict[str, int]
        Dropped rows by named reason.
    by_source : dict[str, int]
        Requests per source (``trace``, ``generator``).
    """

    rows_in: int = 0
    rows_out: int = 0
    added_by_rate: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Assert the row accounting closes."""
        if self.rows_in + self.added_by_rate != self.rows_out + sum(self.dropped.values()):
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

    def take(self, idx: np.ndarray) -> RequestArrays:
        """The requests ``idx`` (indices in arrival order, so still sorted), same
        ``models`` and ``stats``."""
        return replace(self, arrival_s=self.arrival_s[idx], model=self.model[idx],
                       request_tokens=self.request_tokens[idx],
                       response_tokens=self.response_tokens[idx], source=self.source[idx])

    def interval_bounds(self, n_steps: int, step_s: float = STEP_S) -> np.ndarray:
        """Index of the first request of each interval, length ``n_steps + 1`` [-]."""
        edges = np.arange(n_steps + 1, dtype=np.float64) * step_s
        return np.searchsorted(self.arrival_s, edges, side="left")

    def per_interval(self, n_steps: int, step_s: float = STEP_S) -> dict[str, np.ndarray]:
        """Per-interval, per-model aggregates, shape ``(n_steps, n_models)``.

        Returns
        -------
        dict with ``requests`` [-], ``request_tokens`` and ``response_tokens`` [tokens],
        ``response_tokens_sq`` [tokens²] (sum of squares: the spread of the lengths).
        """
        k = np.floor(self.arrival_s / step_s).astype(np.int64)
        inside = (k >= 0) & (k < n_steps)
        # A run's own requests all fall inside (the usual case): no masked copies of
        # the ~10⁷-long arrays then (the same values, summed in the same order).
        every = bool(inside.all())

        def kept(values: np.ndarray) -> np.ndarray:
            return values if every else values[inside]

        flat = kept(k) * len(self.models) + kept(self.model)
        size = n_steps * len(self.models)
        shape = (n_steps, len(self.models))

        def count(weights: np.ndarray | None) -> np.ndarray:
            return np.bincount(flat, weights=weights, minlength=size).reshape(shape)

        response = kept(self.response_tokens).astype(np.float64)
        return {
            "requests": count(None),
            "request_tokens": count(kept(self.request_tokens).astype(np.float64)),
            "response_tokens": count(response),
            "response_tokens_sq": count(response ** 2),
        }


AGGREGATE_KEYS: tuple[str, ...] = ("requests", "request_tokens", "response_tokens",
                                   "response_tokens_sq")
"""Per-interval aggregates of a request stream (:meth:`RequestArrays.per_interval`)."""


@dataclass(frozen=True)
class RequestAggregates:
    """A run's requests as per-interval, per-model aggregates only (fluid serving).

    At the DR study's scale (10⁶ tokens/s, ~10¹⁰ requests a month) no per-request
    array fits in memory; fluid serving reads nothing but these aggregates
    (:class:`~mpc_dc.sim.fluid.FluidServer`), so a run may carry them instead of
    :class:`RequestArrays`. Request-level serving needs the requests themselves.

    Attributes
    ----------
    aggregates : Mapping[str, ndarray]
        :data:`AGGREGATE_KEYS`, each shape ``(n_steps, n_models)``: requests [-],
        prompt and response tokens [tokens], sum of squared response lengths [tokens²].
    models : tuple of str
    """

    aggregates: Mapping[str, np.ndarray]
    models: tuple[str, ...]

    def __post_init__(self) -> None:
        missing = [k for k in AGGREGATE_KEYS if k not in self.aggregates]
        if missing:
            raise ValueError(f"RequestAggregates: missing {missing}")
        shapes = {np.shape(self.aggregates[k]) for k in AGGREGATE_KEYS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != len(
                self.models):
            raise ValueError(f"RequestAggregates: expected arrays (n_steps, {len(self.models)}),"
                             f" got shapes {sorted(shapes)}")

    @property
    def n_steps(self) -> int:
        """Intervals covered."""
        return int(np.shape(self.aggregates["requests"])[0])

    def __len__(self) -> int:
        return round(float(np.sum(self.aggregates["requests"])))

    @classmethod
    def scaled(cls, requests: RequestArrays | RequestAggregates, n_steps: int,
               shares: np.ndarray, models: tuple[str, ...]) -> RequestAggregates:
        """The aggregates of ``requests`` over ``n_steps`` intervals redistributed to
        ``models``: model ``j`` gets ``shares[j, i]`` times model ``i``'s aggregates
        (every key, so each share keeps the stream's token lengths; a share of 2 is the
        stream counted twice, not an independent second stream).

        Parameters
        ----------
        shares : ndarray (len(models), len(requests.models)) [-]
        """
        base = requests.per_interval(n_steps)
        weights = np.asarray(shares, dtype=float)
        if weights.shape != (len(models), len(requests.models)) or np.any(weights < 0):
            raise ValueError(f"RequestAggregates.scaled: shares of shape "
                             f"{(len(models), len(requests.models))} >= 0 expected, got "
                             f"{weights.shape}")
        return cls({k: base[k] @ weights.T for k in AGGREGATE_KEYS}, models)

    def interval_bounds(self, n_steps: int, step_s: float = STEP_S) -> np.ndarray:
        """Requests arrived before each interval, length ``n_steps + 1`` [-] (as
        :meth:`RequestArrays.interval_bounds`; not whole numbers when scaled)."""
        counts = self.per_interval(n_steps, step_s)["requests"].sum(axis=1)
        return np.concatenate([[0.0], np.cumsum(counts)])

    def per_interval(self, n_steps: int, step_s: float = STEP_S) -> dict[str, np.ndarray]:
        """The aggregates of the first ``n_steps`` intervals (:meth:`RequestArrays.per_interval`).

        Raises
        ------
        ValueError
            For fewer intervals than asked or another interval length.
        """
        if step_s != STEP_S or n_steps > self.n_steps:
            raise ValueError(f"RequestAggregates: {self.n_steps} intervals of {STEP_S:g} s, "
                             f"asked {n_steps} of {step_s:g} s")
        return {k: np.asarray(self.aggregates[k], dtype=float)[:n_steps] for k in AGGREGATE_KEYS}


def _factorize_labels(names: np.ndarray | pd.Categorical) -> tuple[np.ndarray, pd.Index]:
    """Each row's label as a code, labels numbered in order of first appearance, and the
    labels (as strings).

    Hash-based (``pd.factorize``): ``np.unique`` sorts the strings, seconds at 10^7 rows.
    A :class:`pandas.Categorical` without missing rows is factorized by its integer
    codes, which map one to one to its labels, so the first-appearance numbering is
    the one of its strings, without building 10^7 string objects (the burst
    generator's rows, :func:`_burst_requests`).
    """
    if isinstance(names, pd.Categorical) and (names.codes >= 0).all():
        inverse, first = pd.factorize(names.codes, sort=False)
        labels = pd.Index(np.asarray(names.categories, dtype=object)[first], dtype=object)
        return inverse, labels.astype(str)
    return pd.factorize(pd.Series(names, dtype=object).astype(str), sort=False)


def _apply_rules(
    arrival_s: np.ndarray,
    names: np.ndarray | pd.Categorical,
    request_tokens: np.ndarray,
    response_tokens: np.ndarray,
    config: ArrivalConfig,
    models: tuple[str, ...],
    span_s: tuple[float, float],
    hour_phase_s: float,
    r: float,
    rng: np.random.Generator,
    stats: ArrivalStats,
    burst: BurstModel | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mapping, zero/failed policies and the rate multiplier (module docstring rules 1-4).

    Parameters
    ----------
    arrival_s : ndarray [s since run start]
        The source's rows, all inside ``span_s``.
    span_s : (float, float) [s since run start]
        The source's part of the run: resampled arrivals stay inside it.
    hour_phase_s : float [s]
        Seconds from the UTC clock hour to the run start (a resampled request keeps
        its row's clock hour).
    r : float [-]
        The rate multiplier still to apply (1 for rows already drawn at ``r`` × the
        rate).

    Returns
    -------
    arrival_s, model, request_tokens, response_tokens
        The requests, unsorted.
    """
    stats.rows_in += int(arrival_s.size)
    model_pos = {m: i for i, m in enumerate(models)}
    inverse, uniq = _factorize_labels(names)
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
    rows = np.flatnonzero(keep)
    if r < 1:
        thinned = rng.random(rows.size) >= r
        stats.dropped["thinned_by_rate"] = (
            stats.dropped.get("thinned_by_rate", 0) + int(thinned.sum())
        )
        rows = rows[~thinned]
    shapes = (np.array([burst.shape_of(str(u)) for u in uniq]) if burst is not None
              else np.ones(len(uniq)))
    extra = _resampled_streams(rows, arrival_s, inverse, r, span_s, hour_phase_s, rng, shapes)
    stats.added_by_rate += int(extra.source.size)
    pick = np.concatenate([rows, extra.tokens_of])
    return (
        np.concatenate([arrival_s[rows].astype(np.float64), extra.arrival_s]),
        model[np.concatenate([rows, extra.source])],
        request_tokens[pick],
        response_tokens[pick],
    )


@dataclass(frozen=True)
class _Resampled:
    """Requests of the resampled streams: ``source`` row (hour and label),
    ``tokens_of`` row (token pair) and ``arrival_s`` [s since run start]."""

    source: np.ndarray
    tokens_of: np.ndarray
    arrival_s: np.ndarray


def _resampled_streams(
    rows: np.ndarray,
    arrival_s: np.ndarray,
    label: np.ndarray,
    r: float,
    span_s: tuple[float, float],
    hour_phase_s: float,
    rng: np.random.Generator,
    shapes: np.ndarray | None = None,
) -> _Resampled:
    """Streams 1..ceil(r)-1 of the rate multiplier (module docstring, rule 4).

    Stream ``k`` takes each of ``rows`` with probability ``min(1, r - k)``: a request
    in the row's clock hour (clipped to ``span_s``), with the token pair of a uniformly
    drawn row of ``rows`` with the same ``label``. Within the hour, a stream's
    requests of one label are the points of a Gamma renewal process of shape
    ``shapes[label]`` rescaled to the hour (:func:`traces.burstgpt.burst_times`;
    shape 1, the default: uniform, i.e. Poisson).
    """
    streams = max(math.ceil(r) - 1, 0)
    whole = max(math.floor(r) - 1, 0)
    count = np.full(rows.size, whole, dtype=np.int64)
    if streams > whole:  # the last stream is thinned to the fractional part
        count += rng.random(rows.size) < r - math.floor(r)
    source = np.repeat(rows, count)
    # the k-th copy of a row belongs to stream k + 1
    stream = np.arange(source.size) - np.repeat(np.cumsum(count) - count, count)
    t = arrival_s[source].astype(np.float64)
    hour = np.floor((t + hour_phase_s) / 3600.0) * 3600.0 - hour_phase_s
    lab = label[source]
    shape = np.ones(max(int(label.max(initial=0)) + 1, 1)) if shapes is None else shapes
    key = np.stack([stream, hour, lab]) if source.size else np.zeros((3, 0))
    _, first, inverse, counts = np.unique(key, axis=1, return_index=True,
                                          return_inverse=True, return_counts=True)
    g_hour = hour[first]
    lo = np.maximum(g_hour, span_s[0])
    hi = np.minimum(g_hour + 3600.0, span_s[1])
    times, group = burst_times(counts, shape[lab[first]], lo, hi, rng)
    # group g's arrivals go to its members (in source order; all members are alike)
    order = np.argsort(inverse.ravel(), kind="stable")
    drawn = np.empty(source.size)
    drawn[order] = times[np.argsort(group, kind="stable")]
    tokens_of = np.empty(source.size, dtype=np.int64)
    src_label = label[source]
    row_label = label[rows]
    for lab in np.unique(src_label):
        pool = rows[row_label == lab]
        here = src_label == lab
        tokens_of[here] = pool[rng.integers(0, pool.size, int(here.sum()))]
    return _Resampled(source, tokens_of, drawn)


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
    count_streams: Sequence[str] | None = None,
    burst: BurstModel | None = None,
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
    count_streams : sequence of str, optional
        Streams of the calibrated count model the generator sums where
        ``hourly_counts`` does not cover the run (``conversation``, ``api``; default
        all).
    burst : BurstModel, optional
        Within-hour burst model and token lengths per label; default: fitted on
        ``trace`` (:func:`traces.burstgpt.fit_burst_model`) when it has rows.

    Returns
    -------
    RequestArrays
        Requests in ``[0, run_s)``, sorted by arrival.
    """
    config = config or ArrivalConfig()
    models = _models_of(config, models)
    if burst is None and trace is not None and len(trace) > 1:
        burst = fit_burst_model(trace)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7]))
    stats = ArrivalStats()
    parts: list[tuple[np.ndarray, ...]] = []
    hour_phase_s = (run_start - run_start.floor("h")).total_seconds()

    def add(
        source: int,
        name: str,
        span_s: tuple[float, float],
        r: float,
        arrival_s: np.ndarray,
        names: np.ndarray,
        request_tokens: np.ndarray,
        response_tokens: np.ndarray,
    ) -> None:
        arrays = _apply_rules(
            arrival_s, names, request_tokens, response_tokens, config, models, span_s,
            hour_phase_s, r, rng, stats, burst,
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
            covered_s = min(run_s, trace_end_s - trace_offset_s)
        covered_s = max(0.0, covered_s)  # a trace that ends before the run covers nothing
        inside &= t < covered_s
        add(
            SOURCE_TRACE,
            "trace",
            (0.0, covered_s),
            config.rate_multiplier,
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
        gen, scaled = _generate(run_start, covered_s, run_s, config, hourly_counts,
                                count_streams, burst)
        add(
            SOURCE_GENERATOR,
            "generator",
            (covered_s, run_s),
            1.0 if scaled else config.rate_multiplier,
            gen["arrival_s"].to_numpy(dtype=np.float64),
            # a categorical column stays one (_factorize_labels reads its codes)
            (gen["model"].array if isinstance(gen["model"].dtype, pd.CategoricalDtype)
             else gen["model"].to_numpy()),
            gen["request_tokens"].to_numpy(dtype=np.int64),
            gen["response_tokens"].to_numpy(dtype=np.int64),
        )
    arrival, model, req, resp, source = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = np.argsort(arrival, kind="stable")
    stats.rows_out = int(order.size)
    stats.check()
    return RequestArrays(
        arrival_s=arrival[order],
        model=model[order].astype(np.int32),
        request_tokens=req[order].astype(np.int64),
        response_tokens=resp[order].astype(np.int64),
        source=source[order],
        models=models,
        stats=stats,
    )


def _generate(
    run_start: pd.Timestamp,
    from_s: float,
    run_s: float,
    config: ArrivalConfig,
    hourly_counts: pd.DataFrame | None,
    count_streams: Sequence[str] | None = None,
    burst: BurstModel | None = None,
) -> tuple[pd.DataFrame, bool]:
    """Generator requests for ``[from_s, run_s)`` with arrival in run seconds, and
    whether they are drawn at ``rate_multiplier`` × the rate already (on
    ``hourly_counts``: ``r`` independent Poisson streams superposed are one Poisson
    stream at ``r`` × the rate; resampling ``r`` × one stream's count would keep one
    stream's relative noise)."""
    start = run_start + pd.Timedelta(seconds=from_s)
    days = math.ceil((run_s - from_s) / 86400.0)
    counts = None
    if hourly_counts is not None:
        index = pd.date_range(
            start, periods=days * STEPS_PER_DAY, freq=STEP, name="interval_start_utc"
        )
        rate = hourly_counts["requests_per_h"].reindex(index)
        if rate.notna().all() and burst is not None:
            return _burst_requests(start, from_s, run_s, rate, config, burst), True
        if rate.notna().all():
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 11]))
            mean = rate.to_numpy() * STEP_H * config.rate_multiplier
            counts = pd.DataFrame({"requests_per_15min": rng.poisson(mean)}, index=index)
        else:
            logger.info(
                "hourly counts do not cover %s + %d days; calibrated counts used", start, days
            )
    scaled = counts is not None
    if counts is None and count_streams is not None:
        streams = synth_request_counts(start, days, seed=config.seed)
        counts = pd.DataFrame(
            {"requests_per_15min": sum(streams[f"requests_{s}_per_15min"] for s in count_streams)}
        )
    frame = synth_requests(start, days, seed=config.seed, counts=counts)
    frame = frame.loc[frame["arrival_s"].to_numpy() + from_s < run_s].copy()
    frame["arrival_s"] = frame["arrival_s"].to_numpy() + from_s
    return frame, scaled


def _burst_requests(
    start: pd.Timestamp, from_s: float, run_s: float, rate: pd.Series, config: ArrivalConfig,
    burst: BurstModel,
) -> pd.DataFrame:
    """Requests of ``[from_s, run_s)`` on real hourly rates with the burst model.

    ``ceil(r)`` independent streams (the last at weight ``r − floor(r)``); stream ``k``
    has ``Poisson(w_k × share_L × Σ rate × 0.25 h)`` requests of label ``L`` in each
    clock hour (the hour's 15-min intervals inside the span), placed by
    :func:`traces.burstgpt.burst_times`, token pairs from the label's rows.

    Parameters
    ----------
    start : Timestamp
        UTC instant of run second ``from_s``.
    rate : Series [requests/h]
        On the 15-min grid from ``start``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 13]))
    t_q = from_s + np.arange(rate.size) * STEP_S
    inside = t_q < run_s
    t_q = t_q[inside]
    mean_q = rate.to_numpy(dtype=float)[inside] * STEP_H
    phase = (start - start.floor("h")).total_seconds() - from_s
    hour = np.floor((t_q + phase) / 3600.0) * 3600.0 - phase
    hours, where = np.unique(hour, return_inverse=True)
    mean_h = np.bincount(where, weights=mean_q)
    lo = np.maximum(hours, from_s)
    hi = np.minimum(hours + 3600.0, run_s)
    r = config.rate_multiplier
    weights = [min(1.0, r - k) for k in range(math.ceil(r))]
    labels = np.arange(len(burst.labels))
    share = np.asarray(burst.share)
    # groups: (stream, hour, label)
    w = np.repeat(np.asarray(weights), hours.size * labels.size)
    h_idx = np.tile(np.repeat(np.arange(hours.size), labels.size), len(weights))
    lab = np.tile(labels, hours.size * len(weights))
    counts = rng.poisson(w * mean_h[h_idx] * share[lab])
    times, group = burst_times(counts, np.asarray(burst.shape)[lab], lo[h_idx], hi[h_idx], rng)
    g_lab = lab[group]
    req = np.empty(times.size, dtype=np.int64)
    resp = np.empty(times.size, dtype=np.int64)
    for i in labels:
        sel = np.flatnonzero(g_lab == i)
        pick = rng.integers(0, burst.request_tokens[i].size, sel.size)
        req[sel] = burst.request_tokens[i][pick]
        resp[sel] = burst.response_tokens[i][pick]
    order = np.argsort(times, kind="stable")
    return pd.DataFrame({
        "arrival_s": times[order],
        # categorical: 10^7 label strings cost seconds to build and to factorize again
        "model": pd.Categorical.from_codes(g_lab[order], categories=list(burst.labels)),
        "request_tokens": req[order],
        "response_tokens": resp[order],
    })
