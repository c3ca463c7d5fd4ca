"""Shared fixtures.

``shared_data`` points at the real public data in ``../shared/data`` (or
``$MPC_DC_DATA``). Tests that need it skip with a reason when it is absent, except
in CI (``CI=true``), where its absence is an error: there they must run.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "mpc_dc_example_policies"
"""The example policy package (a separate distribution, docs/policies.md)."""

# CI replays the same examples every run (a landing must not hinge on a new draw);
# locally hypothesis keeps exploring fresh ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")


def shared_data_dir() -> Path:
    """Where the real public data is expected."""
    env = os.environ.get("MPC_DC_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skip (or fail in CI) when absent."""
    path = shared_data_dir()
    if not (path / "PROVENANCE.md").is_file():
        message = f"real public data not found at {path} (set MPC_DC_DATA or place ../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must run these tests")
        pytest.skip(message)
    return path


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example policy package importable and its entry points registered, as after
    ``pip install examples/mpc_dc_example_policies``, for one test: its folder on
    ``sys.path``, and a distribution whose ``entry_points.txt`` holds what its
    ``pyproject.toml`` declares."""
    from mpc_dc.policy import ENTRY_POINT_GROUP

    dist = tmp_path / "site" / "mpc_dc_example_policies-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mpc-dc-example-policies\n"
                                   "Version: 0.1.0\n", encoding="utf-8")
    declared = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    points = declared["project"]["entry-points"][ENTRY_POINT_GROUP]
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()),
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    yield
    for name in [m for m in sys.modules if m.startswith("mpc_dc_example_policies")]:
        del sys.modules[name]
