"""What a controller knows at an interval start when the site has faults
(:mod:`mpc_dc.sim.faults`), applied to the horizon it plans on.

* DR events: :func:`~mpc_dc.control.mpc.build_horizon` reads the programme's events
  (announced before the run); an event announced late is not in the horizon until its
  announcement (:meth:`~mpc_dc.sim.exogenous.SiteExogenous.dr_unannounced`), nor its
  baseline.
* GPUs: a campus whose observed GPUs (those of the last interval,
  :attr:`~mpc_dc.sim.policy.CampusObservation.gpus_available`) fall short of what was
  planned for that interval has lost the difference; the controller takes the loss to
  last over its whole horizon (it cannot know when the GPUs come back) and learns of
  their return from the next observation.

Without faults neither changes anything: every event is announced, the observed GPUs
are the planned ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpc_dc.problem import HorizonInputs
from mpc_dc.sim.exogenous import SiteExogenous
from mpc_dc.sim.policy import Observation


def known_now(exo: SiteExogenous, obs: Observation, inputs: HorizonInputs) -> HorizonInputs:
    """``inputs`` of the horizon from ``obs`` restricted to what is known at ``obs``
    (module docstring)."""
    H = inputs.horizon_steps
    changes: dict[str, Any] = {}
    hidden = exo.dr_unannounced(obs.step, H)
    if hidden is not None and inputs.dr_event is not None and hidden.any():
        changes["dr_event"] = np.where(hidden, 0.0, inputs.dr_event)
        if inputs.dr_baseline_mw is not None:
            changes["dr_baseline_mw"] = np.where(hidden, 0.0, inputs.dr_baseline_mw)
    planned = exo.realized_array("gpus")[max(obs.step - 1, 0)]
    seen = np.array([np.nan if o.gpus_available is None else o.gpus_available
                     for o in (obs.campuses.get(c.name) for c in exo.site.campuses)
                     if o is not None])
    if seen.size == planned.size:
        lost = np.nan_to_num(planned - seen, nan=0.0)
        if np.any(lost > 0):
            gpus = (inputs.gpus_available if inputs.gpus_available is not None
                    else np.repeat(np.array([float(c.gpus) for c in exo.site.campuses])[:, None],
                                   H, axis=1))
            changes["gpus_available"] = np.maximum(gpus - np.maximum(lost, 0.0)[:, None], 0.0)
    return inputs.with_fields(**changes) if changes else inputs
