"""The deferrable-work release rule, re-exported from :mod:`mpc_dc.sim.exogenous2`.

Only :mod:`mpc_dc.studies.rcdc` imports it from here; it goes with the old problem
modules once the studies run on the one problem (issue 14).
"""

from mpc_dc.sim.exogenous2 import DeferrableRelease, deferrable_releases

__all__ = ["DeferrableRelease", "deferrable_releases"]
