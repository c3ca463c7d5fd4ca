"""When the closed loop hands realized exogenous values to a controller.

The plant and the meter use the realized value of interval ``t`` while it runs;
a controller may *observe* it only once it is published
(:class:`traces.grid.Publication`): a native 15-min value at the end of its
interval, an hourly average at the end of its hour (all four quarters at once),
later where the source publishes later. :class:`ObservationSchedule` turns the
per-series rules into what becomes observable during each interval of a run
(:meth:`mpc_dc.sim.exogenous.SiteExogenous.published_during`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from traces.grid import STEP, Publication

NATIVE = Publication()
"""Observable at the end of its own 15-min interval (series without a stated rule)."""


class PublicationLagError(ValueError):
    """The history before the run is shorter than a column's publication lag: values
    due to be delivered during the run were never in the data."""


class ObservationSchedule:
    """Which realized values are observable when, for the columns of one run.

    Positions count 15-min intervals from the run start (negative: history).

    Parameters
    ----------
    start : Timestamp
        First interval of the run (UTC).
    n_steps : int
        Intervals in the run.
    columns : sequence of str
    values : ndarray, shape (n_before + n_steps, len(columns))
        Realized values from position ``-n_before`` on [column units].
    n_before : int
        History intervals in ``values`` before the run.
    publication : Mapping[str, Publication]
        Rule per column; a column without one is :data:`NATIVE`.

    Raises
    ------
    PublicationLagError
        When a column's publication lag reaches back before the history (values
        still to be delivered would be unknown).
    """

    def __init__(
        self,
        start: pd.Timestamp,
        n_steps: int,
        columns: Sequence[str],
        values: np.ndarray,
        n_before: int,
        publication: Mapping[str, Publication],
    ) -> None:
        unknown = sorted(set(publication) - set(columns))
        if unknown:
            raise ValueError(f"publication rules for unknown columns {unknown}")
        self.columns = tuple(columns)
        self.start = pd.Timestamp(start)
        self.n_before = int(n_before)
        self._values = np.asarray(values, dtype=float)
        now = self.start.value + np.arange(n_steps + 1, dtype=np.int64) * STEP.value
        # first[c, k]: position of the first interval of column c not observable at
        # the start of interval k (k = n_steps: the run end).
        self.first = np.vstack(
            [
                (publication.get(c, NATIVE).observable_before_ns(now) - self.start.value)
                // STEP.value
                for c in self.columns
            ]
        ).astype(np.int64)
        short = [c for c, f in zip(self.columns, self.first[:, 0], strict=True) if f < -n_before]
        if short:
            raise PublicationLagError(
                f"history of {n_before} intervals is shorter than the publication lag of {short}"
            )
        self.rules = {c: publication.get(c, NATIVE) for c in self.columns}
        self._position = {c: i for i, c in enumerate(self.columns)}
        # Columns under the same rule are delivered together: one loop per rule, not
        # per column (a site run has tens of columns, most of them native).
        groups: dict[Publication, list[int]] = {}
        for i, c in enumerate(self.columns):
            groups.setdefault(self.rules[c], []).append(i)
        self._groups = [
            (np.asarray(idx), [self.columns[i] for i in idx], int(idx[0]))
            for idx in groups.values()
        ]

    def observable_at_start(self, column: str) -> int:
        """Intervals of history (from its start) already observable at the run start."""
        return self.n_before + int(self.first[self.columns.index(column), 0])

    def last_observable(self, column: str, step: int) -> int:
        """Position of the last interval of ``column`` observable at the start of
        interval ``step`` (``step = n_steps``: the run end)."""
        return int(self.first[self._position[column], step]) - 1

    def last_published_values(self, column: str) -> np.ndarray:
        """The value of ``column`` last published by the start of each run interval,
        shape ``(n_steps,)`` [column units]: the value at :meth:`last_observable` of
        each interval, a missing (NaN) value holding the one published before it; NaN
        where nothing was published yet. What a controller without a forecast knows of
        the interval (an hourly price: the last whole hour's)."""
        i = self._position[column]
        # last_observable of every run interval at once (the schedule's one lookup)
        positions = self.n_before + self.first[i, :-1] - 1
        values = self._values[:, i]
        # forward fill: each position's value, or the last non-NaN one before it
        filled = np.where(np.isnan(values), -1, np.arange(values.size))
        np.maximum.accumulate(filled, out=filled)
        out = np.full(positions.size, np.nan)
        known = positions >= 0
        last = filled[positions[known]]
        out[known] = np.where(last >= 0, values[np.maximum(last, 0)], np.nan)
        return out

    def published_during(self, step: int) -> list[tuple[int, dict[str, float]]]:
        """Values that become observable during interval ``step`` (by its end).

        Returns
        -------
        list of (position, {column: value})
            In increasing position; each dict holds the columns published for that
            interval (a subset of the columns).
        """
        lo, hi = self.first[:, step], self.first[:, step + 1]
        out: dict[int, dict[str, float]] = {}
        for idx, names, i in self._groups:
            for pos in range(int(lo[i]), int(hi[i])):
                values = self._values[self.n_before + pos, idx].tolist()
                out.setdefault(pos, {}).update(zip(names, values, strict=True))
        return sorted(out.items())
