"""Run directories: one folder per run, written atomically.

Layout::

    RUN/
      scenario.json      the resolved scenario (every default filled in)
      metadata.json      versions, git hash, seed, wall times, controller
      ledger.parquet     one row per interval (flows [MW], work [WU], costs [$]); a site
                         run (:func:`mpc_dc.sim.engine.save_run`): per interval and campus
      pools.parquet      site runs with a fleet: per interval and inference pool
      requests.parquet   site runs at request level: per-request samples
      kpis.json          headline figures
      plots/*.png        power flows, prices, decisions

Everything is written into ``RUN.tmp-<pid>`` first and renamed at the end, so a
failed or killed run leaves no half-written ``RUN`` behind; what a killed process
leaves is removed at the next write into the same folder (:func:`clean_stale`).

Every folder mpc-dc writes (run, compare, reproduce, bench, backtest and sweep
outputs) carries the output marker ``.mpc-dc-output.json``: its kind and, once
finished, the SHA-256 of every file. ``--overwrite`` replaces only folders with
that marker (:func:`check_target`); a sweep resumes only runs whose files still
match it (:func:`verify_output_dir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.config import to_mapping
from mpc_dc.interrupt import hold_point
from traces.errors import TraceError

logger = logging.getLogger(__name__)

MARKER_NAME = ".mpc-dc-output.json"
"""The output marker: every folder mpc-dc writes carries it (see the module docstring)."""
MARKER_VERSION = 1

_PACKAGES = ("mpc-dc", "numpy", "pandas", "cvxpy", "highspy", "simpy", "statsmodels", "pyarrow")


class RunDirExistsError(FileExistsError):
    """The target run directory exists already."""


class RunDirNotWritableError(OSError):
    """The folder a run directory would be written into cannot be written (found before
    any work, unlike :class:`RunWriteError`)."""

    def __init__(self, target: Path, folder: Path, cause: OSError) -> None:
        reason = (cause.strerror or str(cause) or type(cause).__name__).lower()
        super().__init__(f"{target}: cannot write into {folder} ({reason}); expected a "
                         "folder this user may write")


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


def check_target(target: Path, *, overwrite: bool = False,
                 offers_overwrite: bool = True) -> None:
    """Refuse a ``target`` that may not be written, before any work is done.

    ``target`` may not exist yet; with ``overwrite`` it may also be a directory that
    mpc-dc wrote (it carries the output marker, :data:`MARKER_NAME`). Anything else
    is refused: a file, an existing folder without ``overwrite``, a folder without
    the marker (``--overwrite`` never deletes a folder mpc-dc did not write), a path
    below a file. ``offers_overwrite``: whether the command has ``--overwrite`` (the
    refusal of an existing folder names it only then).

    Raises
    ------
    RunDirExistsError
        One line naming ``target`` and what was expected.
    RunDirNotWritableError
        The folder ``target`` would be created in refuses a new entry (permissions, a
        read-only file system, ``/proc``): found now rather than after the run.
    """
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise RunDirExistsError(f"{target}: exists and is not a directory; expected a new "
                                    "directory path")
        if not overwrite:
            hint = " (--overwrite replaces a folder mpc-dc wrote)" if offers_overwrite else ""
            raise RunDirExistsError(f"{target}: exists already; choose another --out or remove "
                                    f"it{hint}")
        if read_marker(target) is None:
            raise RunDirExistsError(
                f"{target}: not an mpc-dc output folder (no {MARKER_NAME}); --overwrite "
                "replaces only folders mpc-dc wrote: choose another --out or remove it yourself")
        _check_writable(target, target.parent)
        return
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirExistsError(f"{target}: {parent} is a file; expected a directory "
                                        "path")
            _check_writable(target, parent)
            return


def check_file_target(target: Path) -> None:
    """Refuse a file ``target`` whose folder (the nearest one that exists) cannot take a
    new entry, before any work is done (``mpc-dc report --out``).

    Raises
    ------
    RunDirNotWritableError
        One line naming ``target``, the folder and why.
    """
    target = Path(target)
    folder = next(p for p in target.parents if p.exists())
    _check_writable(target, folder)


def _check_writable(target: Path, folder: Path) -> None:
    """Create and remove an empty folder in ``folder``, where ``target`` (or the first of
    its missing parents) will be created: permission bits alone do not say (root, a
    read-only mount, an immutable folder). Named as a temporary folder of this process,
    so :func:`clean_stale` removes it if the process dies in between."""
    probe = Path(folder) / f".{target.name}.probe.tmp-{os.getpid()}"
    try:
        probe.mkdir()
    except FileExistsError:
        pass  # this process's own probe, left by an interrupted check
    except OSError as err:
        raise RunDirNotWritableError(target, Path(folder), err) from None
    probe.rmdir()


@contextmanager
def atomic_dir(target: Path, *, overwrite: bool = False, kind: str = "run") -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it to ``target`` on success.

    The temporary folder ``<target>.tmp-<pid>`` carries the output marker from the
    start (so a stale one is recognised) and, once the body has finished, the
    marker records the SHA-256 of every file written (:func:`verify_output_dir`).
    Stale temporary folders of dead processes in the same parent are removed first
    (:func:`clean_stale`).

    Parameters
    ----------
    target : Path
    overwrite : bool
        Replace an existing ``target`` that carries the output marker.
    kind : str
        What the folder holds (``"run"``, ``"compare"``, ``"reproduce"``, ...), recorded
        in the marker.

    Raises
    ------
    RunDirExistsError
        ``target`` may not be written (see :func:`check_target`; checked before any work).
    RunWriteError
        If writing fails with an :class:`OSError` (e.g. a full disk); the temporary
        directory is removed and an existing ``target`` is left as it was.
    """
    target = Path(target)
    check_target(target, overwrite=overwrite)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.parent)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write_marker(tmp, kind)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunWriteError(target, err) from err
    try:
        yield tmp
        hold_point("write", str(target))
        write_marker(tmp, kind, files=file_digests(tmp))
        # Checked again: another process may have written target meanwhile.
        check_target(target, overwrite=overwrite)
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

    The previous folder is first moved aside to ``.<name>.old-<pid>`` and removed
    after the rename, so ``out_dir`` is never half-written; if the process dies in
    between, :func:`clean_stale` puts the previous folder back.
    """
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
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
        clean_stale(path.parent)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        logger.error("writing %s failed: %s", path, err)
        raise RunWriteError(path, err) from err
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----------------------------------------------------------------------------- marker


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The output marker of ``folder`` as a dict, or None (absent, unreadable, not ours)."""
    path = Path(folder) / MARKER_NAME
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("mpc_dc_output") != MARKER_VERSION:
        return None
    return payload


def write_marker(folder: Path, kind: str, *, files: dict[str, str] | None = None) -> None:
    """Write the output marker into ``folder``.

    Parameters
    ----------
    folder : Path
    kind : str
        What the folder holds.
    files : dict, optional
        Relative path -> SHA-256 of every file of a finished folder; ``None`` while
        it is being written.
    """
    payload: dict[str, Any] = {
        "mpc_dc_output": MARKER_VERSION,
        "kind": kind,
        "complete": files is not None,
        "written_utc": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "files": dict(sorted((files or {}).items())),
    }
    write_json(Path(folder) / MARKER_NAME, payload)


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` (the marker excepted), by relative POSIX path."""
    folder = Path(folder)
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MARKER_NAME:
            out[path.relative_to(folder).as_posix()] = _sha256(path)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_output_dir(folder: Path) -> str | None:
    """Why ``folder`` is not a complete, intact mpc-dc output; None when it is.

    Complete: the marker says so and every file it lists is there with the SHA-256
    it recorded (files added later, such as a report, are not checked).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    marker = read_marker(folder)
    if marker is None:
        return f"no {MARKER_NAME}"
    files = marker.get("files")
    if not marker.get("complete") or not isinstance(files, dict) or not files:
        return "not finished"
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        try:
            actual = _sha256(path)
        except OSError as err:
            return f"{name} cannot be read ({err.strerror})"
        if actual != digest:
            return f"{name} differs from its recorded SHA-256"
    return None


def prepare_output_dir(folder: Path, *, kind: str, check_only: bool = False,
                       legacy_file: str | None = None) -> Path:
    """A folder that receives output files in place (backtest, sweep, report figures).

    A new or empty folder gets the output marker; one that carries the marker of
    the same ``kind`` is reused; anything else is refused, so mpc-dc never mixes
    its files into (or later replaces) a folder it did not write.

    Parameters
    ----------
    folder : Path
    kind : str
    check_only : bool
        Only check (before any work); create nothing.
    legacy_file : str, optional
        A file whose presence marks output of this kind written before the marker
        existed (``sweep.json`` of a sweep directory): such a folder is accepted.

    Raises
    ------
    RunDirExistsError
        ``folder`` is a file, a folder of other content, or mpc-dc output of another kind.
    RunWriteError
        Creating the folder or its marker failed.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise RunDirExistsError(f"{folder}: exists and is not a directory; expected a "
                                    "directory path")
        marker = read_marker(folder)
        legacy = legacy_file is not None and (folder / legacy_file).is_file()
        if marker is None and not legacy and any(folder.iterdir()):
            raise RunDirExistsError(
                f"{folder}: exists and is not an mpc-dc output folder (no {MARKER_NAME}); "
                "choose a new or empty folder")
        if marker is not None and marker.get("kind") != kind:
            raise RunDirExistsError(f"{folder}: holds mpc-dc {marker.get('kind')} output; "
                                    f"expected a new folder or one with {kind} output")
    else:
        check_target(folder)
    if check_only:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale(folder)
        if read_marker(folder) is None:
            write_marker(folder, kind, files={})
    except OSError as err:
        raise RunWriteError(folder, err) from err
    return folder


# ----------------------------------------------------------------------------- stale


_STALE = re.compile(r"^\.?(?P<name>.+)\.(?P<what>tmp|old)-(?P<pid>\d+)$")
_cleaned: set[Path] = set()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. pid out of range
        return False
    return True


def clean_stale(parent: Path, *, again: bool = False) -> None:
    """Remove what killed processes left in ``parent``; once per process and folder.

    * ``<name>.tmp-<pid>/`` — a run directory being written (it carries the marker,
      or is empty) and ``.<name>.tmp-<pid>`` — a file being written: removed;
    * ``.<name>.old-<pid>/`` — a previous output moved aside by :func:`replace_dir`:
      put back as ``<name>`` when that is missing, else removed.

    Only entries of processes that no longer run are touched (checked with
    ``kill(pid, 0)``; on a shared file system a pid names a process of this machine
    only). A folder without the marker is left alone with a warning. ``again``
    scans a folder already scanned by this process (after stopping workers).
    """
    parent = Path(parent)
    try:
        key = parent.resolve()
    except OSError:
        return
    if key in _cleaned and not again:
        return
    _cleaned.add(key)
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = _STALE.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(entry.path)
        try:
            _clean_one(path, match["name"], match["what"], entry.is_dir(follow_symlinks=False))
        except OSError as err:
            logger.warning("could not remove the stale %s: %s", path, err)


def _clean_one(path: Path, name: str, what: str, is_dir: bool) -> None:
    if not is_dir:
        logger.info("removing %s, left by a stopped process", path)
        path.unlink()
        return
    if read_marker(path) is None and any(path.iterdir()):
        logger.warning("leaving %s: it looks stale but has no %s", path, MARKER_NAME)
        return
    original = path.with_name(name)
    if what == "old" and not original.exists():
        logger.warning("restoring %s from %s (a replacement was interrupted)", original, path)
        os.replace(path, original)
        return
    logger.info("removing %s, left by a stopped process", path)
    shutil.rmtree(path)


# ----------------------------------------------------------------------------- read


class RunDirCorruptError(TraceError):
    """A file of a run or sweep directory is missing or corrupt (one line naming it)."""


def read_json_object(path: Path, what: str = "a run directory file") -> dict[str, Any]:
    """A JSON object from ``path``, with one-line errors naming the file.

    Raises
    ------
    RunDirCorruptError
        Missing or unreadable file, invalid (e.g. truncated) JSON, or not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise RunDirCorruptError(path, f"file not found; expected {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunDirCorruptError(path, "not UTF-8 text; the file is corrupt") from None
    except OSError as err:
        raise RunDirCorruptError(path, f"cannot read ({err.strerror})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunDirCorruptError(path, f"invalid JSON ({err.msg}, column {err.colno}); the "
                                 "file is truncated or corrupt", line=err.lineno) from None
    if not isinstance(payload, dict):
        raise RunDirCorruptError(path, f"expected a JSON object, got {_json_type(payload)}")
    return payload


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_parquet_file(path: Path, what: str = "a run directory file") -> pd.DataFrame:
    """A Parquet table from ``path``, with one-line errors naming the file."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise RunDirCorruptError(path, f"file not found; expected {what}")
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, ValueError, OSError) as err:
        # pyarrow says "Could not open ... '<path>': <reason>. Either ...": keep <reason>.
        text = " ".join(str(err).replace(str(path), "").split())
        reason = text.split(": ")[-1].split(". ")[0].strip(" .")[:120] or type(err).__name__
        raise RunDirCorruptError(path, f"not a readable Parquet file ({reason}); the file is "
                                 "truncated or corrupt") from None


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
        Replace an existing run directory (one that carries the output marker).
    tables : Mapping[str, DataFrame], optional
        More tables, each written as ``<name>.parquet``.
    """
    with atomic_dir(target, overwrite=overwrite, kind="run") as tmp:
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
    """KPIs, ledger and metadata of a run directory.

    Raises
    ------
    RunDirCorruptError
        One line naming the file that is missing, truncated, or of the wrong type.
    """
    path = Path(path)
    what = "a run directory written by mpc-dc run"
    kpis = read_json_object(path / "kpis.json", what)
    meta = read_json_object(path / "metadata.json", what)
    return kpis, read_parquet_file(path / "ledger.parquet", what), meta
