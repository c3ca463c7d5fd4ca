"""Blocks of the RCDC formulation (DESIGN.md section 3).

Each block module offers flat ``define_*`` functions, one per concern, that add
variables, Parameters, named constraint groups and named cost terms to a
:class:`ModelContext`. The builder in :mod:`mpc_dc.problem` calls them in order;
nothing here solves or post-processes. Everything that changes between solves is
a ``cvxpy.Parameter`` that enters only the objective coefficients or the
right-hand sides, so the constraint matrix is parameter-free (needed by the
in-place HiGHS update of :mod:`mpc_dc.fastpath`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cvxpy as cp

from mpc_dc.params.site import SiteConfig
from traces.grid import STEP_H


@dataclass
class ModelContext:
    """The problem under construction.

    Parameters
    ----------
    config : SiteConfig
    horizon_steps : int
        Number of 15-min intervals H.
    exact : bool
        True adds the binaries of the exact MILP form; False builds the LP relaxation.
    step_h : float [h]
        Interval length Δ.
    """

    config: SiteConfig
    horizon_steps: int
    exact: bool
    step_h: float = STEP_H
    variables: dict[str, cp.Variable] = field(default_factory=dict)
    parameters: dict[str, cp.Parameter] = field(default_factory=dict)
    constraints: dict[str, list[cp.Constraint]] = field(default_factory=dict)
    costs: dict[str, cp.Expression] = field(default_factory=dict)

    def add_constraints(self, name: str, *constraints: cp.Constraint) -> None:
        """Register constraints under a group name (used in infeasibility reports)."""
        self.constraints.setdefault(name, []).extend(constraints)

    def all_constraints(self) -> list[cp.Constraint]:
        """Every constraint in registration order."""
        return [c for group in self.constraints.values() for c in group]
