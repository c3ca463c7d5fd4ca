"""Benchmarks share the tests' data fixture."""

from tests.conftest import shared_data, shared_data_dir

__all__ = ["shared_data", "shared_data_dir"]
