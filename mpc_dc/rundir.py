"""Run directories: one folder per run, written atomically.

Layout::

    RUN/
      scenario.json      the resolved scenario (every default filled in)
      metadata.json      versions, git hash, seed, wall times, controller
      ledger.parquet     one row per interval (flows [MW], work [WU], costs [$]); a site
                         run (:func:`mpc_dc.sim.engine2.save_run`): per interval and campus
      pools.parquet      site runs with a fleet: per interval and inference pool
      requests.parquet   site runs at request level: per-request samples
      kpis.json          headline figures
      plots/*.png        power flows, prices, decisions

Everything is written into ``RUN.tmp-<pid>`` first and renamed at the end, so a
failed or killed run leaves no half-written ``RUN`` behind.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.config import to_mapping

logger = logging.getLogger(__name__)

_PACKAGES = ("mpc-dc", "numpy", "pandas", "cvxpy", "highspy", "simpy", "statsmodels", "pyarrow")


class RunDirExistsError(FileExistsError):
    """The target run directory exists already."""


class RunWriteError(OSError):
    """Writing an output failed (e.g. a full disk); nothing partial was left behind.

    Parameters
    ----------
    target : Path
        The run directory or file that could not be written.
    cause : OSError
        The underlying error.
    """

    def __init__(self, target: Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        self.target = Path(target)
        self.cause = cause
        super().__init__(
            f"{target}: could not write ({reason}); nothing was written and earlier "
            "results are intact"
        )

    def __str__(self) -> str:
        return str(self.args[0])


def versions() -> dict[str, str]:
    """Versions of Python and the packages a run depends on."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_hash() -> str:
    """Commit of the source tree (``"unknown"`` outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if done.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
        text=True, timeout=5, check=False,
    )
    return done.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (numpy scalars and timestamps allowed)."""
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")


def check_target(target: Path, *, overwrite: bool = False) -> None:
    """Raise :class:`RunDirExistsError` if ``target`` exists and may not be replaced."""
    if Path(target).exists() and not overwrite:
        raise RunDirExistsError(f"{target}: exists already; choose another --out or remove it")


@contextmanager
def atomic_dir(target: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it to ``target`` on success.

    Raises
    ------
    RunDirExistsError
        If ``target`` exists and ``overwrite`` is False (checked before any work).
    RunWriteError
        If writing fails with an :class:`OSError` (e.g. a full disk); the temporary
        directory is removed and an existing ``target`` is left as it was.
    """
    target = Path(target)
    check_target(target, overwrite=overwrite)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunWriteError(target, err) from err
    try:
        yield tmp
        replace_dir(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, RunWriteError | RunDirExistsError):
            raise
        logger.error("writing %s failed: %s", target, err)
        raise RunWriteError(target, err) from err
    except BaseException:
        # Killed or interrupted: leave nothing half-written behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` to ``out_dir``, replacing a previous output folder.

    The previous folder is first moved aside, so ``out_dir`` is never half-written.
    """
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / "prev")
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def write_file_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write one file through a temporary sibling renamed into place.

    ``write(tmp_path)`` writes the content. On any failure the temporary file is
    removed and an existing ``path`` is left as it was.

    Raises
    ------
    RunWriteError
        When writing or renaming fails with an :class:`OSError` (e.g. disk full).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        logger.error("writing %s failed: %s", path, err)
        raise RunWriteError(path, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_run(
    target: Path,
    *,
    scenario: Any,
    kpis: dict[str, Any],
    ledger: pd.DataFrame,
    meta: dict[str, Any],
    plot: Callable[[pd.DataFrame, Path], list[Path]] | None = None,
    overwrite: bool = False,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Write a complete run directory atomically; return its path.

    Parameters
    ----------
    target : Path
    scenario : dataclass, Mapping or None
        The resolved scenario, or its table (``scenario.json`` is not written when
        None).
    kpis : dict
    ledger : DataFrame
    meta : dict
        Extra metadata (seed, controller, wall times); versions and git hash are added.
    plot : callable, optional
        ``plot(ledger, plots_dir) -> paths``.
    overwrite : bool
    tables : Mapping[str, DataFrame], optional
        More tables, each written as ``<name>.parquet``.
    """
    with atomic_dir(target, overwrite=overwrite) as tmp:
        if scenario is not None:
            resolved = scenario if isinstance(scenario, Mapping) else to_mapping(scenario)
            write_json(tmp / "scenario.json", resolved)
        write_json(tmp / "metadata.json", {**meta, "versions": versions(), "git": git_hash()})
        write_json(tmp / "kpis.json", kpis)
        ledger.to_parquet(tmp / "ledger.parquet")
        for name, table in (tables or {}).items():
            table.to_parquet(tmp / f"{name}.parquet")
        if plot is not None:
            plots = tmp / "plots"
            plots.mkdir()
            plot(ledger, plots)
    return target


def read_run(path: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """KPIs, ledger and metadata of a run directory."""
    kpis = json.loads((path / "kpis.json").read_text(encoding="utf-8"))
    meta = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    return kpis, pd.read_parquet(path / "ledger.parquet"), meta
