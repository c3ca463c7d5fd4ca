"""Deferrable work in flight: released jobs grouped by deadline, processed earliest-deadline first.

Time is counted in grid steps from the start of the run. A job released at step
``r`` may be processed in intervals ``r, r+1, ...`` and must be done by the end
of interval ``d`` (its deadline step). Work is measured in work units [WU]
(:class:`mpc_dc.site.config.OtherIT`).

Conservation, checked by :meth:`Backlog.check_conservation`:
``released = done + pending + missed`` at all times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mpc_dc.sim.invariants import InvariantError

_EPS = 1e-9


@dataclass
class Backlog:
    """Released, unfinished deferrable work by deadline step.

    Attributes
    ----------
    pending : dict[int, float]
        Deadline step -> remaining work [WU].
    released_wu, done_wu, missed_wu : float [WU]
        Running totals.
    """

    pending: dict[int, float] = field(default_factory=dict)
    released_wu: float = 0.0
    done_wu: float = 0.0
    missed_wu: float = 0.0

    def release(self, amount_wu: float, deadline_step: int) -> None:
        """Add ``amount_wu`` of work due by the end of interval ``deadline_step``."""
        if amount_wu <= _EPS:
            return
        self.pending[deadline_step] = self.pending.get(deadline_step, 0.0) + amount_wu
        self.released_wu += amount_wu

    @property
    def total_wu(self) -> float:
        """All pending work [WU]."""
        return float(sum(self.pending.values()))

    def process(self, amount_wu: float) -> float:
        """Do up to ``amount_wu`` of pending work, earliest deadline first; return what was done."""
        remaining = amount_wu
        for deadline in sorted(self.pending):
            if remaining <= _EPS:
                break
            take = min(self.pending[deadline], remaining)
            self.pending[deadline] -= take
            remaining -= take
            if self.pending[deadline] <= _EPS:
                # Book the crumb as done so that totals reconcile exactly.
                take += self.pending.pop(deadline)
            self.done_wu += take
        return amount_wu - max(remaining, 0.0)

    def overdue_wu(self, step: int) -> float:
        """Pending work whose deadline interval ended before ``step`` [WU]."""
        return float(sum(w for d, w in self.pending.items() if d < step))

    def expire(self, step: int) -> float:
        """Drop work whose deadline interval ended before ``step``; return it as missed [WU]."""
        missed = 0.0
        for deadline in [d for d in self.pending if d < step]:
            missed += self.pending.pop(deadline)
        self.missed_wu += missed
        return missed

    def cumulative(
        self, now: int, horizon_steps: int, *, margin_steps: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pending work as the problem's cumulative vectors over ``[now, now + H)``.

        ``margin_steps`` brings every deadline forward by that many intervals (but
        not before ``now``).

        Returns
        -------
        due_cum_wu : ndarray [WU]
            Work that must be done by the end of each horizon interval; work due
            before ``now`` (already late) is due at once.
        available_cum_wu : ndarray [WU]
            Work processable by each interval: all pending work is available now.
        """
        due = np.zeros(horizon_steps)
        for deadline, work in self.pending.items():
            k = deadline - margin_steps - now
            if k < horizon_steps:
                due[max(k, 0)] += work
        return np.cumsum(due), np.full(horizon_steps, self.total_wu)

    def check_conservation(self) -> None:
        """Raise :class:`InvariantError` if ``released != done + pending + missed``."""
        balance = self.released_wu - (self.done_wu + self.total_wu + self.missed_wu)
        if abs(balance) > 1e-6 * max(1.0, self.released_wu):
            raise InvariantError(
                f"deferrable work not conserved: released {self.released_wu:.6f} WU != done "
                f"{self.done_wu:.6f} + pending {self.total_wu:.6f} + missed {self.missed_wu:.6f}"
            )
