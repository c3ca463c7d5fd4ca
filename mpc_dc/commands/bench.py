"""``mpc-dc bench scaling --out DIR [--quick] [--repeats N]``: the scaling curves of the suite.
``mpc-dc bench gap --data DIR --out DIR [--time-limit S] [--quick]``: the fleet plans'
gap to a cold, time-limited full MILP (:mod:`mpc_dc.studies.dr_gap`, docs/fleet.md).

Measures how solve and simulation time grow (see :data:`mpc_dc.benchmarking.CURVES`):
RCDC LP horizon 24/96/192/288 steps; fleet problem campuses 1/3/10, pools per
campus 1/9/24 and horizon 24/96/192/288; request-level serving 10⁴/10⁵/10⁶
requests. Writes ``DIR/curves.csv`` (every repeat), ``DIR/exponents.json`` (fitted
growth exponents, value ∝ size^k) and one log-log ``DIR/<family>.png`` per
family, atomically. The per-phase and target benchmarks are pytest-benchmark
suites: ``pytest benchmarks --benchmark-only`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import time

from mpc_dc.benchmarking import CURVES, run_scaling, write_scaling
from mpc_dc.commands._options import existing_dir, output_dir, positive_float, positive_int
from mpc_dc.rundir import check_target


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command."""
    parser = subparsers.add_parser(
        "bench", help="performance: scaling curves with fitted growth exponents",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    scaling = sub.add_parser("scaling", help="measure the scaling curves; write CSV, PNG, JSON")
    scaling.add_argument("--out", type=output_dir, required=True,
                         help="output directory (new)")
    scaling.add_argument("--quick", action="store_true",
                         help="the two smallest sizes of each family, fewer calls")
    scaling.add_argument("--repeats", type=positive_int, default=5,
                         help="repeats per size (default: %(default)s)")
    scaling.add_argument("--family", action="append", choices=list(CURVES), default=None,
                         help="only this family (repeatable; default: all)")
    scaling.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    scaling.set_defaults(func=main)
    gap = sub.add_parser("gap", help="fleet plans vs a cold, time-limited full MILP on the "
                         "DR study week; write the gap distribution")
    gap.add_argument("--data", type=existing_dir, required=True, help="the shared/data folder")
    gap.add_argument("--out", type=output_dir, required=True, help="output directory (new)")
    gap.add_argument("--time-limit", type=positive_float("s"), default=60.0,
                     help="reference MILP time limit per instance [s] (default: %(default)s)")
    gap.add_argument("--quick", action="store_true",
                     help="three instances of the first DR day only (S1, S6 day plans, "
                     "S6 step)")
    gap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    gap.set_defaults(func=main_gap)


def main(args: argparse.Namespace) -> int:
    """Run the curves, write the outputs, print the exponents."""
    check_target(args.out, overwrite=args.overwrite)
    t0 = time.perf_counter()

    def progress(family: str, size: int) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {family} {CURVES[family].axis}={size}",
              flush=True)

    frame = run_scaling(args.family, quick=args.quick, repeats=args.repeats, progress=progress)
    fitted = write_scaling(frame, args.out, overwrite=args.overwrite,
                           meta={"quick": args.quick, "repeats": args.repeats})
    print(f"growth exponents (time ∝ size^k), medians over {args.repeats} repeats:")
    for family, metrics in fitted.items():
        for metric, k in metrics.items():
            print(f"  {family:<18} {metric:<24} k = {k:5.2f}")
    print(f"wrote {args.out}/curves.csv, exponents.json and {len(fitted)} PNG(s) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def main_gap(args: argparse.Namespace) -> int:
    """Measure the plans' gaps to the reference MILP, write and print the distribution."""
    from mpc_dc.studies.dr_gap import GapInstance, run_gap

    check_target(args.out, overwrite=args.overwrite)
    t0 = time.perf_counter()

    def progress(instance: GapInstance) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {instance.kind} {instance.label}",
              flush=True)

    outputs = run_gap(args.data, args.out, time_limit_s=args.time_limit, quick=args.quick,
                      overwrite=args.overwrite, progress=progress)
    print(outputs.markdown)
    for path in outputs.files:
        print(f"wrote {path}")
    print(f"wall time {outputs.wall_time_s:.1f} s")
    return 0
