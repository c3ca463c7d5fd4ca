"""The run's exogenous data in the one site model (issue 14 contract, design14.md).

MINIMAL STUB (fields only, no methods), written by the scenario/data helper so that
:func:`mpc_dc.site.data.build_site_exogenous` has its return type; the simulator
helper owns this module and its full version (realized values per step and campus,
publication-timed observations, deferrable releases, tariff prices) replaces this
one at the merge. Keep the fields identical to the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.site.config import Site
from traces.grid import Publication


@dataclass(frozen=True)
class SiteExogenous:
    """Exogenous series of a run: history + run + one horizon after it (the tail).

    Parameters
    ----------
    site : Site
    frame : DataFrame
        15-min UTC grid (index ``interval_start_utc``) over history + run + tail;
        columns ``price_usd_per_mwh[C]`` [$/MWh], ``carbon_gco2_per_kwh[C]``
        [gCO2/kWh], ``renewable_cf[C]`` [-], ``workload_wu[C]`` [WU per interval],
        ``tokens_per_s[M]`` [tokens/s], ``requests_per_h[M]`` [requests/h],
        ``dr_event[C]`` [0/1], ``dr_baseline_mw[C]`` [MW], ``gpus_available[C]``
        [GPUs] (only those that apply).
    run_start : Timestamp
        First run interval (UTC); the history is the frame before it.
    n_steps : int
        Run intervals.
    requests : RequestArrays or None
        Run-period requests, arrival seconds from ``run_start`` (None without a fleet).
    publication : Mapping[str, Publication]
        Per frame column; absent: observable at the end of its 15-min interval.
    local_tz : str
        Billing calendar, DR local days, display.
    name : str
    """

    site: Site
    frame: pd.DataFrame
    run_start: pd.Timestamp
    n_steps: int
    requests: RequestArrays | None
    publication: Mapping[str, Publication] = field(default_factory=dict)
    local_tz: str = "America/New_York"
    name: str = "run"
