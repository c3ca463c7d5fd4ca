"""HiGHS option sets on a DR-scale closed loop's LPs (docs/performance.md, "The DR-scale
month: HiGHS options").

Run from a checkout::

    python -m benchmarks.highs_options replay DAYS [--options base,devex,...]
    python -m benchmarks.highs_options loop DAYS --options base,pert0 [--rounds 2]
    python -m benchmarks.highs_options loop DAYS --options base,pert0 --wind ../shared/data

``replay`` runs ``DAYS`` of :func:`benchmarks.closed_loop.dr_scale`, records every LP
HiGHS runs in it (costs, bounds and the basis HiGHS starts from, by run kind as in
:mod:`benchmarks.cpu_split`), then re-solves each recorded LP under every option set of
``--options`` in turn (the order rotated from one LP to the next), each from the recorded
basis handed over with ``setBasis`` on a resident model of that option set. It prints per
run kind the sums and the medians over the LPs of the CPU time (``time.process_time`` of
``Highs.run``), HiGHS's run time and simplex iterations of each option set against the
first, and the largest relative objective difference. A replay starts every LP from a
handed-over basis, as the loop does for a step's relaxation; the loop's fixed re-solves
instead go on from the basis and dual edge weights HiGHS holds (only column bounds
change), so their replayed times include the edge-weight set-up the loop does not pay.

``loop`` runs the closed loop itself, alternating the option sets ``--rounds`` times,
each with :func:`benchmarks.cpu_split.split` (time limit 120 s, so that the load cannot
stop a solve), and prints the CPU of the loop and of the HiGHS runs by kind, the
iterations and the cost. With ``--wind DATA`` the loop is
:func:`benchmarks.closed_loop.wind_fleet` on the real data in ``DATA`` with the SARIMAX
controller instead (its own time limit), with the CPU and iterations of all HiGHS runs.

Diagnostic only: it wraps ``HighsFastPath._load``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp

from benchmarks.closed_loop import dr_scale, measure, wind_fleet
from benchmarks.cpu_split import _kind, split
from mpc_dc import fastpath

CANDIDATES: dict[str, dict[str, Any]] = {
    "base": {},
    "dse": {"simplex_dual_edge_weight_strategy": 2},
    "devex": {"simplex_dual_edge_weight_strategy": 1},
    "dantzig": {"simplex_dual_edge_weight_strategy": 0},
    "price0": {"simplex_price_strategy": 0},
    "price1": {"simplex_price_strategy": 1},
    "price2": {"simplex_price_strategy": 2},
    "scale0": {"simplex_scale_strategy": 0},
    "scale1": {"simplex_scale_strategy": 1},
    "scale3": {"simplex_scale_strategy": 3},
    "scale4": {"simplex_scale_strategy": 4},
    "upd200": {"simplex_update_limit": 200},
    "upd1000": {"simplex_update_limit": 1000},
    "pert0": {"dual_simplex_cost_perturbation_multiplier": 0.0},
    "primal": {"simplex_strategy": 4},
    "noLIDSE": {"less_infeasible_DSE_check": False},
}
"""Option sets by name (HiGHS 1.16 option names; ``base`` is HiGHS's defaults as
:class:`~mpc_dc.fastpath.HighsFastPath` sets them)."""


@contextmanager
def _patched_load(options: dict[str, Any] | None = None,
                  record: list[dict[str, Any]] | None = None,
                  matrices: dict[int, sp.csc_array] | None = None) -> Iterator[None]:
    """Every resident model built inside gets ``options``; with ``record``, each LP run
    is appended to it (costs, bounds, starting basis, kind) and each model's matrix
    put in ``matrices`` by the model's id."""
    load = fastpath.HighsFastPath._load

    def patched(self: fastpath.HighsFastPath, A: sp.csc_array, data: dict,
                time_limit_s: float, mip_rel_gap: float) -> highspy.Highs:
        h = load(self, A, data, time_limit_s, mip_rel_gap)
        for name, value in (options or {}).items():
            h.setOptionValue(name, value)
        if record is None or matrices is None:
            return h
        matrices[id(self)] = A.copy()
        run = h.run

        def recorded_run() -> Any:
            if self.is_mip:
                return run()
            kind = _kind()
            lp, basis = h.getLp(), h.getBasis()
            record.append({
                "model": id(self), "kind": kind,
                "cost": np.array(lp.col_cost_), "col_lower": np.array(lp.col_lower_),
                "col_upper": np.array(lp.col_upper_), "row_lower": np.array(lp.row_lower_),
                "row_upper": np.array(lp.row_upper_),
                "basis": (np.array([int(s) for s in basis.col_status], np.int64),
                          np.array([int(s) for s in basis.row_status], np.int64))
                if basis.valid else None})
            return run()

        # the instance's own attribute: highspy's Highs is a Python class
        h.run = recorded_run  # type: ignore[method-assign]
        return h

    fastpath.HighsFastPath._load = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        fastpath.HighsFastPath._load = load  # type: ignore[method-assign]


def _resident(A: sp.csc_array, options: dict[str, Any]) -> highspy.Highs:
    """A HiGHS model of matrix ``A`` (costs and bounds zero until set) with ``options``."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    for name, value in options.items():
        h.setOptionValue(name, value)
    m, n = A.shape
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, m
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = np.zeros(n), np.zeros(n), np.zeros(n)
    lp.row_lower_, lp.row_upper_ = np.zeros(m), np.zeros(m)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
    h.passModel(lp)
    return h


def replay(days: float, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Record ``days`` of DR-scale LPs, re-solve each under every option set of ``names``
    (module docstring); per option set, one row per recorded LP with a basis."""
    record: list[dict[str, Any]] = []
    matrices: dict[int, sp.csc_array] = {}
    with _patched_load(None, record, matrices):
        scenario, exo = dr_scale(days)
        measure(scenario, (scenario, exo))
    fastpath.silence_highs_banner()
    models: dict[tuple[int, str], highspy.Highs] = {}
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    lps = [r for r in record if r["basis"] is not None]
    for i, r in enumerate(lps):
        for name in names[i % len(names):] + names[: i % len(names)]:
            key = (r["model"], name)
            if key not in models:
                models[key] = _resident(matrices[r["model"]], CANDIDATES[name])
            h = models[key]
            n, m = r["cost"].size, r["row_lower"].size
            cols, rows = np.arange(n, dtype=np.int32), np.arange(m, dtype=np.int32)
            h.changeColsCost(n, cols, r["cost"])
            h.changeColsBounds(n, cols, r["col_lower"], r["col_upper"])
            h.changeRowsBounds(m, rows, r["row_lower"], r["row_upper"])  # type: ignore[attr-defined]
            basis = highspy.HighsBasis()
            basis.col_status = fastpath._STATUS[r["basis"][0]].tolist()
            basis.row_status = fastpath._STATUS[r["basis"][1]].tolist()
            basis.valid = True
            if h.setBasis(basis) != highspy.HighsStatus.kOk:
                raise RuntimeError(f"HiGHS refused recorded basis {i}")
            run0, cpu0 = h.getRunTime(), time.process_time()
            h.run()
            cpu = time.process_time() - cpu0
            info = h.getInfo()
            out[name].append({"kind": r["kind"], "cpu_s": cpu, "highs_s": h.getRunTime() - run0,
                              "iterations": int(info.simplex_iteration_count),
                              "objective": float(info.objective_function_value),
                              "status": h.getModelStatus().name})
    return out


def _print_replay(out: dict[str, list[dict[str, Any]]]) -> None:
    names = list(out)
    base = out[names[0]]
    for kinds in (("relaxation", "probe"), ("fixed re-solve",),
                  ("relaxation", "probe", "fixed re-solve", "other")):
        idx = [i for i, row in enumerate(base) if row["kind"] in kinds]
        b = [base[i] for i in idx]
        print(f"== {' + '.join(kinds)}: {len(b)} LPs; {names[0]}: CPU "
              f"{sum(r['cpu_s'] for r in b):.3f} s, {sum(r['iterations'] for r in b)} iterations")
        for name in names[1:]:
            o = [out[name][i] for i in idx]
            cpu = np.array([x["cpu_s"] / max(y["cpu_s"], 1e-9) for x, y in zip(o, b, strict=True)])
            its = np.array([(x["iterations"] + 1) / (y["iterations"] + 1)
                            for x, y in zip(o, b, strict=True)])
            dobj = max((abs(x["objective"] - y["objective"]) / max(1.0, abs(y["objective"]))
                        for x, y in zip(o, b, strict=True)), default=0.0)
            def total(rows: list[dict[str, Any]], key: str) -> float:
                return float(sum(row[key] for row in rows))

            print(f"  {name:8s} CPU sum ratio {total(o, 'cpu_s') / total(b, 'cpu_s'):.3f}"
                  f" median {np.median(cpu):.3f} | HiGHS time sum ratio "
                  f"{total(o, 'highs_s') / total(b, 'highs_s'):.3f} | iterations sum ratio "
                  f"{total(o, 'iterations') / max(1.0, total(b, 'iterations')):.3f}"
                  f" median {np.median(its):.3f} | max rel. objective diff {dobj:.1e} | "
                  f"not optimal {sum(x['status'] != 'kOptimal' for x in o)}")


def _wind_loop(days: float, data: Path) -> tuple[float, float, int, float]:
    """CPU of a wind-fleet loop and of its HiGHS runs [s], their iterations, its cost [$]."""
    solve = fastpath.HighsFastPath.solve
    totals = {"cpu_s": 0.0, "iterations": 0}

    def counted(self: fastpath.HighsFastPath) -> fastpath.FastSolution:
        tick = time.process_time()
        sol = solve(self)
        totals["cpu_s"] += time.process_time() - tick
        totals["iterations"] += sol.simplex_iterations
        return sol

    fastpath.HighsFastPath.solve = counted  # type: ignore[method-assign]
    try:
        out = measure(wind_fleet(data, days, controller="sarimax"))
    finally:
        fastpath.HighsFastPath.solve = solve  # type: ignore[method-assign]
    return (out["total_cpu_s"], float(totals["cpu_s"]), int(totals["iterations"]),
            out["cost_usd"])


def loop(days: float, names: list[str], rounds: int, wind: Path | None = None) -> None:
    """Print :func:`benchmarks.cpu_split.split` of ``days`` under each option set in turn
    (with ``wind``, :func:`_wind_loop`'s figures on that data directory)."""
    for r in range(rounds):
        for name in names:
            if wind is not None:
                with _patched_load(CANDIDATES[name]):
                    total, highs, its, cost = _wind_loop(days, wind)
                print(f"round {r} {name:8s} wind-fleet loop CPU {total:.2f} s | HiGHS "
                      f"{highs:.2f} s | iterations {its} | cost {cost:.2f} $", flush=True)
                continue
            with _patched_load(CANDIDATES[name]):
                out = split(days, 120.0)
            cpu = out["cpu_s"]
            print(f"round {r} {name:8s} loop CPU {out['loop']['total_cpu_s']:.2f} s | HiGHS "
                  f"{out['highs_s']:.2f} s (relaxation {cpu.get('highs relaxation', 0.0):.2f}, "
                  f"probe {cpu.get('highs probe', 0.0):.2f}, fixed re-solve "
                  f"{cpu.get('highs fixed re-solve', 0.0):.2f}) | iterations {out['iterations']} | "
                  f"cost {out['loop']['cost_usd']:.2f} $", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.highs_options")
    parser.add_argument("mode", choices=("replay", "loop"))
    parser.add_argument("days", type=float)
    parser.add_argument("--options", default=",".join(CANDIDATES),
                        help="comma-separated names of CANDIDATES, the first the reference")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wind", type=Path, default=None,
                        help="loop: the wind-fleet case on this data directory instead")
    args = parser.parse_args(argv)
    names = args.options.split(",")
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown option sets {unknown}; known: {', '.join(CANDIDATES)}")
    if args.mode == "replay":
        _print_replay(replay(args.days, names))
    else:
        loop(args.days, names, args.rounds, args.wind)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
