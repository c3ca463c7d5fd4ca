"""BurstGPT replay: the streaming reader of the full CSV format and the burst model of
arrivals within an hour (fitted on the real rows), with the rate multiplier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals
from traces.burstgpt import (
    BurstModel,
    burst_times,
    fit_burst_model,
    fit_gamma_shape,
    iter_burstgpt_requests,
    read_burstgpt_requests,
    read_burstgpt_window,
)
from traces.errors import TraceError
from traces.grid import STEP

ROWS = "burstgpt/burstgpt_v1_first400.csv"
START = pd.Timestamp("2022-04-04T07:00:00Z")
MODELS = ("qwen3-32b", "qwen3-235b-a22b")


@pytest.mark.shared_data
def test_streaming_reader_on_the_real_rows(shared_data: Path) -> None:
    """Chunks of 37 rows give the 400 rows exactly as one read, and as the file says."""
    path = shared_data / ROWS
    chunks = list(iter_burstgpt_requests(path, chunk_rows=37))
    assert len(chunks) == 11 and sum(len(c) for c in chunks) == 400
    streamed = pd.concat(chunks, ignore_index=True)
    whole, meta = read_burstgpt_requests(path)
    assert meta.rows_read == 400
    pd.testing.assert_frame_equal(streamed, whole.reset_index(drop=True))
    raw = pd.read_csv(path)
    assert streamed["arrival_s"].tolist() == raw["Timestamp"].tolist()
    assert streamed["response_tokens"].tolist() == raw["Response tokens"].tolist()
    assert streamed["model"].value_counts().to_dict() == {"ChatGPT": 320, "GPT-4": 80}


@pytest.mark.shared_data
def test_window_read_keeps_the_window_only(shared_data: Path) -> None:
    window = read_burstgpt_window(shared_data / ROWS, 3600.0, 7200.0, chunk_rows=50)
    t = window["arrival_s"].to_numpy()
    whole, _ = read_burstgpt_requests(shared_data / ROWS)
    expected = whole["arrival_s"].to_numpy()
    assert t.tolist() == expected[(expected >= 3600) & (expected < 7200)].tolist()


def test_order_is_checked_across_chunk_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    for t in (1, 2, 3, 4, 3, 5):  # row 5 (file line 6) goes back in time
        lines.append(f"{t},ChatGPT,10,5,15,Conversation log")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=r"line 6: field 'Timestamp'.*earlier than the row"):
        list(iter_burstgpt_requests(path, chunk_rows=4))


def test_gamma_shape_is_recovered() -> None:
    rng = np.random.default_rng(1)
    for k in (0.4, 1.0, 2.5):
        x = rng.gamma(k, 1.0 / k, 5000)
        assert fit_gamma_shape(x / x.mean()) == pytest.approx(k, rel=0.06)


def test_burst_times_are_a_gamma_renewal_process_in_each_window() -> None:
    """N points in each window with Dirichlet(k) spacings: inside the window, N per
    window, gaps with the CV of Gamma(k) (1/√k)."""
    rng = np.random.default_rng(2)
    counts = np.full(2000, 100)
    lo = np.arange(2000) * 3600.0
    times, group = burst_times(counts, np.full(2000, 0.5), lo, lo + 3600.0, rng)
    assert np.array_equal(np.bincount(group), counts)
    assert np.all((times >= lo[group]) & (times < lo[group] + 3600.0))
    gaps = np.diff(times)[np.diff(group) == 0]
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(0.5), rel=0.05)


@pytest.mark.shared_data
def test_burst_model_fitted_on_the_real_rows(shared_data: Path) -> None:
    """Within-hour Gamma shapes of the 400 real rows (docs/serving.md): ChatGPT 0.92,
    GPT-4 0.82 — a little burstier than Poisson; token lengths per label are the
    label's rows."""
    rows, _ = read_burstgpt_requests(shared_data / ROWS)
    model = fit_burst_model(rows)
    assert model.labels == ("ChatGPT", "GPT-4")
    assert model.shape == pytest.approx((0.918, 0.816), abs=0.005)
    assert model.share == pytest.approx((0.8, 0.2))
    assert model.response_tokens[1].mean() == pytest.approx(228.6)


def _counts(rate_per_h: float, days: int = 2) -> pd.DataFrame:
    index = pd.date_range(START, periods=days * 96, freq=STEP, name="interval_start_utc")
    return pd.DataFrame({"requests_per_h": rate_per_h}, index=index)


def _model(shape: float) -> BurstModel:
    rng = np.random.default_rng(0)
    return BurstModel(labels=("ChatGPT", "GPT-4"), shape=(shape, shape), share=(0.8, 0.2),
                      gaps=(0, 0),
                      request_tokens=(rng.integers(1, 500, 50), rng.integers(500, 900, 50)),
                      response_tokens=(rng.integers(1, 100, 50), rng.integers(300, 400, 50)))


def _within_hour_cv(t: np.ndarray) -> float:
    hour = (t // 3600).astype(int)
    parts = []
    for h in np.unique(hour):
        d = np.diff(t[hour == h])
        if d.size >= 50:
            parts.append(d / d.mean())
    g = np.concatenate(parts)
    return float(g.std())


def test_generator_on_hourly_counts_uses_the_burst_model_per_label() -> None:
    """One bursty stream (shape 0.5) on 400 requests/h: gaps within an hour with
    CV ≈ √2 per label, token pairs from each label's rows."""
    req = build_arrivals(START, 2 * 86400.0, ArrivalConfig(seed=3), hourly_counts=_counts(400),
                         models=MODELS, burst=_model(0.5))
    big = req.model == 0
    assert _within_hour_cv(req.arrival_s[big]) == pytest.approx(np.sqrt(2), rel=0.08)
    assert req.response_tokens[~big].min() >= 300 and req.response_tokens[big].max() < 100
    assert len(req) == pytest.approx(2 * 24 * 400, rel=0.03)


def test_rate_multiplier_superposes_independent_bursty_streams() -> None:
    """×20 on 20 requests/h is 20 independent bursty streams: the hour's count is 400 on
    average with Poisson noise of 20 streams, and the superposition is smoother than
    one bursty stream at 400/h (CV √2; measured 1.15, tending to Poisson's 1 as streams
    are added); clones of one stream would be burstier still."""
    req = build_arrivals(START, 2 * 86400.0, ArrivalConfig(rate_multiplier=20.0, seed=3),
                         hourly_counts=_counts(20), models=MODELS, burst=_model(0.5))
    big = req.model == 0
    cv = _within_hour_cv(req.arrival_s[big])
    assert 1.05 < cv < 1.25
    hourly = np.bincount((req.arrival_s // 3600).astype(int))
    assert hourly.mean() == pytest.approx(400, rel=0.03)
    assert hourly.std() < 2 * np.sqrt(400)
