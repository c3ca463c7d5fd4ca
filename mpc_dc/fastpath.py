"""Hot path: one HiGHS model kept in memory, re-solved with new costs and bounds.

cvxpy's DPP re-solve rebuilds the solver model on every call (~10 ms for the
96-step RCDC LP); HiGHS re-solving a model it already holds, from the previous
basis, takes ~1-2 ms. :class:`HighsFastPath` compiles a DPP cvxpy problem once,
reads from cvxpy's parametrised program the affine maps

    c(θ) = C [θ; 1]        (objective coefficients)
    b(θ) = B [θ; 1]        (right-hand sides, i.e. row bounds)

and checks that the constraint matrix does not depend on θ (every Parameter
enters costs or right-hand sides only). Each solve then evaluates the two maps,
changes only the driven cost and row-bound entries of the resident
``highspy.Highs`` model in place, and runs it. The equivalence with the cvxpy
path is asserted at construction (same ``c``, ``b`` as cvxpy's own compile) and
tested on optima (tests/test_problem_rcdc.py).

Warm starts across receding-horizon steps: HiGHS keeps its basis when costs and
bounds change in place, so a re-solve on the same horizon starts from the last
optimum. When the horizon moves on by one interval, the last optimum's basis is
one interval out of step with the new data; :meth:`HighsFastPath.shift_maps` and
:meth:`HighsFastPath.shift_basis` move it forward (the status of every column and
row of interval t+1 becomes that of interval t, the last interval keeps its own),
which on the fleet LP cuts the dual simplex iterations about threefold
(docs/fleet.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass

import cvxpy as cp
import highspy
import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

_PARAM_OFFSET_ID = -1  # cvxpy's id for the constant column of the parameter vector
_BASIC, _AT_LOWER, _AT_UPPER, _ZERO = 1, 0, 2, 3  # HighsBasisStatus values
_STATUS = np.array(list(highspy.HighsBasisStatus.__members__.values()), dtype=object)[
    np.argsort([int(v) for v in highspy.HighsBasisStatus.__members__.values()])]


NO_NODE_LIMIT = int(highspy.kHighsIInf)
"""HiGHS's ``mip_max_nodes`` when no node limit is set (its default)."""

_BANNER = {"silenced": False}
"""Whether this process's first HiGHS model has been built (with its banner swallowed)."""


TINY_COST = 1e-7
"""HiGHS's default ``dual_feasibility_tolerance`` (this module never changes it): a
cost coefficient of at most this magnitude is one HiGHS cannot price."""


def without_tiny_costs(costs: np.ndarray) -> np.ndarray:
    """``costs`` with every coefficient of magnitude <= :data:`TINY_COST` set to 0.

    With such a cost HiGHS 1.16's MIP presolve can return a worse plan as optimal,
    with a zero gap, where presolve off finds the optimum (measured on a 4-interval
    retail instance, ``tests/test_problem_properties.py::
    test_exact_form_ignores_an_export_price_below_highs_tolerance``: an export price of
    4e-7 $/MWh, cost coefficient 1e-7, gave 2251.0875 $ against the optimum
    2250.646875 $ that presolve off, a zero price, or 4.1e-7 $/MWh give). As zeros
    the model is the one HiGHS solves anyway: a reduced cost within the tolerance
    already counts as optimal. The objective moves by at most TINY_COST per unit of
    flow, and the plan's cost is recomputed from the real prices
    (``problem.plan_cost``).

    Parameters
    ----------
    costs : ndarray [$ per unit of each column]

    Returns
    -------
    ndarray
        A copy when any coefficient is zeroed, else ``costs`` itself.
    """
    tiny = (costs != 0.0) & (np.abs(costs) <= TINY_COST)
    if not tiny.any():
        return costs
    return np.where(tiny, 0.0, costs)


def _col_values(h: highspy.Highs) -> np.ndarray:
    """The column values of HiGHS's current solution [-] as a float array.

    highspy hands them over as a Python list; ``np.fromiter`` with the dtype given
    converts it about three times faster than ``np.asarray``, which first infers the
    dtype (the same values: both only convert Python floats).
    """
    values = h.getSolution().col_value
    return np.fromiter(values, dtype=np.float64, count=len(values))


def silence_highs_banner() -> None:
    """Swallow the copyright banner HiGHS prints on stdout at its first model in a process.

    HiGHS writes it from C++ when the first ``Highs()`` of a process is constructed,
    before any option (``output_flag``, ``log_to_console``) can be set on that model,
    and never again in the process. So the first model is built here with file
    descriptor 1 pointed at a temporary file; what it caught is logged at DEBUG.
    Idempotent; called by the CLI before a command runs, by sweep workers, and
    before the resident model of :class:`HighsFastPath` is built.
    """
    if _BANNER["silenced"]:
        return
    _BANNER["silenced"] = True
    # Python's own buffered lines go out first; no usable stdout means none to keep.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError as err:  # no stdout at all (a daemon): nothing to keep clean
        logger.debug("stdout not open (%s); HiGHS banner not redirected", err)
        highspy.Highs()
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            highspy.Highs()
            _flush_c_stdio()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        caught = sink.read().decode("utf-8", errors="replace").strip()
    if caught:
        logger.debug("HiGHS banner (kept off stdout): %s", " | ".join(caught.splitlines()))


def _flush_c_stdio() -> None:
    """Flush C stdio buffers, so the banner lands in the sink and not after it."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError) as err:  # no C runtime via ctypes (Windows)
        logger.debug("could not flush C stdio: %s", err)


class ParametricStructureError(ValueError):
    """The problem's constraint matrix depends on a Parameter (fast path not valid)."""


@dataclass(frozen=True)
class FastSolution:
    """Raw outcome of one HiGHS run.

    Attributes
    ----------
    model_status : str
        HiGHS model status name, e.g. ``"kOptimal"``.
    x : ndarray or None
        Column values (cvxpy's variable order) when HiGHS has a primal solution.
    objective : float
        Objective incl. cvxpy's constant offset [$].
    highs_time_s : float [s]
        HiGHS's own run time of this run.
    mip_gap : float [-]
        Relative MIP gap (0 for an LP).
    dual_bound : float
        HiGHS's MIP dual bound incl. cvxpy's constant offset (a lower bound on the
        MIP optimum, also when a limit stopped the run without an incumbent); NaN
        for an LP.
    simplex_iterations : int
        HiGHS's simplex iterations of this run (with one thread the same on any
        machine and load, unlike the time).
    """

    model_status: str
    x: np.ndarray | None
    objective: float
    highs_time_s: float
    mip_gap: float
    dual_bound: float = float("nan")
    simplex_iterations: int = 0


class HighsFastPath:
    """A DPP cvxpy problem compiled once into a resident HiGHS model.

    Parameters
    ----------
    problem : cvxpy.Problem
        DPP, linear (LP or MILP), every Parameter with a value set.
    time_limit_s : float [s]
        HiGHS's wall-clock limit per run.
    mip_rel_gap : float [-]
    mip_max_nodes : int, optional
        HiGHS's branch-and-bound node limit per MIP run (None: none). Unlike the
        wall-clock limit, a run it stops ends at the same plan on any machine and load.

    Attributes
    ----------
    time_limit_hits : int
        Runs HiGHS stopped on its wall-clock limit (``kTimeLimit``): their outcome
        depends on the machine and its load.
    node_limit_hits : int
        Runs HiGHS stopped on its branch-and-bound node limit (``kSolutionLimit``, the
        only HiGHS solution/node limit this class sets): deterministic, but the plan
        is the incumbent at the limit, not the optimum to the relative gap.
    """

    def __init__(self, problem: cp.Problem, *, time_limit_s: float = 30.0,
                 mip_rel_gap: float = 1e-4, mip_max_nodes: int | None = None) -> None:
        if not problem.is_dpp():
            raise ParametricStructureError("problem is not DPP")
        data, _, _ = problem.get_problem_data(cp.HIGHS)
        pp = data["param_prob"]
        A = sp.csc_array(data["A"])
        m, n = A.shape
        self.n_cols, self.n_rows = n, m
        self._params = list(problem.parameters())
        self._param_cols = {p.id: pp.param_id_to_col[p.id] for p in self._params}
        self._offset_col = pp.param_id_to_col[_PARAM_OFFSET_ID]
        self._theta_slices: list[tuple[cp.Parameter, int, int]] | None = None
        n_theta = self._offset_col + 1

        # cvxpy's tensor has n·m + m rows (vec(A) then b) by n_theta columns. Work on
        # its coordinates: a CSR view would allocate n·m row pointers (≈10⁹ for a
        # month-long horizon).
        tensor = sp.coo_array(pp.reduced_A.matrix_data)
        rows, cols = tensor.coords
        if np.any((rows < n * m) & (cols < self._offset_col)):
            raise ParametricStructureError(
                "a Parameter multiplies a variable in a constraint; the fast path needs "
                "Parameters in costs and right-hand sides only")
        in_b = rows >= n * m
        b_full = sp.csr_array(
            (tensor.data[in_b], (rows[in_b] - n * m, cols[in_b])), shape=(m, n_theta))
        c_full = sp.csr_array(pp.q)[:n]
        dims = data["dims"]
        self._n_eq = int(dims.zero)
        if dims.exp or dims.soc or dims.psd or dims.p3d:
            raise ParametricStructureError("only linear cones are supported")

        self._cost_cols = np.flatnonzero(np.diff(c_full[:, : self._offset_col].indptr)).astype(
            np.int32)
        self._bound_rows = np.flatnonzero(np.diff(b_full[:, : self._offset_col].indptr)).astype(
            np.int32)
        self._c_map = sp.csr_array(c_full[self._cost_cols])
        self._b_map = sp.csr_array(b_full[self._bound_rows])
        self._obj_map = sp.csr_array(pp.q)[n : n + 1]
        self._eq_mask = self._bound_rows < self._n_eq
        # The three maps stacked: one product per solve instead of three (the same rows,
        # so the same sums in the same order).
        self._maps = sp.csr_array(sp.vstack([self._c_map, self._b_map, self._obj_map],
                                            format="csr"))
        self._n_cost = int(self._cost_cols.size)
        self._n_bound = int(self._bound_rows.size)

        theta = self._theta()
        c_now = c_full @ theta
        b_now = b_full @ theta
        if not (np.allclose(c_now, data["c"]) and np.allclose(b_now, data["b"])):
            raise ParametricStructureError("affine parameter maps disagree with cvxpy's compile")

        self.var_cols = {v.name(): (pp.var_id_to_col[v.id], v.size, v.shape)
                         for v in problem.variables()}
        # By variable id too: a problem stacking copies of one model (scenarios) has
        # several variables of each name.
        self.var_cols_by_id = {v.id: (pp.var_id_to_col[v.id], v.size, v.shape)
                               for v in problem.variables()}
        self._is_mip = bool(data["bool_vars_idx"] or data["int_vars_idx"])
        self.matrix = A
        self._repair_pool: tuple[np.ndarray, np.ndarray] | None = None
        self._start: tuple[np.ndarray, np.ndarray | None] | None = None
        self.time_limit_hits = 0
        self.node_limit_hits = 0
        self._highs = self._load(A, data, time_limit_s, mip_rel_gap)
        self.set_options(mip_max_nodes=mip_max_nodes)

    def _load(self, A: sp.csc_array, data: dict, time_limit_s: float,
              mip_rel_gap: float) -> highspy.Highs:
        inf = highspy.kHighsInf
        m, n = A.shape
        b = np.asarray(data["b"], dtype=float)
        lower = np.concatenate([b[: self._n_eq], np.full(m - self._n_eq, -inf)])
        lb = data["lower_bounds"]
        ub = data["upper_bounds"]
        col_lower = np.full(n, -inf) if lb is None else np.asarray(lb, dtype=float).copy()
        col_upper = np.full(n, inf) if ub is None else np.asarray(ub, dtype=float).copy()
        model = highspy.HighsModel()
        lp = model.lp_
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = without_tiny_costs(np.asarray(data["c"], dtype=float))
        lp.row_lower_, lp.row_upper_ = lower, b
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr
        lp.a_matrix_.index_ = A.indices
        lp.a_matrix_.value_ = A.data
        if self._is_mip:
            integrality = [highspy.HighsVarType.kContinuous] * n
            for i in list(data["bool_vars_idx"]) + list(data["int_vars_idx"]):
                integrality[int(i)] = highspy.HighsVarType.kInteger
            for i in data["bool_vars_idx"]:
                col_lower[int(i)] = max(col_lower[int(i)], 0.0)
                col_upper[int(i)] = min(col_upper[int(i)], 1.0)
            lp.integrality_ = integrality
        lp.col_lower_, lp.col_upper_ = col_lower, col_upper
        self._col_lower0, self._col_upper0 = col_lower.copy(), col_upper.copy()
        # the bounds HiGHS holds now (set_col_bounds changes them), for current_basis:
        # nonbasic rows sit at their only finite bound (equalities at lower = upper)
        self._col_lower, self._col_upper = col_lower.copy(), col_upper.copy()
        self._free_cols = np.flatnonzero(~np.isfinite(col_lower) & ~np.isfinite(col_upper))
        self._row_template = np.where(np.arange(m) < self._n_eq, _AT_LOWER,
                                      _AT_UPPER).astype(np.int8)
        silence_highs_banner()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        self._time_limit_s = float(time_limit_s)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        h.setOptionValue("threads", 1)
        h.passModel(model)
        return h

    def _theta(self) -> np.ndarray:
        theta = np.zeros(self._offset_col + 1)
        if self._theta_slices is None:
            # each Parameter's columns, once (cvxpy computes ``size`` on every access)
            self._theta_slices = [(p, self._param_cols[p.id], self._param_cols[p.id] + p.size)
                                  for p in self._params]
        for p, lo, hi in self._theta_slices:
            theta[lo:hi] = np.asarray(p.value, dtype=float).ravel(order="F")
        theta[self._offset_col] = 1.0
        return theta

    @property
    def is_mip(self) -> bool:
        """True when the model has integer columns."""
        return self._is_mip

    def solve(self) -> FastSolution:
        """Push the Parameters' current values into the model and run HiGHS.

        Returns
        -------
        FastSolution
            Never raises for solver trouble; the status says what happened.
        """
        mapped = self._maps @ self._theta()
        nc, nb = self._n_cost, self._n_bound
        h = self._highs
        if nc:
            h.changeColsCost(nc, self._cost_cols, without_tiny_costs(mapped[:nc]))
        if nb:
            b = mapped[nc : nc + nb]
            lower = np.where(self._eq_mask, b, -highspy.kHighsInf)
            h.changeRowsBounds(  # type: ignore[attr-defined]  # missing from highspy's stubs
                nb, self._bound_rows, lower, b)
        offset = float(mapped[nc + nb])
        if self._start is not None:
            # after the in-place changes: HiGHS drops a stored solution when the model changes
            self._apply_start(*self._start)
            self._start = None
        t0 = h.getRunTime()
        if not self._is_mip:
            # HiGHS 1.15 checks an LP's time limit against the run clock accumulated
            # over all runs of this object (a MIP's against the current run only), so
            # a long closed loop would start timing out; shift the limit instead.
            h.setOptionValue("time_limit", t0 + self._time_limit_s)
        wall = time.perf_counter()
        try:
            h.run()
        except (RuntimeError, ValueError) as err:
            logger.warning("HiGHS run failed: %s", err)
            return FastSolution("kSolveError", None, float("nan"),
                                time.perf_counter() - wall, float("nan"))
        run_time = h.getRunTime() - t0
        if not self._is_mip:
            h.setOptionValue("time_limit", self._time_limit_s)
        status = h.getModelStatus().name
        if status == "kTimeLimit":
            self.time_limit_hits += 1
        elif status == "kSolutionLimit":
            self.node_limit_hits += 1
        info = h.getInfo()
        has_primal = info.primal_solution_status == 2  # kSolutionStatusFeasible
        x = _col_values(h) if has_primal else None
        gap = float(info.mip_gap) if self._is_mip else 0.0
        bound = float(info.mip_dual_bound) + offset if self._is_mip else float("nan")
        return FastSolution(status, x, float(info.objective_function_value) + offset,
                            float(run_time), gap, bound, int(info.simplex_iteration_count))

    def set_integrality(self, integer_cols: np.ndarray) -> None:
        """Make exactly ``integer_cols`` integer and every other column continuous, in place.

        Lets one compiled model serve several forms (e.g. integer only on the
        committed interval, full MILP, LP relaxation) without recompiling.

        Parameters
        ----------
        integer_cols : ndarray of int
            Column indices (cvxpy's variable order, see :meth:`columns`).
        """
        kinds = np.zeros(self.n_cols, dtype=np.uint8)  # 0 = kContinuous, 1 = kInteger
        kinds[np.asarray(integer_cols, dtype=np.int64)] = 1
        self._highs.changeColsIntegrality(
            self.n_cols, np.arange(self.n_cols, dtype=np.int32), kinds)
        self._is_mip = bool(kinds.any())

    def clear_solver(self) -> None:
        """Drop HiGHS's solver state (basis, MIP data), keeping the model."""
        self._highs.clearSolver()

    def set_options(self, *, time_limit_s: float | None = None,
                    mip_rel_gap: float | None = None, mip_max_nodes: int | None = None) -> None:
        """Change HiGHS's time limit [s], relative MIP gap [-] and MIP node limit
        (:data:`NO_NODE_LIMIT`: none) for later solves; None leaves a setting as it is."""
        if time_limit_s is not None:
            self._time_limit_s = float(time_limit_s)
            self._highs.setOptionValue("time_limit", float(time_limit_s))
        if mip_rel_gap is not None:
            self._highs.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        if mip_max_nodes is not None:
            self._highs.setOptionValue("mip_max_nodes", int(mip_max_nodes))

    def limits(self) -> dict[str, float]:
        """The limits HiGHS holds for the next run: ``time_limit`` [s] (an LP's as
        set, not shifted by the run clock), ``mip_rel_gap`` [-], ``mip_max_nodes``."""
        out = {"time_limit": self._time_limit_s}
        for name in ("mip_rel_gap", "mip_max_nodes"):
            # highspy answers (status, value) or, in older releases, the value alone
            value = self._highs.getOptionValue(name)
            out[name] = float(value[1] if isinstance(value, tuple) else value)
        return out

    def set_start(self, x: np.ndarray, cols: np.ndarray | None = None) -> None:
        """Offer a starting point to the next MIP run.

        Parameters
        ----------
        x : ndarray
            Every column's value, or with ``cols`` the values of those columns only.
        cols : ndarray of int, optional
            A partial start (e.g. the integer columns): HiGHS fixes the given
            integer values and completes the rest by a sub-MIP. An infeasible
            start is ignored by HiGHS. The start is handed to HiGHS by the next
            :meth:`solve`, after its cost and bound changes (HiGHS forgets a
            solution given before a model change).
        """
        self._start = (np.asarray(x, dtype=float).copy(),
                       None if cols is None else np.asarray(cols, dtype=np.int32).copy())

    def _apply_start(self, x: np.ndarray, cols: np.ndarray | None) -> None:
        if cols is not None:
            status = self._highs.setSolution(cols.size, cols, x)
        else:
            sol = highspy.HighsSolution()
            sol.col_value = x.tolist()
            sol.value_valid = True
            status = self._highs.setSolution(sol)
        if status != highspy.HighsStatus.kOk:
            logger.warning("HiGHS did not take the MIP start: %s", status)

    def current_basis(self, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """The basis HiGHS holds as (column, row) ``HighsBasisStatus`` codes (0 at lower
        bound, 1 basic, 2 at upper bound, 3 zero, 4 nonbasic), rebuilt without reading it.

        Reading ``HighsBasis.col_status`` converts every entry to a Python enum
        (~2.5 µs each: 3 ms on the 96-step RCDC LP, whose whole re-solve takes about
        that). Here the basic variables come from ``getBasicVariables`` (a NumPy
        array) and each nonbasic column's status from its value: at its upper bound
        when that is finite and nearer than the lower one, free columns at zero,
        else at lower; nonbasic rows sit at their only finite bound (upper for the
        ``<=`` rows of cvxpy's cone form, lower = upper for equalities). This is the
        basis HiGHS would report up to the side of fixed columns and equality rows,
        which a basis does not depend on.

        Parameters
        ----------
        x : ndarray, optional
            Column values of the last run (read from HiGHS when not given).
        """
        status, basic = self._highs.getBasicVariables()  # type: ignore[attr-defined]
        if status != highspy.HighsStatus.kOk:
            return None  # no valid basis (HiGHS answers kError)
        if x is None:
            x = _col_values(self._highs)
        lower, upper = self._col_lower, self._col_upper
        with np.errstate(invalid="ignore"):  # inf − inf on free columns, overwritten below
            col = np.where((x - lower) > (upper - x), _AT_UPPER, _AT_LOWER).astype(np.int8)
        col[self._free_cols] = _ZERO
        row = self._row_template.copy()
        basic = np.asarray(basic, dtype=np.int64)
        col[basic[basic >= 0]] = _BASIC
        row[-basic[basic < 0] - 1] = _BASIC
        return col, row

    def set_basis(self, col_status: np.ndarray, row_status: np.ndarray) -> bool:
        """Make (column, row) status codes the next LP run's starting basis.

        Returns
        -------
        bool
            False when HiGHS rejects it (the basis HiGHS holds is then kept).
        """
        basis = highspy.HighsBasis()
        basis.col_status = _STATUS[np.asarray(col_status, dtype=np.int64)].tolist()
        basis.row_status = _STATUS[np.asarray(row_status, dtype=np.int64)].tolist()
        basis.valid = True
        status = self._highs.setBasis(basis)
        if status != highspy.HighsStatus.kOk:
            logger.debug("HiGHS rejected a basis: %s", status)
            return False
        return True

    def shift_maps(self, horizon_steps: int, shift: int = 1,
                   time_src: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each column and row of the model ``shift`` intervals later comes from.

        Variables whose last axis has ``horizon_steps`` entries are time-indexed
        (column ``start + r + R t`` in Fortran order). A row's interval is the
        latest interval among its columns; its identity is its coefficients on
        the columns of that interval (so ``u[t] − n[t] + n[t−1] ≥ 0`` and
        ``u[0] − n[0] ≥ −n0`` are the same row at t and 0). Rows and columns of
        interval t take their source at t + shift; the last ``shift`` intervals,
        and rows or columns without a time, keep their own. ``time_src`` (H,)
        overrides this with an explicit source interval for each interval (e.g. a
        horizon whose coarse tail columns keep their own source).

        Returns
        -------
        col_src : ndarray (n_cols,) of int
        row_src : ndarray (n_rows,) of int
        row_time : ndarray (n_rows,) of int
            Interval of each row (-1 for rows without one).
        """
        H = int(horizon_steps)
        if time_src is None:
            t_all = np.arange(H)
            time_src = np.where(t_all < H - shift, t_all + shift, t_all)
        time_src = np.asarray(time_src, dtype=np.int64)
        if time_src.shape != (H,) or np.any((time_src < 0) | (time_src >= H)):
            raise ValueError(f"shift_maps: time_src must be {H} intervals in [0, {H})")
        col_time = np.full(self.n_cols, -1)
        col_home = np.arange(self.n_cols)  # the column's twin in interval 0
        col_src = np.arange(self.n_cols)
        for start, size, shape in self.var_cols.values():
            if len(shape) == 0 or shape[-1] != H:
                continue
            per_t = size // H
            idx = np.arange(size)
            t = idx // per_t
            col_time[start : start + size] = t
            col_home[start : start + size] = start + idx % per_t
            col_src[start : start + size] = start + idx + (time_src[t] - t) * per_t
        A = sp.csr_array(self.matrix)
        row_time = np.full(self.n_rows, -1)
        groups: dict[tuple[int, tuple[tuple[int, float], ...]], list[int]] = defaultdict(list)
        for i in range(self.n_rows):
            cols = A.indices[A.indptr[i] : A.indptr[i + 1]]
            vals = A.data[A.indptr[i] : A.indptr[i + 1]]
            times = col_time[cols]
            if cols.size == 0 or np.any(times < 0):
                continue
            last = times == times.max()
            key = tuple(sorted(zip(col_home[cols[last]].tolist(),
                                   np.round(vals[last], 12).tolist(), strict=True)))
            row_time[i] = int(times.max())
            groups[(int(times.max()), key)].append(i)
        row_src = np.arange(self.n_rows)
        for (when, key), rows in groups.items():
            if time_src[when] == when:
                continue
            later = groups.get((int(time_src[when]), key))
            if later is not None and len(later) == len(rows):
                row_src[rows] = later
        return col_src, row_src, row_time

    def shift_basis(self, basis: tuple[np.ndarray, np.ndarray],
                    maps: tuple[np.ndarray, np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """A basis moved forward with :meth:`shift_maps`, repaired to ``n_rows`` basics.

        Dropping the first interval and repeating the last changes the count of
        basic variables by the difference of their basics; the repair makes row
        slacks of the last interval basic (too few) or nonbasic at their finite
        bound (too many). HiGHS repairs a singular basis itself.
        """
        col_src, row_src, row_time = maps
        col = basis[0][col_src].copy()
        row = basis[1][row_src].copy()
        excess = int(np.count_nonzero(col == _BASIC) + np.count_nonzero(row == _BASIC)) \
            - self.n_rows
        if excess == 0:
            return col, row
        if self._repair_pool is None or self._repair_pool[0] is not row_time:
            # rows of the last interval first (the same for every shift of these maps)
            last = np.flatnonzero(row_time == row_time.max())
            self._repair_pool = (row_time, np.concatenate(
                [last, np.setdiff1d(np.arange(self.n_rows), last)]))
        pool = self._repair_pool[1]
        if excess > 0:
            pick = pool[row[pool] == _BASIC][:excess]
            # equality rows sit at their lower (= upper) bound; inequalities at b
            row[pick] = np.where(pick < self._n_eq, _AT_LOWER, _AT_UPPER)
        elif excess < 0:
            pick = pool[row[pool] != _BASIC][:-excess]
            row[pick] = _BASIC
        return col, row

    def set_col_bounds(self, cols: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        """Change column bounds in place (e.g. to fix a decision); undo with
        :meth:`restore_col_bounds`."""
        cols = np.asarray(cols, dtype=np.int32)
        lower = np.asarray(lower, dtype=float)
        upper = np.asarray(upper, dtype=float)
        self._highs.changeColsBounds(cols.size, cols, lower, upper)
        self._col_lower[cols], self._col_upper[cols] = lower, upper

    def restore_col_bounds(self, cols: np.ndarray | None = None) -> None:
        """Put back the column bounds the model was compiled with (all, or ``cols``)."""
        idx = (np.arange(self.n_cols, dtype=np.int32) if cols is None
               else np.asarray(cols, dtype=np.int32))
        self._highs.changeColsBounds(
            idx.size, idx, self._col_lower0[idx], self._col_upper0[idx])
        self._col_lower[idx], self._col_upper[idx] = self._col_lower0[idx], self._col_upper0[idx]

    def columns(self, name: str) -> np.ndarray:
        """Column indices of the cvxpy variable ``name`` (Fortran order of its shape)."""
        start, size, _ = self.var_cols[name]
        return np.arange(start, start + size)

    def value(self, x: np.ndarray, name: str) -> np.ndarray:
        """Values of the cvxpy variable ``name`` from a column vector ``x``."""
        start, size, shape = self.var_cols[name]
        return np.asarray(x[start : start + size]).reshape(shape, order="F")

    def variable_columns(self, variable: cp.Variable) -> np.ndarray:
        """Column indices of ``variable`` (Fortran order of its shape)."""
        start, size, _ = self.var_cols_by_id[variable.id]
        return np.arange(start, start + size)

    def variable_value(self, x: np.ndarray, variable: cp.Variable) -> np.ndarray:
        """Values of ``variable`` from a column vector ``x``."""
        start, size, shape = self.var_cols_by_id[variable.id]
        return np.asarray(x[start : start + size]).reshape(shape, order="F")
