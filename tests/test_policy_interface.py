"""The public policy interface (docs/policies.md): policies named on the command line or
by entry point, the example package, our MPC behind the interface, bad ``--policy`` values.

The example package (``examples/mpc_dc_example_policies``) is registered as pip would
register it (fixture ``example_installed``, tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.policy import installed_policies, load_policy_class
from mpc_dc.sim.meter import COST_COLUMNS
from tests.conftest import EXAMPLE

TINY_FLEET = """
name = "tiny-fleet"
[run]
start = "2022-04-01T04:00:00Z"
days = 0.25
history_days = 2
seed = 3
[data]
source = "synthetic"
[[site.campuses]]
name = "a"
price_node = "D"
gpus = 16
[site.campuses.other_it]
it_capacity_mw = 0.02
deferrable_share = 0.5
window_h = 6
[site.campuses.renewable]
nameplate_mw = 0.02
[fleet]
models = ["qwen3-8b"]
[workload.requests]
rate_multiplier = 2.0
model_map = { ChatGPT = "qwen3-8b", "GPT-4" = "qwen3-8b" }
[controller]
forecaster = "persistence"
horizon_h = 2.0
fine_horizon_h = 2.0
"""
"""A synthetic site small enough to run under several controllers in seconds."""


@pytest.fixture
def tiny_fleet(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_fleet.toml"
    path.write_text(TINY_FLEET, encoding="utf-8")
    return path


def _kpis(run: Path) -> dict[str, object]:
    kpis: dict[str, object] = json.loads((run / "kpis.json").read_text(encoding="utf-8"))
    return kpis


# ----------------------------------------------------------------------------- naming


@pytest.mark.parametrize(("value", "message"), [
    ("tests.no_such_module:X", "no module named 'tests.no_such_module'"),
    ("tests.public_mpc:NoSuchClass", "module 'tests.public_mpc' has no class 'NoSuchClass'"),
    ("tests.public_mpc:context_exogenous", "'tests.public_mpc:context_exogenous' is not a "
                                          "Policy"),
    ("no-such-policy", "no policy named 'no-such-policy' in the entry-point group "
                       "mpc_dc.policies"),
    ("tests.public_mpc:", "expected package.module:Class"),
])
@pytest.mark.parametrize("command", ["run", "compare", "benchmark"])
def test_a_bad_policy_is_one_line_naming_the_option(
        command: str, value: str, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [command, *(["standard", "--out", str(tmp_path / "b")] if command == "benchmark"
                       else []), "--policy", value]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --policy: " in err and message in err
    assert not (tmp_path / "b").exists()


def test_an_installed_policy_is_found_by_its_entry_point_name(example_installed: None) -> None:
    assert installed_policies()["example-bau"] == (
        "mpc_dc_example_policies.bau:BusinessAsUsual")
    cls = load_policy_class("example-bau")
    assert cls is load_policy_class("mpc_dc_example_policies.bau:BusinessAsUsual")


def _mpc_dc_imports(path: Path) -> set[str]:
    return {line.split()[1] for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith(("import ", "from ")) and line.split()[1].split(".")[0] == "mpc_dc"}


def test_the_example_policies_import_only_the_public_interface() -> None:
    """The rule imports the interface alone; the stochastic MPC also mpc-dc's library
    (the MPC built from the context, the optimization), never the simulator."""
    package = EXAMPLE / "mpc_dc_example_policies"
    assert _mpc_dc_imports(package / "bau.py") == {"mpc_dc.policy"}
    smpc = _mpc_dc_imports(package / "smpc.py")
    assert "mpc_dc.policy" in smpc
    assert not {m for m in smpc if m.startswith(("mpc_dc.sim", "mpc_dc.runner"))}


# ----------------------------------------------------------------------------- running


def test_the_example_policy_runs_through_run_and_compare(
        example_installed: None, tiny_fleet: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert cli_main(["run", str(tiny_fleet), "--policy", "example-bau", "--no-plots",
                     "--out", str(run)]) == 0
    kpis = _kpis(run)
    assert kpis["controller"] == "example-bau" and kpis["policy"] == "example-bau"
    assert kpis["decision_projections"] == {}
    assert json.loads((run / "metadata.json").read_text())["controller"] == "example-bau"
    ledger = pd.read_parquet(run / "ledger.parquet")
    assert set(ledger["decision_source"]) == {"example-bau"}
    out = tmp_path / "compare"
    assert cli_main(["compare", str(tiny_fleet), "--forecasters", "baseline",
                     "--policy", "example-bau", "--policy",
                     "mpc_dc_example_policies.bau:BusinessAsUsual", "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv", index_col=0)
    assert {"example-bau", "mpc_dc_example_policies.bau:BusinessAsUsual", "baseline",
            "offline optimum"} <= set(table.index)
    # Both names build the same class: identical runs on identical data.
    assert table.loc["example-bau", "cost_usd"] == table.loc[
        "mpc_dc_example_policies.bau:BusinessAsUsual", "cost_usd"]
    assert table.loc["example-bau", "regret_usd"] >= -1e-6
    assert "example-bau" in capsys.readouterr().out


def test_our_mpc_through_the_public_interface_gives_the_run_kpis(tmp_path: Path) -> None:
    """``mpc-dc run`` (the embedded product site, MPC on SARIMAX) against the same MPC
    built from a PolicyContext alone (tests/public_mpc.py)."""
    plain, public = tmp_path / "plain", tmp_path / "public"
    common = ["run", "--days", "0.25", "--no-plots"]
    assert cli_main([*common, "--out", str(plain)]) == 0
    assert cli_main([*common, "--policy", "tests.public_mpc:PublicMpc",
                     "--out", str(public)]) == 0
    a, b = _kpis(plain), _kpis(public)
    assert b["controller"] == f"public-{a['controller']}"
    for key in ("cost_usd", *COST_COLUMNS):
        assert round(float(b[key]), 2) == round(float(a[key]), 2), key  # type: ignore[arg-type]
    for key in ("import_mwh", "export_mwh", "carbon_t", "tokens_served", "slo_attainment",
                "work_df_done_wu", "solves", "fallbacks_total", "decision_projections"):
        assert b[key] == a[key], key
