"""The event loop of request-level continuous batching, compiled with numba.

One call serves one pool over one interval ``[t0, t1)``: the requests waiting in
the pool's queue, then the interval's arrivals, on the pool's instances. The
physics and the rules are documented in :mod:`mpc_dc.sim.serving`; this module only
holds their compiled form. Why compiled: a faithful event loop costs about 60
Python operations per request (admission with prefill stall, completion with the
virtual clock), which runs at ~0.25 M requests/s on a loaded 2-core machine even
with every attribute in a local variable; the same loop compiled runs at several
million requests/s.

State layout
------------
``fs[j, :]`` holds instance ``j``'s floats (columns ``F_*``); its running requests
are a binary min-heap keyed by their completion on the instance's virtual clock,
stored in the rows ``hk[j]`` (key), ``hr[j]`` (request id), ``hw[j]`` (energy clock
at admission), ``hc[j]`` (KV tokens it holds at completion), ``hq[j]`` (output
tokens per decode step), with ``hsize[j]`` entries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Columns of the instance state ``fs``.
F_V = 0  # decode steps done (virtual clock) [steps]
F_CTX = 1  # KV tokens of the batch [tokens]
F_NB = 2  # requests admitted [-]
F_RATE = 3  # output tokens per decode step [tokens/step]
F_KV = 4  # KV tokens reserved [tokens]
F_STALL = 5  # decode frozen until then (prefills) [s]
F_TL = 6  # time the state was last advanced to [s]
F_W = 7  # ∫ (P(n) − P0) / n dt [J per request]
F_READY = 8  # time the instance is ready [s]
F_CREATED = 9  # time the instance was committed [s]
F_OFF = 10  # time it went off (draining done) [s], inf while on
F_DEC = 11  # output tokens decoded in the interval [tokens]
F_ACT = 12  # ∫ (P(n) − P0) dt in the interval [J]
F_BUSY = 13  # ∫ n dt in the interval [request-s]
F_STEPS = 14  # decode steps in the interval [steps]
F_UP = 15  # 1: ready and admitting
F_DRAIN = 16  # 1: draining (admits nothing)
F_ALIVE = 17  # 1: the slot holds an instance drawing power
F_STALL0 = 18  # start of the current stall [s]
N_FIELDS = 19

# Columns of the pool parameters ``pp``.
P_D = 0  # step time per KV token [s/token]
P_INV_R = 1  # 1 / prefill rate [s/token]
P_KV_CAP = 2  # KV tokens per instance [tokens]
P_MAX_BATCH = 3  # largest batch [requests]
P_STEP_S = 4  # interval length of the first-token bins [s]
P_HIST_DT = 5  # bin width of the inter-token-gap histogram [s]
N_PARAMS = 6


@njit(cache=True)
def _move(hk, hr, hw, hc, hq, j, dst, src):  # type: ignore[no-untyped-def]
    """Heap ``j``: entry ``src`` to position ``dst`` (all five arrays)."""
    hk[j, dst] = hk[j, src]
    hr[j, dst] = hr[j, src]
    hw[j, dst] = hw[j, src]
    hc[j, dst] = hc[j, src]
    hq[j, dst] = hq[j, src]


@njit(cache=True)
def _put(hk, hr, hw, hc, hq, j, pos, key, rid, w, c, q):  # type: ignore[no-untyped-def]
    hk[j, pos] = key
    hr[j, pos] = rid
    hw[j, pos] = w
    hc[j, pos] = c
    hq[j, pos] = q


@njit(cache=True)
def _sift_down(hk, hr, hw, hc, hq, j, pos, size):  # type: ignore[no-untyped-def]
    k = hk[j, pos]
    r = hr[j, pos]
    w = hw[j, pos]
    c = hc[j, pos]
    q = hq[j, pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and hk[j, child + 1] < hk[j, child]:
            child += 1
        if hk[j, child] >= k:
            break
        _move(hk, hr, hw, hc, hq, j, pos, child)
        pos = child
    _put(hk, hr, hw, hc, hq, j, pos, k, r, w, c, q)


@njit(cache=True)
def _heap_push(hk, hr, hw, hc, hq, hsize, j, key, rid, w, c, q):  # type: ignore[no-untyped-def]
    pos = hsize[j]
    hsize[j] = pos + 1
    while pos > 0:
        parent = (pos - 1) // 2
        if hk[j, parent] <= key:
            break
        _move(hk, hr, hw, hc, hq, j, pos, parent)
        pos = parent
    _put(hk, hr, hw, hc, hq, j, pos, key, rid, w, c, q)


@njit(cache=True)
def _heap_pop(hk, hr, hw, hc, hq, hsize, j):  # type: ignore[no-untyped-def]
    """Remove the top entry of heap ``j`` (read it before calling)."""
    last = hsize[j] - 1
    hsize[j] = last
    if last > 0:
        _move(hk, hr, hw, hc, hq, j, 0, last)
        _sift_down(hk, hr, hw, hc, hq, j, 0, last)


@njit(cache=True)
def _advance(fs, j, now, base, pw, pwa, pp, hist):  # type: ignore[no-untyped-def]
    """Bring instance ``j`` to ``now``: energy, occupancy, decode progress."""
    tl = fs[j, F_TL]
    dt = now - tl
    if dt <= 0.0:
        return
    nb = int(fs[j, F_NB])
    if nb > 0:
        fs[j, F_ACT] += pw[nb] * dt
        fs[j, F_W] += pwa[nb] * dt
        fs[j, F_BUSY] += nb * dt
        st = fs[j, F_STALL]
        s = st if st > tl else tl
        t2 = now - s
        if t2 > 0.0:
            d = pp[P_D]
            ctx = fs[j, F_CTX]
            t0 = base[nb] + d * ctx
            g = d * nb
            # the step grows by g per step: t(ΔV) = t0·ΔV + g·ΔV²/2, inverted
            dv = t2 / t0 if g == 0.0 else 2.0 * t2 / (t0 + math.sqrt(t0 * t0 + 2.0 * g * t2))
            rate = fs[j, F_RATE]
            fs[j, F_V] += dv
            fs[j, F_CTX] = ctx + nb * dv
            fs[j, F_DEC] += rate * dv
            fs[j, F_STEPS] += dv
            if hist.size > 0 and rate > 0.0:
                _record_gaps(fs, j, st, tl, t2, dv, rate, pp, hist)
    fs[j, F_TL] = now


@njit(cache=True)
def _record_gaps(fs, j, st, tl, t2, dv, rate, pp, hist):  # type: ignore[no-untyped-def]
    """Inter-token gaps of a decode segment into the token-weighted histogram."""
    width = pp[P_HIST_DT]
    last = hist.size - 1
    mean_step = t2 / dv
    tokens = rate * dv
    if st > tl:
        # the first step after a stall carries the stall: one longer gap per request
        gap = st - fs[j, F_STALL0] + mean_step
        k = min(int(gap / width), last)
        first = min(rate, tokens)
        hist[k] += first
        tokens -= first
    k = min(int(mean_step / width), last)
    hist[k] += tokens


@njit(cache=True)
def _next_event(fs, hk, hsize, j, base, pp):  # type: ignore[no-untyped-def]
    """Time of instance ``j``'s next event: ready, or its next completion [s]."""
    if fs[j, F_ALIVE] == 0.0:
        return math.inf
    if fs[j, F_UP] == 0.0 and fs[j, F_DRAIN] == 0.0:
        return fs[j, F_READY]
    if hsize[j] == 0:
        return math.inf
    st = fs[j, F_STALL]
    tl = fs[j, F_TL]
    start = st if st > tl else tl
    dv = hk[j, 0] - fs[j, F_V]
    if dv <= 0.0:
        return start
    nb = int(fs[j, F_NB])
    d = pp[P_D]
    t0 = base[nb] + d * fs[j, F_CTX]
    return start + dv * (t0 + 0.5 * d * nb * dv)


@njit(cache=True)
def _fits(fs, j, p, n, pp):  # type: ignore[no-untyped-def]
    nb = fs[j, F_NB]
    if nb >= pp[P_MAX_BATCH]:
        return False
    return nb == 0.0 or fs[j, F_CTX] + p + n <= pp[P_KV_CAP]


@njit(cache=True)
def serve_interval(  # type: ignore[no-untyped-def]
    t0, t1, fs, hk, hr, hw, hc, hq, hsize, tnext, rr,
    cand, cand_t, cand_steps, cand_rate, nq,
    req_p, req_n, base, pw, pwa, pp,
    start, first, finish, energy, first_bins, hist,
):
    """Serve one pool in ``[t0, t1)``.

    Parameters
    ----------
    t0, t1 : float [s]
    fs, hk, hr, hw, hc, hq, hsize
        Instance state and request heaps (module docstring), updated in place.
    tnext : ndarray [s]
        Next event time per instance slot (recomputed here).
    rr : ndarray of int64, shape (1,)
        Round-robin pointer of the dispatch, updated in place.
    cand : ndarray of int64
        Request ids: the ``nq`` queued ones (FCFS), then the interval's arrivals.
    cand_t : ndarray [s]
        Their arrival times.
    cand_steps, cand_rate : ndarray
        Decode steps each needs and output tokens per step.
    req_p, req_n : ndarray of int64
        Prompt and response tokens of every request of the run.
    base, pw, pwa : ndarray
        Per batch size: step time without KV term [s], ``P(n) − P0`` [W],
        ``(P(n) − P0) / n`` [W].
    pp : ndarray
        Pool parameters (``P_*``).
    start, first, finish, energy : ndarray
        Per-request results of the run, written in place [s], [J].
    first_bins : ndarray [tokens]
        First tokens per interval of the run (the last bin: after the run end).
    hist : ndarray [tokens]
        Token-weighted histogram of inter-token gaps (empty: not recorded).

    Returns
    -------
    qh : int
        Index in ``cand`` of the first request still waiting (all after it wait).
    admitted : int

    Every instance still on is advanced to ``t1`` before returning.
    """
    m = fs.shape[0]
    nc = cand.size
    step_s = pp[P_STEP_S]
    nbins = first_bins.size - 1
    for j in range(m):
        tnext[j] = _next_event(fs, hk, hsize, j, base, pp)
    qh = 0
    ai = nq
    admitted = 0
    # requests carried in the queue go first, at the interval start
    prefer = -1
    now = t0
    pending = True  # try the queue
    while True:
        if pending:
            pending = False
            while qh < ai:
                rid = cand[qh]
                p = req_p[rid]
                n = req_n[rid]
                jj = -1
                if prefer >= 0 and fs[prefer, F_UP] == 1.0 and _fits(fs, prefer, p, n, pp):
                    jj = prefer
                else:
                    for j in range(m):
                        if fs[j, F_UP] == 1.0 and _fits(fs, j, p, n, pp):
                            jj = j
                            break
                if jj < 0:
                    break
                _admit(fs, hk, hr, hw, hc, hq, hsize, jj, rid, p, n, cand_steps[qh],
                       cand_rate[qh], now, base, pw, pwa, pp, start, first, first_bins,
                       step_s, nbins, hist)
                tnext[jj] = _next_event(fs, hk, hsize, jj, base, pp)
                qh += 1
                admitted += 1
        ta = cand_t[ai] if ai < nc else t1
        # earliest instance event
        je = -1
        te = math.inf
        for j in range(m):
            if tnext[j] < te:
                te = tnext[j]
                je = j
        if je >= 0 and te < ta:
            j = je
            t = te
            if fs[j, F_UP] == 0.0 and fs[j, F_DRAIN] == 0.0:
                fs[j, F_UP] = 1.0  # loading finished
                _advance(fs, j, t, base, pw, pwa, pp, hist)
                tnext[j] = _next_event(fs, hk, hsize, j, base, pp)
                prefer = j
                now = t
                pending = True
                continue
            t = max(t, fs[j, F_TL])
            _advance(fs, j, t, base, pw, pwa, pp, hist)
            # the event is the top request's completion: snap the clock onto it (the
            # inverse of the step-time integral can fall short by a rounding error)
            if hk[j, 0] > fs[j, F_V]:
                fs[j, F_CTX] += fs[j, F_NB] * (hk[j, 0] - fs[j, F_V])
                fs[j, F_V] = hk[j, 0]
            vnow = fs[j, F_V] * (1.0 + 1e-12) + 1e-9
            w = fs[j, F_W]
            while hsize[j] > 0 and hk[j, 0] <= vnow:
                rid = hr[j, 0]
                fs[j, F_NB] -= 1.0
                fs[j, F_KV] -= req_p[rid] + req_n[rid]
                fs[j, F_CTX] -= hc[j, 0]
                fs[j, F_RATE] -= hq[j, 0]
                finish[rid] = t
                energy[rid] = w - hw[j, 0]
                _heap_pop(hk, hr, hw, hc, hq, hsize, j)
            if fs[j, F_NB] <= 0.0:
                fs[j, F_NB] = 0.0
                fs[j, F_CTX] = 0.0
                fs[j, F_KV] = 0.0
                fs[j, F_RATE] = 0.0
                if fs[j, F_DRAIN] == 1.0:
                    fs[j, F_OFF] = t
                    fs[j, F_ALIVE] = 0.0
            tnext[j] = _next_event(fs, hk, hsize, j, base, pp)
            if qh < ai and fs[j, F_UP] == 1.0:
                prefer = j
                now = t
                pending = True
            continue
        if ai >= nc:
            break
        # an arrival
        a = ta
        if qh == ai:
            rid = cand[ai]
            p = req_p[rid]
            n = req_n[rid]
            jj = _pick(fs, m, rr, p, n, pp)
            if jj >= 0:
                _admit(fs, hk, hr, hw, hc, hq, hsize, jj, rid, p, n, cand_steps[ai],
                       cand_rate[ai], a, base, pw, pwa, pp, start, first, first_bins,
                       step_s, nbins, hist)
                tnext[jj] = _next_event(fs, hk, hsize, jj, base, pp)
                qh += 1
                admitted += 1
        ai += 1
    for j in range(m):
        if fs[j, F_ALIVE] == 1.0:
            _advance(fs, j, t1, base, pw, pwa, pp, hist)
    return qh, admitted


@njit(cache=True)
def _pick(fs, m, rr, p, n, pp):  # type: ignore[no-untyped-def]
    """Instance for a new arrival: the less occupied of the next two admitting
    instances in round-robin order that can take it, else the first that can."""
    first_up = -1
    second_up = -1
    r = rr[0]
    for k in range(m):
        j = (r + k) % m
        if fs[j, F_UP] == 1.0:
            if first_up < 0:
                first_up = j
            else:
                second_up = j
                break
    if first_up < 0:
        return -1
    rr[0] = first_up + 1
    a = first_up
    b = second_up
    if b >= 0 and fs[b, F_NB] < fs[a, F_NB]:
        a, b = b, a
    if _fits(fs, a, p, n, pp):
        return a
    if b >= 0 and _fits(fs, b, p, n, pp):
        return b
    for j in range(m):
        if fs[j, F_UP] == 1.0 and _fits(fs, j, p, n, pp):
            return j
    return -1


@njit(cache=True)
def _admit(  # type: ignore[no-untyped-def]
    fs, hk, hr, hw, hc, hq, hsize, j, rid, p, n, steps, rate, now,
    base, pw, pwa, pp, start, first, first_bins, step_s, nbins, hist,
):
    """Request ``rid`` joins instance ``j``'s batch at ``now``; its prefill extends the stall."""
    _advance(fs, j, now, base, pw, pwa, pp, hist)
    st = fs[j, F_STALL]
    if st <= now:
        fs[j, F_STALL0] = now
        st = now
    ft = st + p * pp[P_INV_R]
    fs[j, F_STALL] = ft
    start[rid] = now
    has_first = 1 if n > 0 else 0
    if has_first:
        first[rid] = ft
        k = int(ft / step_s)
        first_bins[k if k < nbins else nbins] += 1.0
    _heap_push(hk, hr, hw, hc, hq, hsize, j, fs[j, F_V] + steps, rid, fs[j, F_W],
               p + has_first + steps, rate)
    fs[j, F_NB] += 1.0
    fs[j, F_KV] += p + n
    fs[j, F_CTX] += p + has_first
    fs[j, F_RATE] += rate


def new_state(slots: int, max_batch: int) -> tuple[np.ndarray, ...]:
    """Empty instance state for ``slots`` instances of up to ``max_batch`` requests."""
    fs = np.zeros((slots, N_FIELDS))
    fs[:, F_OFF] = math.inf
    width = max_batch + 1
    return (
        fs,
        np.zeros((slots, width)),
        np.zeros((slots, width), dtype=np.int64),
        np.zeros((slots, width)),
        np.zeros((slots, width)),
        np.zeros((slots, width)),
        np.zeros(slots, dtype=np.int64),
    )
