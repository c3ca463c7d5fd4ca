"""The fast layer under the DR programme's baseline (``site.dr.baseline = "prior_days"``).

The programme's baseline is announced during the run (:mod:`mpc_dc.sim.dr_program`), so it
is not in the exogenous data the plant reads: the plant must take the announced one, or
the fast layer bounds an event interval by a cap of 0 MW (it then adds nothing, and
keeps nothing the plan stops) instead of ``cap_fraction_of_baseline × baseline``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpc_dc.runner import build_policy, prepare
from mpc_dc.sim.engine import finish, simulation
from mpc_dc.sim.exogenous import CampusRealized
from mpc_dc.sim.fast_layer import CampusLimits
from mpc_dc.sim.plant import Setpoints
from mpc_dc.site.scenario import default_scenario, with_overrides


def test_fast_layer_is_bounded_by_the_announced_baseline() -> None:
    """A Sunday event on the embedded default (its Saturday is the reference day): every
    event interval's fast-layer limits were computed on the baseline the ledger settles."""
    scenario = with_overrides(default_scenario(), {
        "run.days": 3, "dr.days": ["2022-04-03"], "dr.start_hour": 12,
        "dr.end_hour": 14}, "test")
    assert scenario.site.dr.baseline == "prior_days"
    scenario, exo = prepare(scenario)
    policy = build_policy(scenario, exo)
    run = simulation(exo, policy, serving=scenario.serving.config(),
                     fast_layer=scenario.controller.fast_layer)
    env, loop = next(run)
    seen: dict[int, list[float]] = {}
    limits = loop.limits

    def recording(step: int, realized: Sequence[CampusRealized], starts: Sequence[Setpoints],
                  caps: Sequence[float | None]) -> CampusLimits:
        seen[step] = [r.dr_baseline_mw if r.dr_event else np.nan for r in realized]
        return limits(step, realized, starts, caps)

    loop.limits = recording  # type: ignore[method-assign]
    env.run()
    result = finish(run)
    led = result.ledger
    events = led[led["dr_event"].astype(bool)]
    # a campus that exported all its prior day's hours has a baseline of 0: others not
    assert (events["dr_baseline_mw"] > 0).any()
    for (step, campus), row in events.iterrows():
        c = list(loop.names).index(campus)
        k = int(row["step"])
        assert seen[k][c] == row["dr_baseline_mw"], (step, campus)
