"""Run directories: the output marker, safe ``--overwrite``, stale folders, checksums."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.rundir import (
    MARKER_NAME,
    RunDirCorruptError,
    RunDirExistsError,
    RunDirNotWritableError,
    RunWriteError,
    atomic_dir,
    check_target,
    clean_stale,
    prepare_output_dir,
    read_marker,
    read_run,
    verify_output_dir,
    write_marker,
)

RUN = ["run", "--days", "1", "--controller", "baseline", "--no-plots"]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_output(target: Path, files: dict[str, str], *, overwrite: bool = False) -> None:
    with atomic_dir(target, overwrite=overwrite, kind="test") as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")


def test_marker_records_every_file_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_output(out, {"a.json": "{}", "sub/b.txt": "x"})
    marker = read_marker(out)
    assert marker is not None and marker["complete"] and marker["kind"] == "test"
    assert sorted(marker["files"]) == ["a.json", "sub/b.txt"]
    assert verify_output_dir(out) is None
    (out / "sub" / "b.txt").write_text("y", encoding="utf-8")
    assert verify_output_dir(out) == "sub/b.txt differs from its recorded SHA-256"
    (out / "a.json").unlink()
    assert verify_output_dir(out) == "a.json is missing"
    (out / "report.html").write_text("added later", encoding="utf-8")  # not checked
    (out / "a.json").write_text("{}", encoding="utf-8")
    (out / "sub" / "b.txt").write_text("x", encoding="utf-8")
    assert verify_output_dir(out) is None


def test_overwrite_replaces_only_marked_folders(tmp_path: Path) -> None:
    """The data-loss defect: --overwrite deleted any folder. Now only mpc-dc's own."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work", encoding="utf-8")
    with pytest.raises(RunDirExistsError, match="not an mpc-dc output folder"):
        write_output(mine, {"a": "1"}, overwrite=True)
    assert (mine / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left
    out = tmp_path / "out"
    write_output(out, {"a": "1"})
    write_output(out, {"a": "2"}, overwrite=True)
    assert (out / "a").read_text(encoding="utf-8") == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out"]


def test_run_overwrite_refuses_a_user_folder_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    assert cli_main([*RUN, "--out", str(folder), "--overwrite"]) == 2
    assert capsys.readouterr().err == (
        f"mpc-dc: error: {folder}: not an mpc-dc output folder (no {MARKER_NAME}); "
        "--overwrite replaces only folders mpc-dc wrote: choose another --out or remove it "
        "yourself\n")
    assert [p.name for p in folder.iterdir()] == ["cat.jpg"]
    # A run directory mpc-dc wrote is replaced.
    run = tmp_path / "run"
    assert cli_main([*RUN, "--out", str(run)]) == 0
    assert cli_main([*RUN, "--out", str(run), "--overwrite"]) == 0
    assert verify_output_dir(run) is None


@pytest.mark.parametrize("what", ["file", "below a file"])
def test_target_that_is_or_is_under_a_file(tmp_path: Path, what: str) -> None:
    (tmp_path / "f").write_text("x", encoding="utf-8")
    target = tmp_path / "f" if what == "file" else tmp_path / "f" / "run"
    with pytest.raises(RunDirExistsError, match=r"is a file|not a directory"):
        check_target(target, overwrite=True)


def test_stale_folders_of_dead_processes_are_cleaned(tmp_path: Path) -> None:
    pid = dead_pid()
    stale = tmp_path / f"run.tmp-{pid}"
    stale.mkdir()
    write_marker(stale, "run")
    (stale / "kpis.json").write_text("{", encoding="utf-8")
    stale_file = tmp_path / f".results.csv.tmp-{pid}"
    stale_file.write_text("half", encoding="utf-8")
    live = tmp_path / f"other.tmp-{os.getppid()}"  # a live process: left alone
    live.mkdir()
    write_marker(live, "run")
    foreign = tmp_path / f"notes.tmp-{pid}"  # not ours (no marker, not empty): left alone
    foreign.mkdir()
    (foreign / "x").write_text("keep", encoding="utf-8")
    clean_stale(tmp_path, again=True)
    assert not stale.exists() and not stale_file.exists()
    assert live.exists() and (foreign / "x").exists()


def test_interrupted_replacement_puts_the_previous_output_back(tmp_path: Path) -> None:
    """Killed between moving the old output aside and renaming the new one in."""
    out = tmp_path / "out"
    write_output(out, {"a": "old"})
    aside = tmp_path / f".out.old-{dead_pid()}"
    os.replace(out, aside)
    clean_stale(tmp_path, again=True)
    assert (out / "a").read_text(encoding="utf-8") == "old" and not aside.exists()


def test_prepare_output_dir(tmp_path: Path) -> None:
    folder = prepare_output_dir(tmp_path / "bt", kind="backtest")
    assert read_marker(folder) is not None
    assert prepare_output_dir(folder, kind="backtest") == folder
    with pytest.raises(RunDirExistsError, match="holds mpc-dc backtest output"):
        prepare_output_dir(folder, kind="sweep")
    user = tmp_path / "user"
    user.mkdir()
    (user / "x").write_text("x", encoding="utf-8")
    with pytest.raises(RunDirExistsError, match="not an mpc-dc output folder"):
        prepare_output_dir(user, kind="backtest", check_only=True)
    legacy = tmp_path / "old-sweep"
    legacy.mkdir()
    (legacy / "sweep.json").write_text("{}", encoding="utf-8")
    assert prepare_output_dir(legacy, kind="sweep", legacy_file="sweep.json") == legacy


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        ("truncate-kpis", "kpis.json: line 1: invalid JSON (Expecting property name enclosed "
                          "in double quotes, column 2); the file is truncated or corrupt"),
        ("kpis-list", "kpis.json: expected a JSON object, got a list"),
        ("no-metadata", "metadata.json: file not found; expected a run directory written by "
                        "mpc-dc run"),
        ("garbage-ledger", "ledger.parquet: not a readable Parquet file"),
    ],
)
def test_read_run_names_the_corrupt_file(tmp_path: Path, corrupt: str, expected: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "kpis.json").write_text("{" if corrupt == "truncate-kpis" else
                                   ("[1, 2]" if corrupt == "kpis-list" else "{}"),
                                   encoding="utf-8")
    if corrupt != "no-metadata":
        (run / "metadata.json").write_text(json.dumps({"a": 1}), encoding="utf-8")
    if corrupt == "garbage-ledger":
        (run / "ledger.parquet").write_bytes(b"PAR1 not really")
    else:
        pd.DataFrame({"x": [1.0]}).to_parquet(run / "ledger.parquet")
    with pytest.raises(RunDirCorruptError) as info:
        read_run(run)
    assert str(info.value).startswith(str(run / expected.split(":", maxsplit=1)[0]))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_write_error_messages_are_one_line_naming_the_target() -> None:
    """The messages the CLI prints (exit 2 and 3); OSError's own str gives them (the
    classes' copies of ``__str__`` were removed)."""
    denied = RunDirNotWritableError(Path("/srv/out/run"), Path("/srv/out"),
                                    PermissionError(13, "Permission denied"))
    assert str(denied) == ("/srv/out/run: cannot write into /srv/out (permission denied); "
                           "expected a folder this user may write")
    full = RunWriteError(Path("/srv/out/run"), OSError(28, "No space left on device"))
    assert str(full) == ("/srv/out/run: could not write (No space left on device); nothing "
                         "was written and earlier results are intact")
    assert full.target == Path("/srv/out/run") and full.cause.errno == 28
