"""Kill tests: ``run``, ``compare``, ``reproduce`` and ``sweep`` stopped mid-simulation and
mid-write; a sweep then resumed.

Each command runs in a subprocess (``python -m mpc_dc``) with the failpoint
``MPC_DC_TEST_HOLD=<point>:<folder>[:<run>]`` (mpc_dc/interrupt.py): the process
that reaches the point ("simulate": a simulated interval, "write": a run directory
written but not renamed) drops a flag file and waits. The test then sends SIGINT,
SIGTERM or SIGKILL and checks: exit 128 + signal and one stderr line for a clean
stop, no temporary folder left (a SIGKILL's is removed by the next write), no
process of the command left running (found by a token in their environment), and
a resumed sweep gives the same results table as an uninterrupted one.

Tiny runs: the embedded synthetic default, one day, seven days of history,
baseline / perfect / persistence controllers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]

SWEEP = """
name = "kill-test"
[run]
days = 1
history_days = 7
[[site.campuses]]
name = "rcdc"
price_node = "F"
[site.campuses.other_it]
[site.campuses.renewable]
[controller]
forecaster = "persistence"
[sweep]
list = [
    { "controller.kind" = "baseline" },
    { "controller.kind" = "perfect" },
    { "controller.forecaster" = "persistence" },
]
"""
RUN = ["run", "--days", "1", "--controller", "baseline", "--no-plots"]
FLAG_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 20.0

pytestmark = pytest.mark.slow


@dataclass
class Spawned:
    """A command started in a subprocess with a failpoint.

    Its output goes to files, not pipes: a worker that outlived its command would
    hold a pipe open and hang the test instead of failing it.
    """

    proc: subprocess.Popen[bytes]
    flags: Path
    token: str
    stdout: Path
    stderr: Path

    def wait_flags(self, count: int) -> list[int]:
        """Wait until ``count`` processes reached the failpoint; their pids."""
        deadline = time.monotonic() + FLAG_TIMEOUT_S
        while time.monotonic() < deadline:
            found = sorted(self.flags.iterdir())
            if len(found) >= count:
                return [int(p.name.rsplit("-", 1)[1]) for p in found]
            if self.proc.poll() is not None:
                err = self.stderr.read_text(encoding="utf-8")
                pytest.fail(f"ended before the failpoint (exit {self.proc.returncode}): {err}")
            time.sleep(0.05)
        pytest.fail(f"the failpoint was not reached in {FLAG_TIMEOUT_S:g} s")

    def stop(self, signum: int) -> tuple[int, str, str]:
        """Send ``signum``; exit code, stdout and stderr."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=120)
        return (code, self.stdout.read_text(encoding="utf-8"),
                self.stderr.read_text(encoding="utf-8"))


def spawn(argv: list[str], tmp_path: Path, hold: str, match: str = "") -> Spawned:
    flags = tmp_path / f"flags-{uuid.uuid4().hex[:6]}"
    flags.mkdir()
    token = uuid.uuid4().hex
    env = {**os.environ, "MPC_DC_TEST_HOLD": f"{hold}:{flags}" + (f":{match}" if match else ""),
           "MPC_DC_TEST_TOKEN": token, "PYTHONWARNINGS": "ignore"}
    stdout, stderr = flags.with_suffix(".out"), flags.with_suffix(".err")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mpc_dc", *argv], cwd=REPO, env=env,
                                stdout=out, stderr=err)
    return Spawned(proc, flags, token, stdout, stderr)


def processes_with(token: str) -> list[int]:
    """Pids of live processes whose environment holds ``token`` (ours only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"MPC_DC_TEST_TOKEN={token}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def assert_all_gone(token: str) -> None:
    """No process of the command is left running (within a grace time)."""
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = processes_with(token)
    for pid in left:  # do not leak them into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived their command: {left}"


def tmp_folders(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp-*"))


@pytest.fixture(autouse=True)
def _linux_proc() -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the processes of a command")


# ----------------------------------------------------------------------------- run


def test_run_sigterm_mid_simulation(tmp_path: Path) -> None:
    out = tmp_path / "run"
    job = spawn([*RUN, "--out", str(out)], tmp_path, "simulate")
    job.wait_flags(1)
    code, stdout, stderr = job.stop(signal.SIGTERM)
    assert code == 143
    assert stderr == "mpc-dc: interrupted (SIGTERM)\n"
    assert "Traceback" not in stdout
    assert not out.exists() and not tmp_folders(tmp_path)
    assert_all_gone(job.token)


def test_run_sigint_mid_write(tmp_path: Path) -> None:
    out = tmp_path / "run"
    job = spawn([*RUN, "--out", str(out)], tmp_path, "write")
    (pid,) = job.wait_flags(1)
    assert (tmp_path / f"run.tmp-{pid}").is_dir()  # the run directory is being written
    code, _, stderr = job.stop(signal.SIGINT)
    assert code == 130
    assert stderr == "mpc-dc: interrupted (SIGINT)\n"
    assert not out.exists() and not tmp_folders(tmp_path)


def test_run_sigkill_mid_write_is_cleaned_by_the_next_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = spawn([*RUN, "--out", str(tmp_path / "run")], tmp_path, "write")
    (pid,) = job.wait_flags(1)
    job.stop(signal.SIGKILL)
    left = tmp_folders(tmp_path)
    assert [p.name for p in left] == [f"run.tmp-{pid}"]  # nothing could clean up
    assert cli_main([*RUN, "--out", str(tmp_path / "again")]) == 0
    capsys.readouterr()
    assert not tmp_folders(tmp_path)
    assert (tmp_path / "again" / "kpis.json").is_file() and not (tmp_path / "run").exists()


def test_compare_sigterm_mid_simulation(tmp_path: Path) -> None:
    out = tmp_path / "table"
    job = spawn(["compare", "--forecasters", "persistence", "--out", str(out)], tmp_path,
                "simulate")
    job.wait_flags(1)
    code, _, stderr = job.stop(signal.SIGTERM)
    assert (code, stderr) == (143, "mpc-dc: interrupted (SIGTERM)\n")
    assert not out.exists() and not tmp_folders(tmp_path)


def test_reproduce_sigint_mid_write(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "rcdc"
    job = spawn(["reproduce", "rcdc", "--data", str(shared_data), "--out", str(out), "--days",
                 "1", "--no-sweeps"], tmp_path, "write")
    (pid,) = job.wait_flags(1)
    assert (tmp_path / f"rcdc.tmp-{pid}").is_dir()
    code, _, stderr = job.stop(signal.SIGINT)
    assert (code, stderr) == (130, "mpc-dc: interrupted (SIGINT)\n")
    assert not out.exists() and not tmp_folders(tmp_path)


# ----------------------------------------------------------------------------- sweep


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The sweep file and the table of an uninterrupted sweep (in-process, one worker)."""
    folder = tmp_path_factory.mktemp("reference")
    path = folder / "sweep.toml"
    path.write_text(SWEEP, encoding="utf-8")
    outcome = run_sweep(load_sweep(path), folder / "out")
    assert not outcome.failed
    return path, outcome.table


def finished(out: Path) -> dict[str, int]:
    """Run directories renamed into place: name -> mtime of their kpis.json [ns]."""
    runs = out / "runs"
    if not runs.is_dir():
        return {}
    return {p.name: (p / "kpis.json").stat().st_mtime_ns for p in runs.iterdir()
            if ".tmp-" not in p.name and (p / "kpis.json").is_file()}


def resume_and_compare(argv: list[str], out: Path, expected: pd.DataFrame,
                       capsys: pytest.CaptureFixture[str]) -> None:
    """The same command again, in-process: same table; finished runs were kept."""
    before = finished(out)
    capsys.readouterr()
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count(" skipped ") == len(before)
    assert printed.count(" done ") == len(expected) - len(before)
    for name, mtime in before.items():
        assert (out / "runs" / name / "kpis.json").stat().st_mtime_ns == mtime
    assert not tmp_folders(out) and not (out / ".sweep.lock").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), expected)


@pytest.mark.parametrize(
    ("executor", "hold", "match", "signum"),
    [
        ("local", "simulate", "", signal.SIGTERM),
        ("local", "write", "kind=perfect", signal.SIGKILL),
        ("dask", "simulate", "", signal.SIGKILL),
        ("dask", "write", "kind=perfect", signal.SIGTERM),
    ],
    ids=["local-sigterm-simulating", "local-sigkill-writing", "dask-sigkill-simulating",
         "dask-sigterm-writing"],
)
def test_killed_sweep_leaves_no_process_and_resumes_to_the_same_table(
    reference: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    executor: str, hold: str, match: str, signum: int,
) -> None:
    path, expected = reference
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--workers", "2"]
    job = spawn([*argv, "--executor", executor], tmp_path, hold, match)
    job.wait_flags(1 if match else 2)
    code, _, stderr = job.stop(signum)
    if signum != signal.SIGKILL:
        assert code == 128 + signum
        name = signal.Signals(signum).name
        assert stderr.strip().splitlines()[-1] == f"mpc-dc: interrupted ({name})"
        assert "Traceback" not in stderr
        assert not tmp_folders(out)
    assert_all_gone(job.token)
    assert not (out / "results.parquet").exists()
    resume_and_compare(argv[:4], out, expected, capsys)
