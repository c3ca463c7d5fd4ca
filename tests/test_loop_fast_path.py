"""The closed loop's per-step shortcuts change no result, bit for bit (issue 14).

The shortcuts: the forecasters' caches (:mod:`forecasters.memo`, among them the target
grid's cached slices), :meth:`~mpc_dc.problem.HorizonInputs.with_fields` (validates only
the fields it changes) and :meth:`~mpc_dc.control.mpc.MpcPolicy.may_reprovision`'s local
midnights converted once per run. Each run here is repeated on the straightforward path
(caches off, ``dataclasses.replace``, the local clock read at every step): a stale or
wrongly keyed shortcut hands the loop other values, and the ledgers part.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters.memo import disabled
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.problem import HorizonInputs
from mpc_dc.runner import run_scenario
from mpc_dc.sim.policy import Observation
from mpc_dc.site.scenario import Scenario
from tests.loop_cases import fleet_short, rcdc_short


@contextmanager
def straightforward(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every shortcut of the module docstring off inside the block."""

    def replaced(self: HorizonInputs, **changes: Any) -> HorizonInputs:
        return dataclasses.replace(self, **changes)

    def on_the_clock(self: MpcPolicy, obs: Observation) -> bool:
        local = pd.Timestamp(obs.time).tz_convert(self._tz)
        return obs.step == 0 or (local.hour == 0 and local.minute == 0)

    with monkeypatch.context() as patch, disabled():
        patch.setattr(HorizonInputs, "with_fields", replaced)
        patch.setattr(MpcPolicy, "may_reprovision", on_the_clock)
        yield


def _kpis(outcome: Any) -> dict[str, Any]:
    """The run's KPIs less those measured on the wall clock."""
    return {k: v for k, v in outcome.result.kpis.items()
            if not (k.endswith("_s") or "time" in k or "wall" in k)}


CASES = {
    # SARIMAX forecasts (price, wind, workload), the work_nd quantile reserve: 2 days.
    "rcdc": lambda: rcdc_short(days=2.0),
    # A fleet without switching (re-sized at local midnights only), across one.
    "fleet_midnight": lambda: fleet_short(days=0.5, overrides={
        "run.start": "2022-04-04T01:00:00Z", "fleet.flexibility": "S3"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loop_shortcuts_change_no_result(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario: Scenario = CASES[case]()
    fast = run_scenario(scenario)
    with straightforward(monkeypatch):
        plain = run_scenario(scenario)
    pd.testing.assert_frame_equal(fast.result.ledger, plain.result.ledger, check_exact=True)
    assert _kpis(fast) == _kpis(plain)


def _inputs() -> HorizonInputs:
    rng = np.random.default_rng(1)
    H = 8
    return HorizonInputs(rng.uniform(0, 5, (2, H)), rng.normal(40, 9, (1, H)),
                         rng.normal(30, 9, (1, H)), rng.uniform(0, 400, (1, H)),
                         rng.uniform(0, 1, (1, H)), rng.uniform(0, 3, (1, H)),
                         dr_event=np.zeros((1, H)), dr_baseline_mw=np.zeros((1, H)))


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(HorizonInputs)])
def test_with_fields_is_replace(name: str) -> None:
    inputs = _inputs()
    before = dataclasses.asdict(inputs)
    current = getattr(inputs, name)
    value = 0.3 if current is None or np.ndim(current) == 0 else np.asarray(current) * 0.5
    # Any: the field is picked at run time, so its value's type is not known statically.
    change: dict[str, Any] = {name: value}
    got, want = inputs.with_fields(**change), dataclasses.replace(inputs, **change)
    for field in dataclasses.fields(HorizonInputs):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and not a.flags.writeable
            np.testing.assert_array_equal(a, b)
            assert a.shape == b.shape
        else:
            assert a == b
    # the original is left alone (a copy, not the same object changed)
    np.testing.assert_equal(dataclasses.asdict(inputs), before)


@pytest.mark.parametrize(("name", "bad"), [
    ("work_nd_wu", -1.0), ("renewable_cf", 1.5), ("demand_tokens_per_s", -2.0),
    ("import_price_usd_per_mwh", np.nan), ("dr_event", np.inf),
    ("dr_reward_usd_per_kwh", -0.1), ("carbon_gco2_per_kwh", np.ones((2, 8))),
])
def test_with_fields_rejects_what_the_constructor_rejects(name: str, bad: object) -> None:
    inputs = _inputs()
    value = bad if isinstance(bad, np.ndarray) or name.endswith("_per_kwh") else np.full(
        np.shape(getattr(inputs, name)), bad)
    # Any: the field is picked at run time, so its value's type is not known statically.
    change: dict[str, Any] = {name: value}
    with pytest.raises(ValueError) as want:
        dataclasses.replace(inputs, **change)
    with pytest.raises(ValueError) as got:
        inputs.with_fields(**change)
    assert str(got.value) == str(want.value)
    with pytest.raises(TypeError, match="unknown field"):
        inputs.with_fields(work_nd=np.zeros((1, 8)))
