"""Blocks of the one problem (DESIGN.md section 3) on one :class:`ModelContext`.

Each block module offers flat ``define_*`` functions, one per concern, that add
variables, Parameters, named constraint groups and named cost terms to the context.
The builder in :mod:`mpc_dc.problem` calls them in order; nothing here solves or
post-processes. Everything that changes between solves is a ``cvxpy.Parameter`` that
enters only objective coefficients or right-hand sides, so the constraint matrix is
parameter-free (the in-place HiGHS update of :mod:`mpc_dc.fastpath` needs it).

Indices and shapes
------------------
* campus c = 0..C−1 in :attr:`Site.campuses` order; a block that only some campuses
  have (other IT, renewable, battery, export, demand charge, inference pools) has its
  variables over that *subset* (rows in site order), and :meth:`ModelContext.select`
  maps them onto the C campuses. Variables are (rows, H) matrices, time last, so the
  column of row r at model column t is ``start + r + R t`` (cvxpy's Fortran order):
  the first ``R T`` columns of a variable are its first T model columns.
* pool k = (campus, model, precision) in :attr:`Site.pools` order; model m in
  :attr:`Site.models` order.
* model column t = 0..H−1 spans ``L[t]`` 15-min intervals
  (:attr:`ModelContext.interval_lengths`, all 1 unless the horizon has a coarse
  tail). Rates (MW, tokens/s, WU per interval) are held over a column; every cost and
  every cumulative quantity (deferrable work, battery energy) weights column t by
  ``L[t]``, so a column of L intervals costs and counts what L equal intervals would.

Units inside the model
----------------------
Power is in one site-wide unit ``u`` (:attr:`ModelContext.unit_mw` MW): kW for a site
of inference pools only (one instance draws 0.1-10 kW, campuses 1-10 MW; the fleet LP
solves several times faster in kW than in MW), MW as soon as a campus has other IT, a
renewable plant or a battery (those blocks are 10-1000 MW: in MW their coefficients
are the processing slopes, efficiencies and PUE, all near 1). Inference IT power is
always built in kW (per-instance idle power and J/token are kW-sized); on a MW site it
enters the power balance through one kW variable per campus and interval, so no row
mixes 10⁻³-sized per-instance coefficients with unit ones. Tokens are in ktokens/s,
work in WU, money in $, energy in ``u``·h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from mpc_dc.site.config import Campus, PoolKey, Site
from traces.grid import STEP_H

if TYPE_CHECKING:
    from mpc_dc.blocks.lateness import LatenessPrices

#: Seconds per interval [s].
STEP_S = STEP_H * 3600.0


def _rows(site: Site, has: object) -> np.ndarray:
    """Indices of the campuses for which ``has(campus)`` is true."""
    return np.array([i for i, c in enumerate(site.campuses) if has(c)],  # type: ignore[operator]
                    dtype=np.int64)


def has_export(campus: Campus) -> bool:
    """Whether the campus may export (a positive export limit)."""
    return campus.grid.export_limit_mw > 0


@dataclass
class ModelContext:
    """The problem under construction.

    Parameters
    ----------
    site : Site
    horizon_steps : int
        H: model columns.
    exact : bool
        True adds the binaries of the exact form (processing function, import/export
        and battery exclusivity); False builds the LP relaxation.
    interval_lengths : ndarray (H,) of int, optional
        ``L[t]`` intervals of Δ spanned by column t (default all 1).
    step_h : float [h]
        Δ.
    demand_response : bool
        Build the demand-response cap and settlement (rows and columns that stay
        inactive outside events); False leaves them out for sites without a
        programme.
    lateness : LatenessPrices, optional
        Prices of the lateness block (:mod:`mpc_dc.blocks.lateness`); None: no block.

    Attributes
    ----------
    unit_mw : float [MW]
        The model's power unit ``u`` (1e-3: kW, 1: MW; module docstring).
    pue : ndarray (C,) [-]
    other_it, renewable, battery, export, demand_charge, gpu_campuses : ndarray of int
        Campus indices of each subset (site order).
    pools : tuple of PoolKey
    mu_tokens_per_s, gpus, idle_w, energy_j_per_token, quality_loss : ndarray (P,)
        Per-pool figures: μ [tokens/s at the SLO] (:meth:`Fleet.capacity`: the
        workload's, else the quantization table's), the power line's intercept
        p_idle [W] and slope e [J/token] (:meth:`Fleet.power_line`: the batch curve's
        supporting line at ρ̄ μ on the workload, :mod:`mpc_dc.params.power_line`,
        else the table's idle power and marginal energy per token), and from the
        table g [GPUs], quality loss [points, >= 0].
    pool_pue : ndarray (P,) [-]
        PUE of each pool's campus.
    model_of, campus_of, gcampus_of : ndarray (P,) of int
        Model index, campus index (of C) and index among the campuses with GPUs.
    gpu_matrix : sparse (C_g × P)
        GPUs of each pool summed per campus with GPUs.
    warmup_matrix : ndarray (P, H) [-]
        ``min(1, load_time / (L[t] Δ))``: the share of column t a start loses.
    column_starts : ndarray (H,) of int
        First interval of each column.
    """

    site: Site
    horizon_steps: int
    exact: bool = False
    interval_lengths: np.ndarray | None = None
    step_h: float = STEP_H
    demand_response: bool = True
    lateness: LatenessPrices | None = None
    variables: dict[str, cp.Variable] = field(default_factory=dict)
    parameters: dict[str, cp.Parameter] = field(default_factory=dict)
    constraints: dict[str, list[cp.Constraint]] = field(default_factory=dict)
    costs: dict[str, cp.Expression] = field(default_factory=dict)
    expressions: dict[str, cp.Expression] = field(default_factory=dict)
    #: Parameters that are time series (set by the builder, read by the warm start).
    series_parameters: list[cp.Parameter] = field(default_factory=list)
    #: Campus index (of C) of each row of each binary variable, by variable name (the
    #: exact form's binaries are made integer campus by campus, mpc_dc.problem).
    binary_campuses: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        site, H = self.site, self.horizon_steps
        lengths = (np.ones(H, dtype=np.int64) if self.interval_lengths is None
                   else np.asarray(self.interval_lengths, dtype=np.int64))
        if lengths.shape != (H,) or np.any(lengths < 1):
            raise ValueError(f"ModelContext.interval_lengths: expected {H} integers >= 1, "
                             f"got {self.interval_lengths!r}")
        self.interval_lengths = lengths
        self.column_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.column_ends = self.column_starts + lengths - 1
        #: Whether some model column spans more than one interval.
        self.blocked = bool(np.any(lengths > 1))
        camps = site.campuses
        self.n_campuses = len(camps)
        self.pue = np.array([c.pue for c in camps], dtype=float)
        self.other_it = _rows(site, lambda c: c.other_it is not None)
        self.renewable = _rows(site, lambda c: c.renewable is not None)
        self.battery = _rows(site, lambda c: c.battery is not None)
        self.export = _rows(site, has_export)
        self.demand_charge = _rows(site, lambda c: c.grid.tariff.has_demand_charge)
        #: λ of each campus with a demand charge (C_d,) [$/MW per billing period].
        self.demand_charge_usd_per_mw = np.array(
            [camps[int(c)].grid.tariff.demand_charge_usd_per_mw for c in self.demand_charge],
            dtype=float)
        #: Renewable nameplate per campus (C,) [MW] (0 without a plant).
        self.nameplate_mw = np.array([c.nameplate_mw for c in camps], dtype=float)
        #: Battery energy capacity per campus (C,) [MWh] (0 without a battery).
        self.battery_energy_mwh = np.array(
            [0.0 if c.battery is None else c.battery.energy_mwh for c in camps], dtype=float)
        plant = self.other_it.size + self.renewable.size + self.battery.size
        self.unit_mw = 1.0 if plant else 1e-3
        self._pools(site)

    def _pools(self, site: Site) -> None:
        self.pools: tuple[PoolKey, ...] = site.pools
        self.gpu_campuses = _rows(site, lambda c: c.gpus > 0 and site.fleet is not None)
        rows = [site.row(k) for k in self.pools]
        fleet = site.fleet
        self.mu_tokens_per_s = np.array(
            [0.0 if fleet is None else fleet.capacity(k[1], k[2]) for k in self.pools],
            dtype=float)
        self.gpus = np.array([float(r.gpus_per_instance) for r in rows], dtype=float)
        lines = np.array([fleet.power_line(k[1], k[2]) if fleet is not None
                          else (r.idle_power_w, r.marginal_energy_per_token_j)
                          for k, r in zip(self.pools, rows, strict=True)],
                         dtype=float).reshape(-1, 2)
        self.idle_w, self.energy_j_per_token = lines[:, 0].copy(), lines[:, 1].copy()
        self.quality_loss = np.array([max(r.quality_loss_pct_points, 0.0) for r in rows],
                                     dtype=float)
        load_s = np.array([r.load_time_s for r in rows], dtype=float)
        assert self.interval_lengths is not None
        self.warmup_matrix = np.minimum(
            1.0, load_s[:, None] / (self.step_h * 3600.0 * self.interval_lengths[None, :]))
        names = site.campus_names
        self.model_of = np.array([site.models.index(k[1]) for k in self.pools], dtype=np.int64)
        self.campus_of = np.array([names.index(k[0]) for k in self.pools], dtype=np.int64)
        gindex = {int(c): i for i, c in enumerate(self.gpu_campuses)}
        self.gcampus_of = np.array([gindex[int(c)] for c in self.campus_of], dtype=np.int64)
        self.pool_pue = self.pue[self.campus_of] if self.pools else np.zeros(0)
        self.gpu_matrix = self._pool_matrix(self.gcampus_of, self.gpu_campuses.size, self.gpus)
        self._power: tuple[sp.csr_array, sp.csr_array] | None = None
        #: DR baseline of each column [u] (C, H) and whether it holds an event, set
        #: with the Parameters (post-processing reads them).
        self.dr_baseline = np.zeros((self.n_campuses, self.horizon_steps))
        self.dr_event_share = np.zeros((self.n_campuses, self.horizon_steps))

    # ------------------------------------------------------------------------- sizes

    @property
    def n_pools(self) -> int:
        """P."""
        return len(self.pools)

    @property
    def n_models(self) -> int:
        """M."""
        return len(self.site.models)

    @property
    def kw_per_unit(self) -> float:
        """kW in one model power unit [kW/u]."""
        return 1e3 * self.unit_mw

    @property
    def weights(self) -> np.ndarray:
        """``L[t]`` as floats (H,) [intervals]: the weight of column t in every cost term."""
        assert self.interval_lengths is not None  # set in __post_init__
        return self.interval_lengths.astype(float)

    # ------------------------------------------------------------------------- registry

    def add_constraints(self, name: str, *constraints: cp.Constraint) -> None:
        """Register constraints under a group name (used in infeasibility reports)."""
        self.constraints.setdefault(name, []).extend(constraints)

    def all_constraints(self) -> list[cp.Constraint]:
        """Every constraint in registration order."""
        return [c for group in self.constraints.values() for c in group]

    # ------------------------------------------------------------------------- matrices

    def select(self, rows: np.ndarray) -> sp.csr_array:
        """(C × len(rows)) 0/1 matrix placing a subset's rows on the C campuses."""
        n = rows.size
        return sp.csr_array((np.ones(n), (rows, np.arange(n))), shape=(self.n_campuses, n))

    def _pool_matrix(self, index: np.ndarray, n_rows: int,
                     weights: np.ndarray | None = None) -> sp.csr_array:
        w = np.ones(self.n_pools) if weights is None else weights
        return sp.csr_array((w, (index, np.arange(self.n_pools))), shape=(n_rows, self.n_pools))

    @property
    def power_matrices(self) -> tuple[sp.csr_array, sp.csr_array]:
        """(C × P) idle power per instance and energy per token/s, summed per campus
        [MW per instance, MW per token/s] (built once)."""
        if self._power is None:
            self._power = (self.campus_matrix(1e-6 * self.idle_w),
                           self.campus_matrix(1e-6 * self.energy_j_per_token))
        return self._power

    def model_matrix(self, weights: np.ndarray | None = None) -> sp.csr_array:
        """(M × P) sum over each model's pools, optionally weighted per pool."""
        return self._pool_matrix(self.model_of, self.n_models, weights)

    def campus_matrix(self, weights: np.ndarray | None = None) -> sp.csr_array:
        """(C × P) sum over each campus's pools, optionally weighted per pool."""
        return self._pool_matrix(self.campus_of, self.n_campuses, weights)

    # ------------------------------------------------------------------------- columns

    def reduce(self, values: np.ndarray, how: str = "mean") -> np.ndarray:
        """(R, intervals) → (R, columns): each column's ``"mean"``, ``"sum"``, ``"min"``
        or ``"last"`` over its intervals (with one-interval columns the values)."""
        values = np.asarray(values, dtype=float)
        if not self.blocked:
            return values
        if how == "last":
            return values[:, self.column_ends]
        if how == "min":
            return np.minimum.reduceat(values, self.column_starts, axis=1)
        total = np.add.reduceat(values, self.column_starts, axis=1)
        return total if how == "sum" else total / self.weights[None, :]
