"""The queueing a 15-min mean hides: late share of a model's tokens against its pool's
planned utilisation, measured on the arrivals before the run (issue 16).

A plan sizes each pool for the interval's mean token rate ``x̄`` at a utilisation
``u = x̄ / (ρ̄ μ n)`` of its capacity at the SLO ``μ n`` under the utilisation cap
``ρ̄``. Requests arrive in bursts inside the interval, so for stretches of it the
pool is offered more than ``μ n``: the requests decoding then share a batch beyond
the one at which the TPOT target holds, and are late. How long a stretch counts is
the time a request decodes at the target, ``W = n̄ τ`` (mean response tokens times
the TPOT target [s]): by Little's law the requests in a batch are those that
arrived over the last ``W``, so the batch exceeds its size at the SLO when the
arrivals over ``W`` exceed ``μ n W`` tokens.

:func:`window_late_share` counts, for each utilisation ``u``, the share of a
model's tokens that arrive in windows of ``W`` whose token rate exceeds
``x̄ / (ρ̄ u)`` (the capacity at the SLO of a pool planned at ``u`` for its
interval's mean): an estimate of the share of tokens served late at ``u``, from the
arrivals alone. The router interleaves a model's requests over its pools smoothly
(:mod:`mpc_dc.sim.router`), so every pool of a model sees the model's bursts at the
same relative size and one curve per model serves all its pools. It is computed on
the history before the run (what a planner can know then), the same for every
controller: the perfect-foresight oracle knows the 15-min series, not the bursts
inside it. The plan's congestion cost takes it with
``controller.congestion_calibration = "history"``, and with the default ``"auto"``
where the history holds requests of every model
(:func:`mpc_dc.blocks.lateness.calibrated_knee_weights`).
"""

from __future__ import annotations

import numpy as np

from mpc_dc.sim.arrivals import STEP_S

BURST_UTILISATIONS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 1.0001, 0.05), 2))
"""Planned utilisations ``u`` [-] at which :func:`window_late_share` is evaluated:
0.5 to 1 by 0.05 (the congestion knees lie in it)."""


def window_late_share(arrival_s: np.ndarray, response_tokens: np.ndarray, span_s: float,
                      window_s: float, utilization_cap: float,
                      utilisations: tuple[float, ...] = BURST_UTILISATIONS,
                      step_s: float = STEP_S) -> np.ndarray:
    """Share of tokens arriving in a window whose rate exceeds the capacity at the SLO
    of a pool planned at each utilisation for its interval's mean (module docstring).

    Parameters
    ----------
    arrival_s : ndarray [s]
        Arrival times of one model's requests, from the start of the span.
    response_tokens : ndarray [tokens]
        Their response tokens.
    span_s : float [s]
        Length of the span (whole intervals are used; requests beyond are ignored).
    window_s : float [s]
        ``W``; windows tile each interval from its start, the last one shorter when
        ``W`` does not divide it (its rate over its own length).
    utilization_cap : float [-]
        ``ρ̄``.
    utilisations : tuple of float [-]
        The planned utilisations ``u`` (> 0).
    step_s : float [s]
        Interval length.

    Returns
    -------
    ndarray (len(utilisations),) [-]
        For each ``u``: tokens in windows with rate ``> x̄ / (ρ̄ u)`` over all tokens;
        0 when no token arrived.
    """
    window_tokens, lengths = interval_windows(arrival_s, response_tokens, span_s, window_s,
                                              step_s)
    total = float(window_tokens.sum())
    if total <= 0:
        return np.zeros(len(utilisations))
    rate = window_tokens / lengths[None, :]                       # [tokens/s]
    mean = window_tokens.sum(axis=1, keepdims=True) / step_s      # x̄ [tokens/s]
    return np.array([float(window_tokens[rate > mean / (utilization_cap * u)].sum()) / total
                     for u in utilisations])


def interval_windows(arrival_s: np.ndarray, response_tokens: np.ndarray, span_s: float,
                     window_s: float, step_s: float = STEP_S
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Tokens arriving in each window of ``window_s`` that tiles each interval of the
    span from its start (the last one of each interval shorter when ``window_s`` does
    not divide it).

    Parameters
    ----------
    arrival_s : ndarray [s]
        Arrival times from the start of the span.
    response_tokens : ndarray [tokens]
    span_s : float [s]
        Whole intervals of it are used; requests beyond are ignored.
    window_s : float [s]
        Finite and > 0.
    step_s : float [s]
        Interval length.

    Returns
    -------
    window_tokens : ndarray (intervals, windows per interval) [tokens]
    lengths : ndarray (windows per interval,) [s]
    """
    if window_s <= 0 or not np.isfinite(window_s):
        raise ValueError(f"interval_windows: window_s: expected a finite value > 0, got "
                         f"{window_s!r}")
    n_steps = int(span_s // step_s)
    per_step = int(np.ceil(step_s / window_s))
    t = np.asarray(arrival_s, dtype=float)
    tokens = np.asarray(response_tokens, dtype=float)
    inside = (t >= 0) & (t < n_steps * step_s)
    t, tokens = t[inside], tokens[inside]
    step = (t // step_s).astype(np.int64)
    slot = np.minimum(((t - step * step_s) // window_s).astype(np.int64), per_step - 1)
    window_tokens = np.bincount(step * per_step + slot, weights=tokens,
                                minlength=n_steps * per_step).reshape(n_steps, per_step)
    return window_tokens, np.minimum(window_s, step_s - window_s * np.arange(per_step))
