"""``mpc-dc reproduce STUDY --data DIR --out OUT``: reproduce a seed paper's study.

Studies are looked up in :data:`STUDIES` (name -> runner): ``rcdc`` and ``dr``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from mpc_dc.commands._options import existing_dir, output_dir, positive_int
from traces.errors import ConfigError


def _run_rcdc(args: argparse.Namespace) -> int:
    from mpc_dc.studies.rcdc import RcdcStudyConfig, reproduce, savings_summary

    study = RcdcStudyConfig() if args.days is None else RcdcStudyConfig(days=args.days)
    windows = study.windows_in_month()
    if args.days is not None and args.days > windows:
        # the study would silently run the whole month instead
        raise ConfigError("<command line>", f"expected at most {windows} (the daily windows "
                          f"of {study.month}), got {args.days}", key="--days")
    start = time.perf_counter()
    outputs = reproduce(Path(args.data), Path(args.out), study, sweeps=not args.no_sweeps)
    print(f"RCDC study, {study.month} (New York time), NYISO zone {study.zone}, "
          f"{study.dc_capacity_mw:.0f} MW data center, {study.wind_nameplate_mw:.0f} MW wind, "
          f"{100 * study.deferrable_share:.0f} % deferrable")
    print(outputs.markdown)
    for line in savings_summary(outputs.table):
        print(line)
    for path in outputs.files:
        print(f"wrote {path}")
    print(f"wall time {time.perf_counter() - start:.1f} s")
    return 0


def _run_dr(args: argparse.Namespace) -> int:
    from mpc_dc.studies.dr import DrStudyConfig, reproduce

    study = DrStudyConfig() if args.days is None else DrStudyConfig(days=args.days)
    outputs = reproduce(Path(args.data), Path(args.out), study, sweeps=not args.no_sweeps)
    print(f"DR study: {study.days} days from {study.first_day} (Pacific), campuses "
          + ", ".join(f"{c.name} {c.gpus} GPUs" for c in study.site.campuses)
          + f", peak {study.peak_tokens_per_s / 1e6:.1f} M tokens/s, carbon "
          f"{study.site.carbon_price_usd_per_t} $/t, DR events on {', '.join(study.dr_days)}")
    print(outputs.markdown)
    print(outputs.note)
    for path in outputs.files:
        print(f"wrote {path}")
    print(f"wall time {outputs.wall_time_s:.1f} s")
    return 0


STUDIES: dict[str, Callable[[argparse.Namespace], int]] = {"rcdc": _run_rcdc, "dr": _run_dr}


def _dispatch(args: argparse.Namespace) -> int:
    runner = STUDIES.get(args.study)
    if runner is None:
        raise ConfigError("<command line>", f"unknown study {args.study!r}; "
                          f"expected one of {sorted(STUDIES)}", key="study")
    return runner(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` sub-command."""
    parser = subparsers.add_parser("reproduce", help="reproduce a seed paper's study",
                                   description=__doc__)
    parser.add_argument("study", help=f"study name: {', '.join(sorted(STUDIES))}")
    parser.add_argument("--data", type=existing_dir, required=True,
                        help="the shared/data folder")
    parser.add_argument("--out", type=output_dir, required=True,
                        help="output folder (new, or one a previous reproduce wrote: it is "
                        "replaced atomically; any other folder is refused)")
    parser.add_argument("--days", type=positive_int, default=None,
                        help="only the first N daily windows (quick look)")
    parser.add_argument("--no-sweeps", action="store_true",
                        help="Table II only, no sensitivity sweeps or figures")
    parser.set_defaults(func=_dispatch)
