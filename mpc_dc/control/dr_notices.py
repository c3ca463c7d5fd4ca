"""What a controller has been told of the DR programme's events, and nothing later.

Under ``site.dr.baseline = "prior_days"`` the programme announces each event with its
baseline at the event's notice (:mod:`mpc_dc.sim.dr_program`): the loop hands the
policy ``dr_event[C]`` and ``dr_baseline_mw[C]`` of each event interval through
``observe`` then. :class:`DrNotices` keeps what was told; :meth:`DrNotices.apply`
puts it into the horizon a controller plans on: an event interval it has not been
told of carries no event and no baseline, a told one the baseline as announced.
Under ``s1_plan`` (the baseline known before the run) it changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mpc_dc.problem import HorizonInputs
from mpc_dc.sim.exogenous import SiteExogenous, column
from traces.grid import STEP


class DrNotices:
    """The DR events and baselines announced to a controller so far.

    Parameters
    ----------
    exo : SiteExogenous
        Only its grid, campuses and ``site.dr.baseline`` are read.

    Attributes
    ----------
    baseline_mw : ndarray (n_steps, C) [MW]
        The announced baseline per run step and campus; NaN where none was told.
    """

    def __init__(self, exo: SiteExogenous) -> None:
        self.active = exo.site.dr.baseline == "prior_days"
        self.run_start = exo.run_start
        self.columns = {column("dr_baseline_mw", c.name): i
                        for i, c in enumerate(exo.site.campuses)}
        self.baseline_mw = np.full((exo.n_steps, len(exo.site.campuses)), np.nan)

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep the baselines among ``values`` (of the interval starting at ``time``)."""
        if not self.active:
            return
        step = int((pd.Timestamp(time) - self.run_start) // STEP)
        if not 0 <= step < len(self.baseline_mw):
            return
        for name, i in self.columns.items():
            value = values.get(name)
            if value is not None:
                self.baseline_mw[step, i] = float(value)

    def apply(self, step: int, inputs: HorizonInputs) -> HorizonInputs:
        """``inputs`` of the horizon from ``step`` with only the told events and their
        announced baselines (module docstring)."""
        if not self.active or inputs.dr_event is None:
            return inputs
        H = inputs.horizon_steps
        n = min(H, len(self.baseline_mw) - step)
        told = np.full((len(self.columns), H), np.nan)
        told[:, :n] = self.baseline_mw[step: step + n].T
        known = np.isfinite(told)
        return inputs.with_fields(dr_event=np.where(known, inputs.dr_event, 0.0),
                                  dr_baseline_mw=np.where(known, told, 0.0))
