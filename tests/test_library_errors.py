"""Library functions given a site they cannot work on refuse it with a one-line
ValueError naming what was expected, not an AssertionError (which ``python -O``
would strip, leaving an AttributeError further on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from mpc_dc.benchmarking import ConstantFleetPolicy
from mpc_dc.control.baseline import rule_precision
from mpc_dc.site.config import Site
from mpc_dc.studies.rcdc import window_inputs
from tests.test_engine import MODEL, plant_campus


def _no_fleet() -> Site:
    """One campus, no fleet and no other IT."""
    campus = plant_campus(import_limit_mw=20.0, export_limit_mw=0.0)
    return Site(campuses=(replace(campus, other_it=None),))


@pytest.mark.parametrize(("call", "message"), [
    (lambda site: rule_precision(site, MODEL),
     f"rule_precision: the site has no fleet to serve '{MODEL}' on; expected a site with"),
    (lambda site: ConstantFleetPolicy(site, 1.0),
     "ConstantFleetPolicy: the site has no fleet to hold instances of; expected a site"),
    # the campus is checked before the data are read
    (lambda site: window_inputs(None, site, day=0),  # type: ignore[arg-type]
     "window_inputs: campus 'P' has no other IT; expected the RCDC campus"),
])
def test_a_site_without_what_is_needed_is_refused(call: Callable[[Site], Any],
                                                  message: str) -> None:
    with pytest.raises(ValueError, match="^" + message) as err:
        call(_no_fleet())
    assert "\n" not in str(err.value)
