"""The rate multiplier superposes independent streams (issue 13, item 16).

A multiplier ``r`` used to clone every request ``r`` times within 60 s: ×20 made 20
identical requests per arrival, a burst no population of independent users makes.
These tests check what superposed independent streams must look like: hourly counts
``r`` × the source's, no excess of identical token pairs close in time, and
inter-arrival times within an hour as irregular as the source's, not clustered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mpc_dc.sim.arrivals import ArrivalConfig, RequestArrays, build_arrivals
from traces.grid import STEP

START = pd.Timestamp("2022-04-04T07:30:00Z")  # off the hour: hours are clock hours
MODELS = ("qwen3-32b", "qwen3-235b-a22b")
DAY_S = 86400.0
PHASE_S = 1800.0  # START is 30 min past the hour


def _trace(rate_per_h: float, seed: int = 3) -> pd.DataFrame:
    """A day of Poisson arrivals at a constant rate, BurstGPT columns, varied tokens."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_per_h * 24)
    return pd.DataFrame({
        "arrival_s": np.sort(rng.uniform(0.0, DAY_S, n)),
        "model": rng.choice(["ChatGPT", "GPT-4"], n, p=[0.8, 0.2]),
        "request_tokens": rng.integers(1, 2000, n),
        "response_tokens": rng.integers(1, 1000, n),
    })


def _replay(r: float, rate_per_h: float = 400.0, seed: int = 5) -> RequestArrays:
    return build_arrivals(START, DAY_S, ArrivalConfig(rate_multiplier=r, seed=seed),
                          trace=_trace(rate_per_h), trace_end_s=DAY_S, models=MODELS)


def _hourly(req: RequestArrays) -> np.ndarray:
    """Requests per clock hour (first and last partial hours included) [-]."""
    return np.bincount(((req.arrival_s + PHASE_S) // 3600).astype(int), minlength=25)


def _within_hour_cv(req: RequestArrays) -> float:
    """Coefficient of variation of the gaps between consecutive arrivals of one clock
    hour, each gap divided by its hour's mean gap (so the hourly rate drops out) [-]."""
    hour = ((req.arrival_s + PHASE_S) // 3600).astype(int)
    gaps = []
    for h in np.unique(hour):
        t = req.arrival_s[hour == h]
        if t.size >= 50:
            d = np.diff(t)
            gaps.append(d / d.mean())
    g = np.concatenate(gaps)
    return float(g.std() / g.mean())


def _close_twins(req: RequestArrays, window_s: float = 60.0) -> tuple[int, float]:
    """Pairs of requests within ``window_s`` of each other with the same model and the
    same (request, response) tokens: observed, and expected if token pairs were drawn
    independently from the stream's own distribution of pairs per model."""
    observed, expected = 0, 0.0
    for m in range(len(req.models)):
        sel = req.model == m
        t = req.arrival_s[sel]
        key = req.request_tokens[sel] * 1_000_003 + req.response_tokens[sel]
        _, inverse, freq = np.unique(key, return_inverse=True, return_counts=True)
        collide = float(np.sum((freq / freq.sum()) ** 2))
        ends = np.searchsorted(t, t + window_s, side="right")
        pairs = int(np.sum(ends - np.arange(t.size) - 1))
        expected += pairs * collide
        for lag in range(1, int(np.max(ends - np.arange(t.size)))):
            ok = np.arange(t.size - lag)
            ok = ok[ends[ok] > ok + lag]
            observed += int(np.sum(inverse[ok] == inverse[ok + lag]))
    return observed, expected


def test_replayed_hourly_counts_are_r_times_the_source() -> None:
    base = _hourly(_replay(1.0))
    assert np.array_equal(_hourly(_replay(20.0)), 20 * base)  # whole r: exactly, per hour
    frac = _hourly(_replay(2.5))
    # Stream 2 takes each row with probability 1/2: binomial spread around 2.5 x.
    sd = np.sqrt(0.25 * base)
    assert np.all(np.abs(frac - 2.5 * base) <= 5 * sd + 1)
    assert frac.sum() == pytest.approx(2.5 * base.sum(), rel=0.02)


def test_no_clones_identical_tokens_close_in_time_only_by_chance() -> None:
    req = _replay(20.0, rate_per_h=100.0)
    observed, expected = _close_twins(req)
    # Cloning: each request had 19 twins within 60 s (~10^5 pairs here).
    assert observed <= 1.5 * expected + 20, (observed, expected)


def test_inter_arrival_cv_not_inflated_by_the_multiplier() -> None:
    one = _within_hour_cv(_replay(1.0))
    twenty = _within_hour_cv(_replay(20.0, rate_per_h=20.0))
    # Same hourly rate (400/h) from one stream or from 20 superposed ones: a Poisson
    # stream has CV 1 in both; clones within 60 s made it ~5.
    assert one == pytest.approx(1.0, abs=0.1)
    assert twenty == pytest.approx(one, abs=0.1)


def _counts(rate_per_h: float) -> pd.DataFrame:
    """Constant hourly rate on the 15-min grid from the hour before START, two days."""
    index = pd.date_range(START.floor("h"), periods=2 * 96 + 4, freq=STEP,
                          name="interval_start_utc")
    return pd.DataFrame({"requests_per_h": rate_per_h}, index=index)


def test_generator_on_real_counts_draws_r_independent_streams() -> None:
    """On hourly counts the generator realises Poisson(r × rate): hourly counts around
    r × the rate with the noise of r streams (sd √(r·rate)), not r × one stream's
    (sd r·√rate, which cloning or resampling one stream would give)."""
    r, rate = 20.0, 50.0
    req = build_arrivals(START, DAY_S, ArrivalConfig(rate_multiplier=r, seed=9),
                         hourly_counts=_counts(rate), models=MODELS)
    full = _hourly(req)[1:-1]  # whole clock hours
    kept = 1.0 - req.stats.dropped["zero_request_tokens"] / req.stats.rows_in
    mean = r * rate * kept
    assert full.mean() == pytest.approx(mean, rel=0.02)
    assert full.std() < 2 * np.sqrt(mean)  # one stream x 20 would give ~ 20 * sqrt(50)
    assert req.stats.added_by_rate == 0 and "thinned_by_rate" not in req.stats.dropped
    req.stats.check()


def test_thinning_below_one_keeps_a_share_of_the_rows() -> None:
    frame = pd.DataFrame({"arrival_s": np.arange(0, 3600.0, 1.0), "model": "ChatGPT",
                          "request_tokens": 10, "response_tokens": 10})
    half = build_arrivals(START, 3600.0, ArrivalConfig(rate_multiplier=0.5), trace=frame,
                          trace_end_s=3600.0, models=MODELS)
    assert abs(len(half) - 1800) < 150
    assert half.stats.dropped["thinned_by_rate"] == 3600 - len(half)
    assert set(half.arrival_s) <= set(frame["arrival_s"])  # thinning moves nothing
    half.stats.check()


def test_resampled_requests_stay_in_their_hour_and_span() -> None:
    """Trace rows in the run's first 30 min (07:30-08:00, the second half of a clock
    hour): ×3 adds requests in that clock hour clipped to the trace's span, never
    before the run start nor where the generator takes over."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0.0, 1800.0, 300))
    frame = pd.DataFrame({"arrival_s": t, "model": rng.choice(["ChatGPT", "GPT-4"], 300),
                          "request_tokens": rng.integers(1, 500, 300),
                          "response_tokens": rng.integers(1, 500, 300)})
    req = build_arrivals(START, 3600.0, ArrivalConfig(rate_multiplier=3.0, seed=2),
                         trace=frame, trace_end_s=1800.0, models=MODELS)
    trace = req.source == 0
    assert trace.sum() == req.stats.by_source["trace"] == 900
    assert req.arrival_s[trace].min() >= 0.0 and req.arrival_s[trace].max() < 1800.0
    pairs = set(zip(frame["request_tokens"], frame["response_tokens"], strict=True))
    got = set(zip(req.request_tokens[trace], req.response_tokens[trace], strict=True))
    assert got <= pairs  # token pairs drawn from the trace's own rows
    req.stats.check()


def test_categorical_labels_factorize_as_their_strings() -> None:
    """The burst generator's labels come as a Categorical; factorized by its codes they
    are numbered in order of first appearance exactly as their strings are (the
    resampled streams draw per label number, so another numbering would change the
    requests), whatever the order of the categories; missing rows take the string path."""
    from mpc_dc.sim.arrivals import _factorize_labels

    rng = np.random.default_rng(4)
    strings = rng.choice(["GPT-4", "ChatGPT", "Claude"], 500, p=[0.1, 0.6, 0.3])
    strings[0] = "GPT-4"  # first in appearance, last in the categories below
    for categories in (["ChatGPT", "Claude", "GPT-4"], ["GPT-4", "ChatGPT", "Claude", "spare"]):
        cat = pd.Categorical(strings, categories=categories)
        codes, labels = _factorize_labels(cat)
        want_codes, want_labels = _factorize_labels(strings.astype(object))
        np.testing.assert_array_equal(codes, want_codes)
        assert list(labels) == list(want_labels) and labels[0] == "GPT-4"
    with_missing = pd.Categorical([None, "GPT-4", "ChatGPT"], categories=["ChatGPT", "GPT-4"])
    codes, labels = _factorize_labels(with_missing)
    want_codes, want_labels = _factorize_labels(np.array([None, "GPT-4", "ChatGPT"],
                                                         dtype=object))
    np.testing.assert_array_equal(codes, want_codes)
    assert list(labels) == list(want_labels)
