"""Deterministic smooth routing of requests to pools by the committed shares.

For each model and interval with ``n`` requests and pool shares ``s_j`` the
router apportions integer counts ``c_j`` to the targets ``n · s_j + e_j``, where
``e_j`` is the rounding error carried from the previous intervals (largest
remainder method), so that over any run ``|Σ c_j - Σ n · s_j| < 1`` request per
pool: the realized shares track the plan exactly up to one request. Within the
interval the pools' requests are interleaved smoothly (stride scheduling: the
``r``-th request of pool ``j`` gets the key ``(r + 1/2) / c_j`` and requests are
taken in key order), the vectorised equivalent of a smooth weighted
round-robin. No randomness is involved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mpc_dc.site.config import PoolKey

NO_ROUTE = -1
"""Pool index of a request whose model has no pool with a positive share."""


def apportion(target: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``target`` (largest remainder).

    Parameters
    ----------
    target : ndarray [requests]
        Real-valued targets (may be slightly negative from carried errors).
    n : int [requests]

    Returns
    -------
    ndarray of int64, non-negative, summing to ``n``.
    """
    counts = np.maximum(np.floor(target), 0).astype(np.int64)
    missing = n - int(counts.sum())
    if missing > 0:
        # Carried errors can leave more missing than there are pools (a target of
        # n − 1.5 for a single pool): whole rounds first, then largest remainders.
        rounds, extra = divmod(missing, target.size)
        order = np.argsort(-(target - counts), kind="stable")
        counts += rounds
        counts[order[:extra]] += 1
    while missing < 0:
        # Too many after flooring negatives to 0: take back where the excess is largest.
        excess = np.where(counts > 0, counts - target, -np.inf)
        counts[int(np.argmax(excess))] -= 1
        missing += 1
    return counts


class SmoothRouter:
    """Routes each interval's requests to pools by the committed shares.

    Parameters
    ----------
    pools : sequence of PoolKey
        All pools of the run; a request's pool is its index in this sequence.
    models : sequence of str
        Model families; a request's model is its index in this sequence.
    """

    def __init__(self, pools: Sequence[PoolKey], models: Sequence[str]) -> None:
        self.pools = tuple(pools)
        self.models = tuple(models)
        self._index = {k: i for i, k in enumerate(self.pools)}
        self._carry = np.zeros(len(self.pools))
        self.routed = np.zeros(len(self.pools), dtype=np.int64)
        self.planned = np.zeros(len(self.pools))

    def route(self, model: np.ndarray, shares: Mapping[PoolKey, float]) -> np.ndarray:
        """Pool index of each request of one interval.

        Parameters
        ----------
        model : ndarray of int
            Model index of each request, in arrival order.
        shares : Mapping[PoolKey, float] [-]
            The interval's routing shares; unknown pools raise ``KeyError``.

        Returns
        -------
        ndarray of int32
            Pool index per request, :data:`NO_ROUTE` where the model has no pool.
        """
        out = np.full(model.size, NO_ROUTE, dtype=np.int32)
        by_model: dict[int, list[tuple[int, float]]] = {}
        for key, share in shares.items():
            if share <= 0:
                continue
            if key not in self._index:
                raise KeyError(f"routing share for unknown pool {key}")
            by_model.setdefault(self.models.index(key[1]), []).append((self._index[key], share))
        for m, entries in by_model.items():
            sel = np.flatnonzero(model == m)
            if sel.size == 0:
                continue
            pools = np.array([p for p, _ in entries], dtype=np.int32)
            s = np.array([v for _, v in entries])
            s = s / s.sum()
            target = self._carry[pools] + sel.size * s
            counts = apportion(target, int(sel.size))
            # the carry is a rounding error: keep it one request wide at most
            self._carry[pools] = np.clip(target - counts, -1.0, 1.0)
            self.routed[pools] += counts
            self.planned[pools] += sel.size * s
            ids = np.repeat(pools, counts)
            rank = np.arange(ids.size) - np.repeat(np.cumsum(counts) - counts, counts)
            keys = (rank + 0.5) / np.repeat(np.maximum(counts, 1), counts)
            out[sel] = ids[np.argsort(keys, kind="stable")]
        return out
