"""``mpc-dc data``: list, download and check the public data sources.

* ``mpc-dc data list`` prints the catalogue (:mod:`traces.sources`).
* ``mpc-dc data fetch SOURCE [--param k=v ...] [--cache DIR] [--url-base URL]``
  downloads one file into the cache (resumable, checksum-verified when a digest
  is known, recorded in ``DIR/manifest.json``) and prints where it went.
* ``mpc-dc data check FILE [--format NAME]`` reads a file with the project's
  readers and prints what they made of it.

Bad input (unknown source or parameter, a failed or corrupt download, a file the
reader rejects) ends as one ``mpc-dc: error: ...`` line on stderr and exit code 2,
via the shared handling in :mod:`mpc_dc.cli`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from mpc_dc.commands._options import int_at_least, non_negative_float, output_dir, positive_float
from traces.errors import ConfigError, TraceError
from traces.fetch import DEFAULT_CHUNK_BYTES, SOCKET_TIMEOUT_S, ProgressCallback, fetch_source
from traces.sources import SOURCES, Source

_MAX_GAPS_SHOWN = 5


def default_cache_dir() -> Path:
    """Cache root: ``$MPC_DC_CACHE``, else ``$XDG_CACHE_HOME/mpc-dc/data``, else ``~/.cache``."""
    env = os.environ.get("MPC_DC_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "mpc-dc" / "data"


def register(subparsers: Any) -> None:
    """Add ``data`` with its ``list``, ``fetch`` and ``check`` sub-commands."""
    data = subparsers.add_parser(
        "data",
        help="list, download and check the public data sources",
        description="List, download (resumable, checksummed) and check public data files.",
    )
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda _args: _usage(data))

    p_list = sub.add_parser("list", help="show the catalogue of public sources")
    p_list.set_defaults(func=run_list)

    p_fetch = sub.add_parser(
        "fetch",
        help="download one file of a public source into the cache",
        description="Download one file of SOURCE (see `mpc-dc data list`) into the cache. "
        "An interrupted download resumes on the next run; a file already complete is "
        "skipped.",
    )
    p_fetch.add_argument("source", metavar="SOURCE", help="catalogue name")
    p_fetch.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="K=V",
        help="template parameter, repeatable (e.g. -p year=2022)",
    )
    p_fetch.add_argument(
        "--cache",
        type=output_dir,
        default=None,
        metavar="DIR",
        help=f"cache directory (default {default_cache_dir()})",
    )
    p_fetch.add_argument(
        "--url-base",
        default=None,
        metavar="URL",
        help="replace the public host by this https://host[:port][/prefix] (mirrors; "
        "http:// for a local test server)",
    )
    p_fetch.add_argument(
        "--sha256", default=None,
        help="expected SHA-256 (hex) to verify; replaces a digest pinned in the catalogue",
    )
    p_fetch.add_argument("--force", action="store_true", help="download even if complete")
    p_fetch.add_argument("--retries", type=int_at_least(0), default=3,
                         help="retries after the first try")
    p_fetch.add_argument(
        "--timeout", type=positive_float("s"), default=600.0, metavar="S",
        help="overall time limit [s] of the download, retries and pauses included; what "
        f"arrived is kept for a resume (each network read waits at most "
        f"{SOCKET_TIMEOUT_S:g} s) (default %(default)s)",
    )
    p_fetch.add_argument(
        "--backoff", type=non_negative_float("s"), default=1.0, metavar="S",
        help="first retry pause [s]",
    )
    p_fetch.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default off unless a TTY)"
    )
    p_fetch.set_defaults(func=run_fetch)

    p_check = sub.add_parser(
        "check",
        help="read a file with the project's readers and summarise it",
        description="Read FILE with the project's readers and print format, rows read/kept, "
        "drops by reason, span, resolution, gaps and columns with units.",
    )
    p_check.add_argument("file", type=Path, metavar="FILE")
    p_check.add_argument(
        "--format", default=None, metavar="NAME", help="format name (default: sniffed)"
    )
    p_check.set_defaults(func=run_check)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def parse_params(items: list[str]) -> dict[str, str]:
    """Turn ``["k=v", ...]`` into a dict; a malformed item is a :class:`ConfigError`."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("--param", f"expected K=V, got {item!r}")
        if key in params:
            raise ConfigError("--param", "given twice", key=key)
        params[key] = value.strip()
    return params


def run_list(_args: argparse.Namespace) -> int:
    """Print the catalogue."""
    for source in SOURCES:
        print(_describe(source))
        print()
    return 0


def _describe(source: Source) -> str:
    lines = [f"{source.name}: {source.title}", f"  url:      {source.url_template}"]
    for p in source.params:
        default = f" (default {p.default})" if p.default is not None else " (required)"
        lines.append(f"  param:    {p.name}={p.example}  {p.help}{default}")
    lines += [
        f"  file:     <cache>/{source.name}/{source.filename_template}",
        f"  reader:   {source.reader} (format {source.format})"
        if source.reader
        else "  reader:   none yet (raw download only)",
        f"  checksum: {source.checksum_note}",
        f"  license:  {source.license}",
        f"  about:    {source.homepage}",
    ]
    if source.notes:
        lines.append(f"  notes:    {source.notes}")
    return "\n".join(lines)


@contextmanager
def _progress_bar(enabled: bool, label: str) -> Iterator[ProgressCallback | None]:
    """A tqdm bar fed by the fetch progress callback (``None`` when disabled)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr)

    def update(done: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def run_fetch(args: argparse.Namespace) -> int:
    """Download one file of a catalogued source and print where it went."""
    params = parse_params(args.param)
    cache = args.cache if args.cache is not None else default_cache_dir()
    show = not args.no_progress and sys.stderr.isatty()
    with _progress_bar(show, args.source) as progress:
        result = fetch_source(
            args.source,
            cache,
            params=params,
            url_base=args.url_base,
            sha256=args.sha256,
            timeout_s=min(SOCKET_TIMEOUT_S, args.timeout),
            deadline_s=args.timeout,
            retries=args.retries,
            chunk_bytes=DEFAULT_CHUNK_BYTES,
            backoff_s=args.backoff,
            force=args.force,
            progress=progress,
        )
    check = ("verified" if result.checksum_verified
             else "recorded (no published or pinned checksum)")
    print(f"{result.status}: {result.path}")
    print(f"  url:    {result.url}")
    print(f"  size:   {result.size_bytes} bytes")
    print(f"  sha256: {result.sha256} {check}")
    if result.restarts:
        print(f"  note:   server ignored resume {result.restarts} time(s); downloaded again")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Read FILE with the project's readers and print a summary."""
    path: Path = args.file
    if not path.exists():
        raise TraceError(path, "no such file or folder")
    frame, meta = _read(path, args.format)
    print(format_summary(path, frame, meta))
    return 0


def _read(path: Path, fmt: str | None) -> tuple[pd.DataFrame, Any]:
    """Read with the sniffed reader, or with the reader registered for ``fmt``."""
    from traces import formats

    if fmt is None:
        return formats.read_any(path)
    if fmt not in formats.READERS:
        raise TraceError(path, f"unknown format {fmt!r}; known formats: "
                         f"{', '.join(formats.READERS)}")
    return formats.reader_for(fmt)(path)


def _fmt_delta(delta: Any) -> str:
    """``1h``, ``15min``, ``5min``, ``30s`` for a step; other objects as ``str``."""
    if not isinstance(delta, pd.Timedelta):
        return str(delta)
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{delta.total_seconds():g}s"


def _fmt_time(ts: Any) -> str:
    if isinstance(ts, pd.Timestamp):
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC")
            return f"{ts:%Y-%m-%d %H:%M}Z"
        return f"{ts:%Y-%m-%d %H:%M}"
    return str(ts)


def format_summary(path: Path, frame: pd.DataFrame, meta: Any) -> str:
    """Human-readable summary of a reader's output.

    Parameters
    ----------
    path
        File that was read.
    frame
        The reader's DataFrame.
    meta
        Its :class:`traces.grid.TraceMetadata` (format, rows_read, rows_kept,
        dropped, gaps, resolution, units, time_convention).
    """
    dropped: Mapping[str, int] = getattr(meta, "dropped", {}) or {}
    drops = ", ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items()) if n)
    lines = [
        f"file:        {path}",
        f"format:      {getattr(meta, 'format', '?')}",
        f"rows:        read {getattr(meta, 'rows_read', '?')}, kept "
        f"{getattr(meta, 'rows_kept', len(frame))}, dropped {sum(dropped.values())}"
        + (f" ({drops})" if drops else ""),
    ]
    if len(frame.index):
        lines.append(
            f"span:        {_fmt_time(frame.index[0])} .. {_fmt_time(frame.index[-1])} "
            f"({len(frame.index)} rows; index '{frame.index.name}')"
        )
    else:
        lines.append("span:        (no rows)")
    resolution = getattr(meta, "resolution", None)
    lines.append(
        f"resolution:  {_fmt_delta(resolution) if resolution is not None else 'irregular/none'}"
    )
    gaps = tuple(getattr(meta, "gaps", ()) or ())
    if gaps:
        missing = sum(int(getattr(g, "n_intervals", 0)) for g in gaps)
        shown = ", ".join(str(g) for g in gaps[:_MAX_GAPS_SHOWN])
        more = f", ... ({len(gaps) - _MAX_GAPS_SHOWN} more)" if len(gaps) > _MAX_GAPS_SHOWN else ""
        lines.append(f"gaps:        {len(gaps)} ({missing} missing intervals): {shown}{more}")
    else:
        lines.append("gaps:        none")
    convention = getattr(meta, "time_convention", "")
    if convention:
        lines.append(f"time:        {convention}")
    units: Mapping[str, str] = getattr(meta, "units", {}) or {}
    lines.append(f"columns:     {len(frame.columns)}")
    for column in frame.columns:
        unit = units.get(str(column), "")
        lines.append(f"  {column}" + (f"  [{unit}]" if unit else ""))
    return "\n".join(lines)
