"""Benchmarks share the tests' data fixture; ``smoke`` tells the CI smoke mode apart."""

import pytest

from tests.conftest import shared_data, shared_data_dir

__all__ = ["is_smoke", "shared_data", "shared_data_dir", "smoke"]


def is_smoke(config: pytest.Config) -> bool:
    """True under ``--benchmark-disable`` (CI smoke: small sizes, one round)."""
    return bool(config.getoption("benchmark_disable", default=False))


@pytest.fixture
def smoke(request: pytest.FixtureRequest) -> bool:
    """:func:`is_smoke` of the current session."""
    return is_smoke(request.config)
