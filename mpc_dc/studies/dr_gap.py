"""Gap of the project's integer fleet plans to a cold, time-limited full MILP.

``mpc-dc bench gap --data DIR --out DIR`` (docs/fleet.md). A fixed set of
instances, all from the DR study week (:mod:`mpc_dc.studies.dr`, CAISO 2021, two
DR event days, a low-load day):

* ``day``: the study's day plans, 7 days × S1–S6 = 42, each from the study's own
  inputs (DR baseline on event days) and the scenario's own start-of-day fleet;
  the plan is the study's (round-and-fix over all 96 intervals, or a covered
  scenario's plan when cheaper);
* ``step``: the closed loop's committed decision, S6, one 24-h window from 10:00
  Pacific of each study day (the 16:00–21:00 DR event inside it on event days),
  fleet = S6's day plan at 09:45; the plan is the integral 96-interval dive that
  starts with the committed (interval-0) instances, i.e. what committing that
  decision costs at most (solved cold, so it does not depend on earlier solves).

Reference: the full MILP (every instance count integer) by HiGHS, cold (no
basis, no MIP start), ``time_limit_s`` per instance, relative gap 10⁻⁴; a
reference stopped by the limit says so (``milp_status``) and carries its own
dual bound. Gaps are relative to the plan's operating cost (energy + carbon +
switching + quality + unserved; :func:`mpc_dc.studies.dr.gap_of_operating`),
which is positive; the net cost is negative on some DR days:

* ``gap_to_milp = (plan − milp) / operating``: negative where the plan beats the
  MILP's incumbent (a reference stopped early);
* ``gap_certified = (plan − max(LP bound, MILP dual bound)) / operating``: an
  upper bound on the plan's gap to the optimum.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mpc_dc.blocks import STEP_S
from mpc_dc.problem import (
    Form,
    HorizonInputs,
    PlantState,
    Problem,
    SolveResult,
    SolverOptions,
    SolveStatus,
)
from mpc_dc.rundir import atomic_dir
from mpc_dc.studies.dr import (
    TZ,
    DaySolve,
    DrData,
    DrStudyConfig,
    ScenarioProblems,
    end_state,
    gap_of_operating,
    load_dr_data,
    operating_usd,
    run_days,
)
from traces.grid import STEPS_PER_DAY

logger = logging.getLogger(__name__)

STEP_START_INTERVAL = 40
"""Closed-loop step instances start at 10:00 local (interval 40 of the day)."""
MILP_REL_GAP = 1e-4
"""Relative gap at which the reference MILP stops before its time limit [-]."""
QUICK = (("day", "S1"), ("day", "S6"), ("step", "S6"))
"""``--quick``: these instances of the first DR event day only."""


@dataclass(frozen=True)
class GapInstance:
    """One plan to compare with the reference MILP.

    Attributes
    ----------
    kind : str
        ``"day"`` (a study day plan) or ``"step"`` (a closed-loop commitment).
    label : str
    scenario : str
    dr_event : bool
    demand_tokens : float [tokens]
        Tokens demanded over the horizon.
    inputs : HorizonInputs
    state : PlantState
    plan : SolveResult
        The project's integral plan of ``inputs`` from ``state``.
    """

    kind: str
    label: str
    scenario: str
    dr_event: bool
    demand_tokens: float
    inputs: HorizonInputs
    state: PlantState
    plan: SolveResult


def _window_baseline(solves: dict[tuple[int, str], DaySolve], d: int, k0: int,
                     campuses: int) -> np.ndarray:
    """DR baseline [MW] (C, 96) of a window from interval ``k0`` of day ``d`` to the same
    interval of day ``d + 1``: the study's day baselines, zero where a day has none."""
    parts = []
    for offset, cols in ((0, slice(k0, STEPS_PER_DAY)), (1, slice(0, k0))):
        solve = solves.get((d + offset, "S1"))
        base = None if solve is None else solve.inputs.dr_baseline_mw
        parts.append(np.zeros((campuses, cols.stop - cols.start)) if base is None
                     else base[:, cols])
    return np.hstack(parts)


def study_instances(data: DrData, study: DrStudyConfig, problems: ScenarioProblems,
                    select: Callable[[str, str, int], bool] | None = None
                    ) -> list[GapInstance]:
    """The fixed instance set (module docstring) of ``study``.

    Parameters
    ----------
    data : DrData
        Must reach one day past the study window (``load_dr_data(..., extra_days=1)``).
    study : DrStudyConfig
    problems : ScenarioProblems
        Solve the study's day plans (fresh, so the plans are the study's).
    select : callable, optional
        ``select(kind, scenario, day) -> bool`` keeps a subset.

    Returns
    -------
    list of GapInstance
        Day plans in (day, scenario) order, then the steps in day order.
    """
    keep = select or (lambda kind, scenario, day: True)
    _, solves = run_days(data, study, problems)
    out: list[GapInstance] = []
    for (d, s), solve in sorted(solves.items()):
        if not keep("day", s, d):
            continue
        day = data.index[d * STEPS_PER_DAY].tz_convert(TZ).date()
        has_event = solve.inputs.dr_event is not None and bool(np.any(solve.inputs.dr_event))
        out.append(GapInstance("day", f"{day} {s}", s, has_event,
                               float(solve.inputs.demand_tokens_per_s.sum() * STEP_S),
                               solve.inputs, solve.start, solve.result))
    # cold: a receding step's plan must not depend on which solves came before it
    problem = Problem(problems.config("S6"), STEPS_PER_DAY, SolverOptions(warm_start="cold"))
    H = problem.horizon_steps
    for d in range(study.days):
        if not keep("step", "S6", d):
            continue
        k = d * STEPS_PER_DAY + STEP_START_INTERVAL
        event = data.dr_event[:, k:k + H]
        inputs = data.window(k, H, dr_baseline_mw=_window_baseline(
            solves, d, STEP_START_INTERVAL, event.shape[0]))
        state = end_state(solves[(d, "S6")].plan, STEP_START_INTERVAL - 1)
        committed = problem.solve(inputs, state)
        if committed.plan is None:
            raise RuntimeError(f"S6 committed step of day {d} failed: {committed.message}")
        commit = problem.solve(inputs, state, integer_intervals=H,
                               fix_instances=committed.plan.instances[:, :1])
        if commit.plan is None:
            raise RuntimeError(f"S6 commitment dive of day {d} failed: {commit.message}")
        start = data.index[k].tz_convert(TZ)
        out.append(GapInstance("step", f"{start:%Y-%m-%d %H:%M} S6 step", "S6",
                               bool(np.any(event)),
                               float(inputs.demand_tokens_per_s.sum() * STEP_S), inputs, state,
                               commit))
    return out


def milp_reference(problem: Problem, inputs: HorizonInputs, state: PlantState
                   ) -> tuple[SolveResult, SolveResult]:
    """The LP relaxation and the full MILP of ``inputs`` from ``state``, both cold.

    ``problem`` carries the MILP's limits (:class:`~mpc_dc.problem.SolverOptions`
    ``full_time_limit_s``, ``full_mip_rel_gap``); no MIP start is given and every
    basis is dropped first, so HiGHS owes nothing to the project's plan.
    """
    problem.reset_warm_start()
    lp = problem.solve(inputs, state, Form.LP)
    problem.reset_warm_start()
    full = problem.solve(inputs, state, Form.FULL_MILP)
    return lp, full


def gap_row(instance: GapInstance, lp: SolveResult, full: SolveResult,
            time_limit_s: float) -> dict[str, object]:
    """The figures of one instance (module docstring) [$] and [-]."""
    plan = instance.plan
    assert plan.cost is not None
    operating = operating_usd(plan.cost)
    bound = max(lp.objective_usd, full.mip_bound_usd if np.isfinite(full.mip_bound_usd)
                else -np.inf)
    milp = full.objective_usd if full.plan is not None else float("nan")
    milp_operating = operating_usd(full.cost) if full.cost is not None else float("nan")
    return {
        "kind": instance.kind, "instance": instance.label, "scenario": instance.scenario,
        "dr_event": instance.dr_event, "demand_tokens": instance.demand_tokens,
        "plan_usd": plan.objective_usd, "operating_usd": operating,
        "lp_bound_usd": lp.objective_usd, "milp_status": str(full.status),
        "milp_at_time_limit": full.status is not SolveStatus.OPTIMAL,
        "milp_time_s": full.solve_time_s, "time_limit_s": time_limit_s,
        "milp_usd": milp, "milp_bound_usd": full.mip_bound_usd,
        "milp_own_gap": gap_of_operating(milp, full.mip_bound_usd, milp_operating),
        "gap_to_milp": gap_of_operating(plan.objective_usd, milp, operating),
        "gap_certified": gap_of_operating(plan.objective_usd, bound, operating),
    }


def measure_gaps(instances: Iterable[GapInstance], problems: ScenarioProblems,
                 time_limit_s: float,
                 progress: Callable[[GapInstance], None] | None = None) -> pd.DataFrame:
    """One :func:`gap_row` per instance, the reference solved by :func:`milp_reference`
    on a cold problem of the instance's scenario.

    Parameters
    ----------
    instances : iterable of GapInstance
    problems : ScenarioProblems
        Gives each scenario's configuration.
    time_limit_s : float [s]
        Reference MILP time limit per instance.
    progress : callable, optional
        Called with each instance before its reference is solved.
    """
    refs: dict[str, Problem] = {}
    options = SolverOptions(full_time_limit_s=time_limit_s, full_mip_rel_gap=MILP_REL_GAP,
                            warm_start="cold")
    rows = []
    for inst in instances:
        if progress is not None:
            progress(inst)
        if inst.scenario not in refs:
            refs[inst.scenario] = Problem(problems.config(inst.scenario),
                                          inst.inputs.horizon_steps, options)
        lp, full = milp_reference(refs[inst.scenario], inst.inputs, inst.state)
        row = gap_row(inst, lp, full, time_limit_s)
        logger.info("gap %s", row)
        rows.append(row)
    return pd.DataFrame(rows)


def distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """min / median / p90 / max of ``gap_to_milp`` and ``gap_certified`` [%] per kind, on
    DR event days and the other days, and over all, with the count of references
    stopped by the time limit."""
    rows = []
    groups = [(str(kind), g) for kind, g in frame.groupby("kind", sort=True)]
    event = frame["dr_event"].astype(bool)
    groups += [("DR event", frame[event]), ("no DR event", frame[~event]), ("all", frame)]
    for kind, g in groups:
        if g.empty:
            continue
        row: dict[str, object] = {"kind": kind, "instances": len(g),
                                  "milp_at_time_limit": int(g["milp_at_time_limit"].sum())}
        for col in ("gap_to_milp", "gap_certified"):
            v = 100 * g[col].to_numpy(dtype=float)
            row.update({f"{col}_min_pct": float(np.nanmin(v)),
                        f"{col}_median_pct": float(np.nanmedian(v)),
                        f"{col}_p90_pct": float(np.nanpercentile(v, 90)),
                        f"{col}_max_pct": float(np.nanmax(v))})
        row["plans_certified_above_1pct"] = int((g["gap_certified"] > 0.01).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(percent: float) -> str:
    """A percentage with two decimals; |x| < 0.005 % (solver tolerance) shown as 0.00."""
    return f"{0.0 if abs(float(percent)) < 0.005 else float(percent):.2f}"


def markdown(dist: pd.DataFrame, frame: pd.DataFrame, time_limit_s: float) -> str:
    """The distribution table and the references stopped by the limit, as Markdown."""
    lines = [f"Reference: full MILP, HiGHS, cold, {time_limit_s:g} s limit, relative gap "
             f"{MILP_REL_GAP:g}. Gaps in % of the plan's operating cost.", "",
             "| instances | n | gap to MILP min / median / p90 / max [%] | certified gap min / "
             "median / p90 / max [%] | plans > 1 % (certified) | MILPs at the time limit |",
             "|---|---|---|---|---|---|"]
    for r in dist.to_dict("records"):
        cells = [" / ".join(_pct(r[f"{col}_{q}_pct"]) for q in ("min", "median", "p90", "max"))
                 for col in ("gap_to_milp", "gap_certified")]
        lines.append(f"| {r['kind']} | {r['instances']} | {cells[0]} | {cells[1]} | "
                     f"{r['plans_certified_above_1pct']} | {r['milp_at_time_limit']} |")
    stopped = frame[frame["milp_at_time_limit"].astype(bool)]
    if not stopped.empty:
        lines += ["", "References stopped by the time limit (their own incumbent and bound):",
                  "", "| instance | plan $ | MILP incumbent $ | MILP bound $ | MILP own gap [%] "
                  "| plan − MILP [%] |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['instance']} | {r['plan_usd']:,.2f} | {r['milp_usd']:,.2f} | "
                  f"{r['milp_bound_usd']:,.2f} | {_pct(100 * r['milp_own_gap'])} | "
                  f"{_pct(100 * r['gap_to_milp'])} |" for r in stopped.to_dict("records")]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class GapOutputs:
    """What :func:`run_gap` wrote."""

    instances: pd.DataFrame
    distribution: pd.DataFrame
    markdown: str
    files: tuple[Path, ...]
    wall_time_s: float


def run_gap(data_dir: Path, out_dir: Path, *, time_limit_s: float = 60.0, quick: bool = False,
            overwrite: bool = False, study: DrStudyConfig | None = None,
            progress: Callable[[GapInstance], None] | None = None) -> GapOutputs:
    """Measure the instance set and write ``gap_instances.csv``,
    ``gap_distribution.csv`` and ``gap.md`` atomically.

    Parameters
    ----------
    data_dir, out_dir : Path
    time_limit_s : float [s]
        Reference MILP time limit per instance.
    quick : bool
        Only :data:`QUICK` on the first event day (the study's days up to it are
        still solved, for their fleets).
    overwrite : bool
        Replace an existing ``out_dir``.
    study : DrStudyConfig, optional
        Default: the DR study's set-up.
    progress : callable, optional
        Called with each instance before its reference is solved.
    """
    t0 = time.perf_counter()
    study = study or DrStudyConfig()
    data = load_dr_data(data_dir, study, extra_days=1)
    problems = ScenarioProblems(study.site)
    select = None
    if quick:
        first = data.first_event_day(study.days)
        study = replace(study, days=first + 1)

        def select(kind: str, scenario: str, day: int) -> bool:
            return day == first and (kind, scenario) in QUICK

    instances = study_instances(data, study, problems, select)
    frame = measure_gaps(instances, problems, time_limit_s, progress)
    dist = distribution(frame)
    md = markdown(dist, frame, time_limit_s)
    names = ("gap_instances.csv", "gap_distribution.csv", "gap.md")
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        frame.to_csv(tmp / names[0], index=False)
        dist.to_csv(tmp / names[1], index=False)
        (tmp / names[2]).write_text(md, encoding="utf-8")
    return GapOutputs(frame, dist, md, tuple(Path(out_dir) / n for n in names),
                      time.perf_counter() - t0)


__all__ = ["GapInstance", "GapOutputs", "distribution", "gap_row", "measure_gaps",
           "milp_reference", "run_gap", "study_instances"]
