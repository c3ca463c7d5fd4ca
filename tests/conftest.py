"""Shared fixtures.

``shared_data`` points at the real public data in ``../shared/data`` (or
``$MPC_DC_DATA``). Tests that need it skip with a reason when it is absent, except
in CI (``CI=true``), where its absence is an error: there they must run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]

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
