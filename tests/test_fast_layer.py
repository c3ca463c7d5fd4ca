"""The fast layer inside the interval (``mpc_dc/sim/fast_layer.py``): hand-checked bursts on
a tiny site (instances started, their warm-up), the DR cap and the quality budget it
keeps, the levers it needs, fluid fidelity, causality, the off switch and the scenario
keys.

The tiny site: instances of 10 slots on the flat curve of round figures (every request
takes 0.01 s of prefill and 999 decode steps of 0.01 s, about 10 s; an instance serves
about one request a second; idle 1 kW, full 1.5 kW), ready 60 s after they are committed;
requests of 100 prompt and 1000 output tokens arrive at 3 per second from 60 s to 300 s
(720 in all), far beyond the one instance the scripted plan commits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.params.quant_table import QuantTable, load_quant_table
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import CampusRealized, SiteExogenous, column, demand_columns
from mpc_dc.sim.fast_layer import FastLayerConfig
from mpc_dc.sim.faults import FaultInjector, FaultSpec
from mpc_dc.sim.plant import CampusPlant
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision
from mpc_dc.sim.serving import BatchCurve, RequestMix, ServingConfig
from mpc_dc.site.config import Campus, DemandResponse, Fleet, Grid, OtherIT, Renewable, Site
from mpc_dc.site.scenario import controller_variant, scenario_from_table
from tests.scripted_policy import Scripted
from tests.test_engine_regression import FLEET_FIGURES, fleet_case
from traces.errors import ConfigError

MODEL = "qwen3-8b"
START = pd.Timestamp("2022-06-01T04:00Z")
PUE = 1.25
FULL_W = 1500.0  # P(10) = 1000 W + 0.5 J / 0.01 s × 10
ON = FastLayerConfig(surge_window_s=0.0)
"""The periodic wake-ups alone: the hand-checks below act at the ticks (the surge
wake-up has tests of its own)."""


def hand_table(fp8_load_s: float = 60.0) -> QuantTable:
    """BF16 and FP8 (quality loss 0.3 points) rows of round figures (module docstring),
    FP8 ready ``fp8_load_s`` after it is committed; the GPU name has no fitted curve, so
    the pools run the flat curve."""
    base = load_quant_table()
    rows = tuple(replace(base.get(MODEL, q), idle_power_w=1000.0, marginal_energy_per_token_j=0.5,
                         max_batch=10, tokens_per_s_at_slo=1000.0, prefill_tokens_per_s=10_000.0,
                         load_time_s=load, gpus_per_instance=1, itl_slo_p90_ms=50.0,
                         quality_delta_pct_points=delta, gpu="hand-gpu")
                 for q, delta, load in (("BF16", 0.0, 60.0), ("FP8", -0.3, fp8_load_s)))
    return QuantTable(rows, "hand")


def burst(rate: float = 3.0, until: float = 300.0) -> RequestArrays:
    """Requests at ``rate`` per second from 60 s to ``until`` [s]."""
    arrival = 60.0 + np.arange(round((until - 60.0) * rate)) / rate
    n = arrival.size
    return RequestArrays.from_arrays(arrival, np.zeros(n), np.full(n, 100), np.full(n, 1000),
                                     (MODEL,))


def case(plan: dict[tuple[str, str, str], int], shares: dict[tuple[str, str, str], float],
         *, gpus: dict[str, int] | None = None, flexibility: str = "S2",
         precisions: tuple[str, ...] = ("BF16",), budget: float = 0.2,
         baseline_mw: float | None = None, requests: RequestArrays | None = None,
         steps: int = 2, fp8_load_s: float = 60.0) -> tuple[SiteExogenous, Scripted]:
    """The tiny site and a plan committing ``plan`` and ``shares`` every interval; a DR
    event with ``baseline_mw`` (cap = baseline) in the first interval when given."""
    gpus = gpus or {"W": 4}
    site = Site(campuses=tuple(Campus(name, "F", gpus=g, pue=PUE,
                                      grid=Grid(import_limit_mw=10.0))
                               for name, g in gpus.items()),
                fleet=Fleet(models=(MODEL,), flexibility=flexibility,
                            table=hand_table(fp8_load_s),
                            allowed_precisions=precisions, quality_budget_pct_points=budget),
                dr=DemandResponse(cap_fraction_of_baseline=1.0, baseline="s1_plan"))
    requests = requests if requests is not None else burst()
    index = pd.date_range(START, periods=steps, freq="15min", name="interval_start_utc")
    data: dict[str, Any] = {}
    for name in gpus:
        data[column("price_usd_per_mwh", name)] = 50.0
        data[column("carbon_gco2_per_kwh", name)] = 300.0
        if baseline_mw is not None:
            data[column("dr_event", name)] = [1.0] + [0.0] * (steps - 1)
            data[column("dr_baseline_mw", name)] = [baseline_mw] + [0.0] * (steps - 1)
    frame = pd.DataFrame(data, index=index).join(demand_columns(requests, index))
    exo = SiteExogenous(site, frame, START, steps, requests,
                        request_mix={MODEL: RequestMix(100.0, 1000.0, 1e6)})
    decision = Decision(fleet=FleetDecision(plan, shares))
    return exo, Scripted(lambda obs: decision)


W16 = ("W", MODEL, "BF16")
W8 = ("W", MODEL, "FP8")


def starts(result: RunResult) -> list[tuple[float, str, int]]:
    """(time [s], campus, count) of every instance start of the fast layer."""
    acts = result.fast_actions
    assert acts is not None
    rows = acts[acts["action"] == "start"]
    return [(float(t), str(c), int(n)) for t, c, n in
            zip(rows["time_s"], rows["campus"], rows["count"], strict=True)]


def in_service(result: RunResult, t: float) -> int:
    """Requests admitted and not finished at ``t`` [s]."""
    out = result.outcome
    assert out is not None
    finish = np.where(np.isnan(out.finish), np.inf, out.finish)
    return int(((out.start <= t) & (finish > t)).sum())


# ----------------------------------------------------------------------------- by hand


def test_burst_starts_instances_that_serve_after_their_warm_up() -> None:
    """The plan keeps one instance (ready at 60 s) through the burst; the layer wakes
    every 60 s and estimates the arrival rate over the last 60 s (``lookback_s``).

    * 60 s: nothing has arrived in [0, 60) yet: no action.
    * 120 s: 180 arrivals in [60, 120) (3 requests/s) and at least 119 queued (one
      instance admits about one request a second): it needs (3 + q / 300 s) / 0.85 ≥
      4.0 instances against 1: it starts 3 on the 3 free GPUs, ready at 180 s. Then the
      GPUs are full. (With the former 300-s window it saw 1.5 requests/s at 120 s and
      started 2, and the 4th only at 180 s.)

    The three started at 120 s serve nothing before 180 s and take 10 requests each at
    180.0 s; the interval's instance-seconds are 900 + 3 × 780 and its ready
    instance-seconds 840 + 3 × 720 (each ready 60 s after its start).
    """
    exo, policy = case({W16: 1}, {W16: 1.0})
    result = simulate(exo, policy, fast_layer=ON)
    assert starts(result) == [(120.0, "W", 3)]
    for t in np.arange(60.0, 180.0, 0.25):
        assert in_service(result, float(t)) <= 10, t
    out = result.outcome
    assert out is not None
    assert int((out.start == 180.0).sum()) == 30
    assert in_service(result, 180.0) == 40
    pools = result.pools
    assert pools is not None
    first = pools.iloc[0]
    assert first["instance_s"] == pytest.approx(900 + 3 * 780, abs=1e-9)
    assert first["ready_instance_s"] == pytest.approx(840 + 3 * 720, abs=1e-9)
    assert first["idle_energy_j"] == pytest.approx(1000.0 * 3240, abs=1e-6)
    assert first["fast_started"] == 3 and first["instances"] == 4
    assert result.ledger["fast_instances_started"].tolist() == [3.0, 0.0]
    k = result.kpis
    assert k["fast_instances_started"] == 3 and k["fast_layer_enabled"] is True
    # The plan sees the started instances at the next boundary, all ready by then.
    assert policy.observations[1].instances_running == {W16: 4}
    assert policy.observations[1].instances_starting == {W16: 0}
    exo, policy = case({W16: 1}, {W16: 1.0})
    off = simulate(exo, policy, fast_layer=replace(ON, enabled=False))
    assert off.kpis["fast_instances_started"] == 0 and off.fast_actions is None
    # One instance alone leaves the last of the 720 requests ~480 s in the queue.
    assert k["ttft_p99_s"] < off.kpis["ttft_p99_s"] / 4


def test_the_dr_cap_bounds_what_it_starts() -> None:
    """A DR event in the first interval caps the campus's import at 4.25 kW, i.e. the
    inference IT power may average 3.4 kW (PUE 1.25). At 120 s the interval has drawn
    about 148 kJ, the planned instance counts at its full 1.5 kW for the 780 s left:
    (3.4 kW × 900 s − 148 kJ − 780 s × 1.5 kW) / 780 s ≈ 2.2 kW, room for one more
    instance at 1.5 kW, not two; later the room is below 1.5 kW while the queue lasts.
    Without the event it starts 3. The import stays under the cap."""
    cap_mw = PUE * 3400.0 / 1e6
    exo, policy = case({W16: 1}, {W16: 1.0}, baseline_mw=cap_mw)
    capped = simulate(exo, policy, fast_layer=ON)
    assert starts(capped) == [(120.0, "W", 1)]
    led = capped.ledger
    assert led["dr_event"].iloc[0]
    assert led["import_mw"].iloc[0] <= cap_mw
    assert led["dr_penalty_usd"].sum() == 0.0
    exo, policy = case({W16: 1}, {W16: 1.0})
    free = simulate(exo, policy, fast_layer=ON)
    assert sum(n for _, _, n in starts(free)) == 3
    assert free.ledger["import_mw"].iloc[0] > cap_mw


def test_it_keeps_no_instance_into_a_dr_event_it_cannot_afford() -> None:
    """The burst runs through two intervals; the layer has 4 instances running at the
    end of the first. The second is a DR event capped at 4 kW (3.2 kW of inference IT)
    and the plan cuts back to one instance. Keeping the three it would stop is what the
    queue asks for, but four instances at full power (6 kW) exceed the cap: it keeps
    none at the boundary (the plan alone, one busy instance and three draining ones,
    imports ~2 kW), and starts only what fits later."""
    requests = burst(3.0, 1800.0)
    exo, policy = case({W16: 1}, {W16: 1.0}, requests=requests)
    frame = exo.frame.copy()
    frame[column("dr_event", "W")] = [0.0, 1.0]
    frame[column("dr_baseline_mw", "W")] = [0.0, PUE * 3200.0 / 1e6]
    exo = replace(exo, frame=frame)
    result = simulate(exo, policy, fast_layer=ON)
    led = result.ledger
    assert led["import_mw"].iloc[1] <= led["dr_baseline_mw"].iloc[1]
    assert led["dr_penalty_usd"].sum() == 0.0
    acts = result.fast_actions
    assert acts is not None
    assert not ((acts["action"] == "keep") & (acts["step"] == 1)).any()
    assert result.pools is not None and result.pools["instances"].iloc[0] == 4


@pytest.mark.parametrize("cause", ["gpu_loss", "outage"])
def test_fast_layer_never_starts_instances_on_lost_gpus(cause: str) -> None:
    """Half the campus's 4 GPUs are gone for the whole run: taken by an injected GPU loss
    (``[faults]``) or announced as an ``[[outages]]`` entry. The plan's one instance holds
    one of the 2 left, so the burst that starts 3 instances on 4 GPUs
    (:func:`test_burst_starts_instances_that_serve_after_their_warm_up`) starts one
    here, and no interval ever holds more than 2 instances."""
    exo, policy = case({W16: 1}, {W16: 1.0})
    faults = None
    if cause == "gpu_loss":
        faults = FaultInjector(FaultSpec(gpu_loss=1.0, gpu_loss_fraction=0.5,
                                         gpu_loss_intervals=8), exo, seed=0)
    else:
        frame = exo.frame.copy()
        frame[column("gpus_available", "W")] = 2.0
        exo = replace(exo, frame=frame)
    result = simulate(exo, policy, fast_layer=ON, faults=faults)
    assert sum(n for _, _, n in starts(result)) == 1
    pools = result.pools
    assert pools is not None
    assert pools["instances"].max() <= 2
    if faults is not None:
        assert result.kpis["faults_injected"]["gpu_loss"] == 1


def test_inference_headroom_is_the_plants_own_rule() -> None:
    """Headroom by hand, and executing at it imports exactly the cap, shedding nothing.

    Other IT doing 0.275 WU (F(P) = 1.1 P: 1 MW), battery charging 0.5 MW, renewable
    0.4 × 5 = 2 MW of which 1 MW committed curtailment (the plan imports), PUE 1.25,
    import limit 4 MW: no shedding while 1.25 (P + 1) + 0.5 − 2 ≤ 4, P ≤ 3.4 MW; a DR cap
    of 2 MW: 1.25 (P + 1) + 0.5 − (2 − 1) ≤ 2, P ≤ 1.0 MW.
    """
    campus = Campus(name="C", price_node="F", gpus=8, pue=1.25,
                    other_it=OtherIT(it_capacity_mw=4.0, deferrable_share=0.0),
                    renewable=Renewable(nameplate_mw=5.0), grid=Grid(import_limit_mw=4.0))
    from mpc_dc.site.config import Battery

    campus = replace(campus, battery=Battery(energy_mwh=4.0, power_mw=1.0))
    realized = CampusRealized(50.0, 50.0, 50.0, 300.0, 0.4, 0.275, True, 2.0, 8.0)
    decision = CampusDecision(battery_charge_mw=0.5, curtailed_mw=1.0, planned_import_mw=1.0)
    plant = CampusPlant(campus)
    start = plant.setpoints(decision, realized, None)
    assert plant.inference_headroom_mw(start) == pytest.approx(3.4)
    assert plant.inference_headroom_mw(start, 2.0) == pytest.approx(1.0)
    assert plant.inference_headroom_mw(start, 9.0) == pytest.approx(3.4)
    for inference, cap in ((3.4, 4.0), (1.0, 2.0)):
        record = CampusPlant(campus).execute(0, decision, realized, None, inference)
        assert record.import_mw == pytest.approx(cap)
        assert record.work_nd_unserved_wu == 0.0 and record.battery_charge_mw == 0.5


# ----------------------------------------------------------------------------- levers


def prefix_loss(result: RunResult) -> np.ndarray:
    """Mean quality loss of the first k routed requests of each interval, k = 1.., each
    interval's after the other's."""
    out = result.outcome
    assert out is not None
    per_pool = np.array([0.3 if p.key[2] == "FP8" else 0.0 for p in out.pools])
    found = []
    for step in range(int(out.end_s // 900.0)):
        mine = ((out.requests.arrival_s // 900.0) == step) & (out.pool >= 0)
        loss = per_pool[out.pool[mine]]
        found.append(np.cumsum(loss) / np.arange(1, loss.size + 1))
    return np.concatenate(found)


@pytest.mark.parametrize("budget", [0.1, 0.0, 10.0])
def test_precision_moves_stay_within_the_quality_budget(budget: float) -> None:
    """The plan sends everything to its one BF16 instance and keeps two FP8 instances
    (loss 0.3 points) idle; under S5 (quantization only) the layer may move new
    requests to FP8 but start nothing. The burst lasts into the second interval, whose
    first requests the layer moves from the boundary on. With a budget of 0.1 points at
    most a third of the requests may run at FP8, at every request of each interval
    (the second request of an interval may not move: 0.3 / 2 > 0.1); with none, none;
    with 10 points the layer moves what FP8's spare capacity takes, more than a third."""
    exo, policy = case({W16: 1, W8: 2}, {W16: 1.0}, flexibility="S5",
                       precisions=("BF16", "FP8"), budget=budget,
                       requests=burst(3.0, 1500.0))
    result = simulate(exo, policy, fast_layer=ON)
    k = result.kpis
    assert k["fast_instances_started"] == 0 and k["fast_requests_rerouted"] == 0
    loss = prefix_loss(result)
    if budget == 0.0:
        assert k["fast_precision_moves"] == 0 and loss.max() == 0.0
        return
    assert k["fast_precision_moves"] > 50
    assert k["quality_loss_max_pct_points"] <= budget + 1e-12
    if budget == 0.1:
        assert loss.max() <= 0.1 + 1e-12
    else:
        assert loss.max() > 0.1


def test_a_burst_starts_the_precision_ready_soonest() -> None:
    """FP8 loads in 30 s, BF16 in 60 s; switching and the quantization lever (S6, one
    campus of 8 GPUs), quality budget 10 points (FP8's 0.3 fits every request). The
    burst of the surge test: at 70 s the last 10 s hold 30 requests, a surge; the layer
    estimates 3 requests/s with ~20 queued at the one BF16 instance (0.85 requests/s),
    so 3 instances. The old layer started them at BF16, ready at 130 s; now at FP8,
    ready at 100 s, when it wakes, re-dispatches BF16's queue (this interval's
    requests, newest first) to them as far as they drain it sooner, and moves BF16's
    new requests there: the burst's requests wait 5.4 s on average instead of 17.4 s.
    At a periodic wake-up (no surge) it starts at the pool's own precision."""
    kw: dict[str, Any] = {"flexibility": "S6", "precisions": ("BF16", "FP8"), "budget": 10.0,
                          "fp8_load_s": 30.0}
    surge = replace(ON, surge_window_s=10.0)
    exo, policy = case({W16: 1}, {W16: 1.0}, **kw)
    result = simulate(exo, policy, fast_layer=surge)
    acts = result.fast_actions
    assert acts is not None
    started = acts[acts["action"] == "start"]
    assert started[["time_s", "precision", "count"]].values.tolist() == [[70.0, "FP8", 3]]
    moved = acts[acts["action"].isin(["move", "requeue"])]
    assert float(moved["time_s"].min()) == 100.0
    assert set(moved[moved["time_s"] == 100.0]["action"]) == {"move", "requeue"}
    assert set(moved["to_precision"]) == {"FP8"}
    exo, policy = case({W16: 1}, {W16: 1.0}, **kw)
    own = simulate(exo, policy, fast_layer=replace(surge, soonest_precision=False))
    own_acts = own.fast_actions
    assert own_acts is not None
    own_started = own_acts[own_acts["action"] == "start"]
    assert own_started[["time_s", "precision", "count"]].values.tolist() == [[70.0, "BF16", 3]]
    out, old = result.outcome, own.outcome
    assert out is not None and old is not None
    assert np.nanmean(out.start - out.requests.arrival_s) < 0.5 * np.nanmean(
        old.start - old.requests.arrival_s)
    exo, policy = case({W16: 1}, {W16: 1.0}, **kw)
    periodic = simulate(exo, policy, fast_layer=ON).fast_actions
    assert periodic is not None
    assert periodic[periodic["action"] == "start"][["time_s", "precision", "count"]
                                                   ].values.tolist() == [[120.0, "BF16", 3]]


def test_sooner_precision_starts_stay_within_the_quality_budget() -> None:
    """As above with a budget of 0.1 points: FP8 may serve a third of the requests, 3 ×
    0.1 / 0.3 = 1 request/s at the surge (70 s), one whole FP8 instance (0.85); the
    other ≈ 1.7 requests/s short start at BF16. Every prefix of an interval's requests
    stays within the budget, the queued requests re-dispatched to FP8 included."""
    exo, policy = case({W16: 1}, {W16: 1.0}, flexibility="S6", precisions=("BF16", "FP8"),
                       budget=0.1, fp8_load_s=30.0)
    result = simulate(exo, policy, fast_layer=replace(ON, surge_window_s=10.0))
    acts = result.fast_actions
    assert acts is not None
    first = acts[(acts["action"] == "start") & (acts["time_s"] == 70.0)]
    found = dict(zip(first["precision"], first["count"], strict=True))
    assert found == {"FP8": 1, "BF16": 2}
    assert ((acts["action"] == "requeue") & (acts["to_precision"] == "FP8")).any()
    assert prefix_loss(result).max() <= 0.1 + 1e-12
    assert result.kpis["quality_loss_max_pct_points"] <= 0.1 + 1e-12


def test_requeues_and_moves_draw_on_one_quality_ledger() -> None:
    """The two paths that send requests to FP8 (loss 0.3 points) inside an interval,
    re-dispatching queues (d) and moving new requests (b, c) into the instance the surge
    started at FP8, draw on one ledger: together they add at most the budget (0.1
    points) times the interval's requests so far. Run as in the test above (3
    requests/s from 60 s, the FP8 instance ready at 100 s). By hand: at 100 s, 120
    requests have arrived, so the re-dispatch may take 0.1 × 120 / 0.3 = 40 of the
    queue and no more; the moves of new requests then get only what later arrivals
    add. Checked on the action log (each action's count against the arrivals before
    the next action, which bound the requests it covers) and request by request."""
    budget, fp8_loss = 0.1, 0.3
    exo, policy = case({W16: 1}, {W16: 1.0}, flexibility="S6", precisions=("BF16", "FP8"),
                       budget=budget, fp8_load_s=30.0)
    result = simulate(exo, policy, fast_layer=replace(ON, surge_window_s=10.0))
    acts = result.fast_actions
    assert acts is not None
    to_fp8 = acts[(acts["to_precision"] == "FP8") & (acts["step"] == 0)]
    assert {"move", "requeue"} <= set(to_fp8["action"])
    first = to_fp8[to_fp8["time_s"] == 100.0].set_index("action")["count"]
    assert first["requeue"] == 40.0
    assert isinstance(exo.requests, RequestArrays)
    arrivals = exo.requests.arrival_s
    times = sorted(set(to_fp8["time_s"]))
    for t, after in zip(times, [*times[1:], 900.0], strict=True):
        added = fp8_loss * float(to_fp8.loc[to_fp8["time_s"] <= t, "count"].sum())
        assert added <= budget * int((arrivals < after).sum()) + 1e-9, t
    assert prefix_loss(result).max() <= budget + 1e-12


@pytest.mark.parametrize(("flexibility", "moves"), [("S3", True), ("S1", False)])
def test_reroutes_to_another_campus_only_with_the_spatial_lever(flexibility: str,
                                                                moves: bool) -> None:
    """All requests go to campus A's one instance; campus B keeps two idle. With the
    spatial lever (S3) the layer sends new requests to B, without it (S1) it cannot;
    neither may start instances (no switching)."""
    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    exo, policy = case({a: 1, b: 2}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility=flexibility)
    result = simulate(exo, policy, fast_layer=ON)
    k = result.kpis
    assert k["fast_instances_started"] == 0 and k["fast_precision_moves"] == 0
    led = result.ledger.xs("A", level="campus")
    if moves:
        assert k["fast_requests_rerouted"] > 100
        assert led["fast_requests_rerouted"].sum() == k["fast_requests_rerouted"]
        exo, policy = case({a: 1, b: 2}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S1")
        assert k["ttft_p99_s"] < simulate(exo, policy, fast_layer=ON).kpis["ttft_p99_s"] / 2
    else:
        assert k["fast_requests_rerouted"] == 0


def test_a_surge_wakes_it_before_the_next_tick() -> None:
    """The burst of the first test, with the surge wake-up (``surge_window_s`` = 10
    s): after the wake-up at 60 s (nothing arrived, so it acted on 0 requests/s) the
    one ready instance serves 0.85 requests/s, so 10 s of arrivals beyond
    8.5 + 3 √8.5 ≈ 17.2 requests is a surge. At 70 s the last 10 s hold 30: it wakes,
    estimates 3 requests/s (30 in 10 s; the 60-s window shows 0.5), needs (3 + q / 300
    s) / 0.85 ≥ 3.6 instances with q ≈ 20 queued and starts 3, 50 s before the tick at
    120 s where it started them without the surge wake-up."""
    exo, policy = case({W16: 1}, {W16: 1.0})
    surge = simulate(exo, policy, fast_layer=replace(ON, surge_window_s=10.0))
    assert starts(surge) == [(70.0, "W", 3)]
    exo, policy = case({W16: 1}, {W16: 1.0})
    periodic = simulate(exo, policy, fast_layer=ON)
    assert starts(periodic) == [(120.0, "W", 3)]
    assert surge.kpis["ttft_p99_s"] < periodic.kpis["ttft_p99_s"]


def test_it_moves_load_to_instances_it_started_once_they_are_ready() -> None:
    """Campus A's one GPU holds the plan's instance, which gets every request; B has 4
    free GPUs (switching and spatial levers, S4); wake-ups every 45 s on the last 45 s.
    At 90 s it sees 2 requests/s and ~60 queued: (2 + 60 / 300) − 0.85 is 2 instances
    short, none fit at A, so it starts 2 at B, ready at 150 s. It wakes then, between
    the ticks at 135 and 180 s, to move A's requests (new and queued) to them."""
    a = ("A", MODEL, "BF16")
    exo, policy = case({a: 1}, {a: 1.0}, gpus={"A": 1, "B": 4}, flexibility="S4")
    result = simulate(exo, policy, fast_layer=replace(ON, period_s=45.0, lookback_s=45.0))
    assert starts(result)[0] == (90.0, "B", 2)
    acts = result.fast_actions
    assert acts is not None
    moved = acts[acts["action"].isin(["move", "requeue"])]
    assert float(moved["time_s"].min()) == 150.0
    assert set(moved[moved["time_s"] == 150.0]["action"]) == {"move", "requeue"}


def test_queued_requests_go_where_they_drain_soonest() -> None:
    """Campus A's one instance gets every request; campus B keeps four idle (spatial
    lever only, S3). At 120 s the layer sees 3 requests/s and ``q`` ≈ 120 queued at A
    (one instance admits about one a second from 70 s). Drain rates by the plan's
    shares: A 0.85 − 3 < 0, B 4 × 0.85 − 0: A should hold none of the queue, so all
    ``q`` move to B, where 40 slots are free: 40 of them start at 120.0 s, the rest
    within (q − 40) / 4 s ≈ 20 s (B admits about 4 a second, its queue first), so every
    request that arrived before 120 s has started by 180 s. Without the re-dispatch
    (the old layer) A's whole queue waits for its one instance, the last until ~240 s
    (B gets only A's new requests)."""
    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    exo, policy = case({a: 1, b: 4}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S3")
    result = simulate(exo, policy, fast_layer=ON)
    acts = result.fast_actions
    out = result.outcome
    assert acts is not None and out is not None
    early = out.requests.arrival_s < 120.0
    assert float(np.nanmax(out.start[early])) < 180.0
    at_b = out.pool == [spec.key for spec in out.pools].index(b)
    assert int((at_b & (out.start == 120.0)).sum()) == 40
    queued = int((early & ~(out.start < 120.0)).sum())
    assert 119 <= queued <= 125
    first = acts[(acts["action"] == "requeue") & (acts["time_s"] == 120.0)]
    assert first[["campus", "to_campus", "count"]].values.tolist() == [["A", "B", queued]]


def test_fluid_acts_at_the_boundary_on_the_last_interval() -> None:
    """Fluid serving has no arrival times inside an interval: the layer acts at the
    boundaries only. At 900 s it sees the first interval's 720 requests (0.8 /s) and the
    backlog the one instance left, and starts instances, ready at 960 s."""
    exo, policy = case({W16: 1}, {W16: 1.0}, requests=burst(3.0, 600.0), steps=3)
    result = simulate(exo, policy, serving=ServingConfig(fidelity="fluid"), fast_layer=ON)
    found = starts(result)
    assert found and all(t % 900.0 == 0.0 for t, _, _ in found)
    assert found[0][0] == 900.0
    n = found[0][2]
    pools = result.pools
    assert pools is not None
    assert pools["ready_instance_s"].iloc[1] == pytest.approx(900.0 + n * (900.0 - 60.0))
    assert pools["instance_s"].iloc[1] == pytest.approx(900.0 * (1 + n))


def event_at_b(cap_mw: float | None, fidelity: str) -> RunResult:
    """Spatial lever only (S3): every request goes to campus A's one instance, 3 a second
    arrive from 60 s until 1800 s; B keeps two idle instances; the second interval is a
    DR event at B with a cap of ``cap_mw`` [MW] (None: no event)."""
    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    exo, policy = case({a: 1, b: 2}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S3",
                       requests=burst(3.0, 1800.0))
    frame = exo.frame.copy()
    frame[column("dr_event", "B")] = [0.0, 0.0 if cap_mw is None else 1.0]
    frame[column("dr_baseline_mw", "B")] = [0.0, cap_mw or 0.0]
    return simulate(replace(exo, frame=frame), policy,
                    serving=ServingConfig(fidelity=fidelity), fast_layer=ON)


def test_fluid_moves_nothing_into_a_campus_holding_a_dr_cap() -> None:
    """Fluid, spatial lever only (S3): every request goes to campus A's one instance
    (about 0.85 requests/s), 3 a second arrive until 1800 s; B keeps two idle instances.
    The second interval is a DR event at B, cap 2.75 kW: its two instances idle at
    2 × 1 kW × PUE 1.25 = 2.5 kW. At 900 s the layer sees 2.8 requests/s at A. Moved to
    B, ~1.7 requests/s of ~10 s each keep ~17 of its 20 slots busy, ~2.85 kW of IT,
    ~3.6 kW imported, above the cap; at fluid fidelity nothing inside the interval caps
    them, so it moves none there and B imports its idle 2.5 kW. Outside the event the
    same layer moves A's requests to B."""
    cap_mw = 2.75e-3
    held = event_at_b(cap_mw, "fluid")
    led = held.ledger.xs("B", level="campus")
    assert led["dr_committed_cap_mw"].iloc[1] == pytest.approx(cap_mw)
    assert led["import_mw"].iloc[1] == pytest.approx(2 * 1000.0 * PUE / 1e6)
    assert held.kpis["dr_compliance"] == 1.0
    assert held.kpis["fast_requests_rerouted"] == 0.0
    free = event_at_b(None, "fluid")
    assert free.kpis["fast_requests_rerouted"] > 1000.0
    assert free.ledger.xs("B", level="campus")["import_mw"].iloc[1] > 3.4e-3


def test_request_level_moves_nothing_into_a_pool_its_dr_cap_holds() -> None:
    """Request level, spatial lever only (S3): every request goes to campus A's one instance, 3
    a second until 1800 s; B keeps two idle instances. The second interval is a DR event
    at B, cap 2.55 kW: its two instances idle at 2 × 1 kW × PUE 1.25 = 2.5 kW, so the
    cap leaves B 40 W of IT (2.04 kW) beyond its idle draw, less than one slot's 50 W on
    each instance: the cap (:meth:`FastLayer._hold_cap`) holds B's pool at batch 0 (at
    1 in the last minutes, on the energy its idle draw left unused). A is short (3
    requests/s against ~0.85), B's ready instances look spare: the old layer moved A's
    new requests there, where they waited unserved to the run's end (the DR week's 19:45
    on 9 July, docs/fleet_closed_loop.md). No shortfall move goes into a campus whose DR
    cap holds a pool under a power cap: A's requests stay at A. Outside the event, and
    in one with a cap of 3.8 kW (B's two instances at their full batch, 3 kW of IT, fit
    its 3.04 kW), the same layer moves A's requests to B, which serves them (all
    but those arriving in the last minute or so, queued at the run's end)."""
    b = ("B", MODEL, "BF16")
    cap_mw = 2.55e-3

    def at_b_in_event(result: RunResult) -> tuple[int, int]:
        """Requests arriving in the second interval routed to B, and those of them that
        never started."""
        out = result.outcome
        assert out is not None
        mine = (out.pool == [spec.key for spec in out.pools].index(b)) & (
            out.requests.arrival_s >= 900.0)
        return int(mine.sum()), int((mine & np.isnan(out.start)).sum())

    held = event_at_b(cap_mw, "request")
    assert held.ledger.xs("B", level="campus")["dr_committed_cap_mw"].iloc[1] == (
        pytest.approx(cap_mw))
    acts = held.fast_actions
    assert acts is not None
    caps = acts[(acts["action"] == "cap") & (acts["campus"] == "B") & (acts["step"] == 1)]
    # B held at batch 0 until 1560 s, then at 1 (its idle draw below the cap banked
    # energy the rest of the interval may draw)
    early = caps["time_s"] < 1560.0
    assert early.sum() >= 11 and (caps["count"][early] == 0).all()
    assert (caps["count"] <= 2).all()
    assert held.kpis["dr_compliance"] == 1.0
    moved = acts[(acts["action"] == "move") & (acts["to_campus"] == "B") & (acts["step"] == 1)]
    routed, waiting = at_b_in_event(held)
    assert (float(moved["count"].sum()), routed, waiting) == (0.0, 0, 0)
    for cap in (None, 3.8e-3):
        free = event_at_b(cap, "request")
        routed, waiting = at_b_in_event(free)
        assert routed > 1000 and waiting < routed / 10  # the last ones queue at the run end
        assert free.kpis["dr_capped_s"] == 0.0
    assert free.kpis["dr_compliance"] == 1.0


def event_at_a(cap_mw: float) -> RunResult:
    """:func:`event_at_b` with the DR event at A instead: every request goes to A's one
    instance (about 1 request/s against 3 arriving), B keeps two instances with room; the
    second interval is an event at A with a cap of ``cap_mw`` [MW]."""
    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    exo, policy = case({a: 1, b: 2}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S3",
                       requests=burst(3.0, 1800.0))
    frame = exo.frame.copy()
    frame[column("dr_event", "A")] = [0.0, 1.0]
    frame[column("dr_baseline_mw", "A")] = [0.0, cap_mw]
    return simulate(replace(exo, frame=frame), policy, fast_layer=ON)


def test_a_power_cap_takes_no_credit_for_the_requests_it_moves_away() -> None:
    """:func:`event_at_a`, cap 1.8625 kW: 1.49 kW of IT at PUE 1.25, 10 W less than the
    1.5 kW A's instance draws at 900 s, its 10 slots full and its queue long. Step 2
    moves A's new requests to B as far as the 10-W excess asks (500 W per request/s at
    the full batch: 0.02 requests/s). The old layer credited that 10 W to the power cap
    (its target what is left plus the moves' relief, 1.5 kW): the bound at the full
    batch fit, no cap was set, and the queue kept the instance full all interval, 1.4999
    kW of IT, 1.8748 kW imported against the 1.8625-kW cap (the dr-event-day scorecard's
    ZP26 rows 0.27-0.94 % over ``K``, docs/fleet_closed_loop.md). The bound holds
    whatever arrives, so arrivals moved away lower it by nothing: it must fit the 1.49 kW
    left itself. At 900 s the 10 requests the instance holds already exceed that, so its
    cap is 0 (the occupancy carried in, module docstring), it drains, and the energy its
    lower draw leaves unused lets the later wake-ups lift the cap: the row ends under its
    cap, and A's requests still move to B."""
    cap_mw = 1.49e-3 * PUE
    result = event_at_a(cap_mw)
    out = result.outcome
    assert out is not None
    a = [spec.key for spec in out.pools].index(("A", MODEL, "BF16"))
    finish = np.where(np.isnan(out.finish), np.inf, out.finish)
    assert int(((out.pool == a) & (out.start <= 900.0) & (finish > 900.0)).sum()) == 10
    led = result.campus_ledger("A")
    assert led["dr_committed_cap_mw"].iloc[1] == pytest.approx(cap_mw)
    assert led["import_mw"].iloc[1] <= cap_mw * (1 + 1e-9)
    assert result.kpis["dr_compliance"] == 1.0
    acts = result.fast_actions
    assert acts is not None
    caps = acts[(acts["action"] == "cap") & (acts["step"] == 1)]
    assert caps[caps["time_s"] == 900.0]["count"].tolist() == [0]
    moved = acts[(acts["action"] == "move") & (acts["to_campus"] == "B") & (acts["step"] == 1)]
    assert moved["count"].sum() > 0


def held_over_a_cap(period_s: float, long_tokens: int | np.ndarray = 50_000, *,
                    cap_mw: float = 3.25e-3, stop_bf16: bool = False) -> RunResult:
    """Quantization lever only (S5), one campus, one BF16 and one FP8 instance (2 GPUs).
    FP8 serves twice as fast at half the energy per token (2000 tokens/s at the SLO, 0.25
    J/token: the same 50 W a slot, twice the requests/s a slot). Interval 0 sends every
    request to BF16: 10 of 50,000 output tokens (``long_tokens``, one figure or one
    each) arrive at 800-809 s and fill its 10 slots until ~1300 s. Interval 1, a DR
    event with cap ``cap_mw`` (3.25 kW: 2.6 kW of IT at PUE 1.25), sends every request
    to FP8, 3 a second of 1000 tokens (more than it serves); ``stop_bf16``: and commits
    no BF16 instance (it drains)."""
    table = hand_table()
    fast = replace(table.get(MODEL, "FP8"), tokens_per_s_at_slo=2000.0,
                   marginal_energy_per_token_j=0.25)
    table = QuantTable((table.get(MODEL, "BF16"), fast), "hand")
    site = Site(campuses=(Campus("W", "F", gpus=2, pue=PUE, grid=Grid(import_limit_mw=10.0)),),
                fleet=Fleet(models=(MODEL,), flexibility="S5", table=table,
                            allowed_precisions=("BF16", "FP8")),
                dr=DemandResponse(cap_fraction_of_baseline=1.0, baseline="s1_plan"))
    long = 800.0 + np.arange(10.0)
    short = 900.0 + np.arange(2700) / 3.0
    n = long.size + short.size
    requests = RequestArrays.from_arrays(
        np.concatenate([long, short]), np.zeros(n), np.full(n, 100),
        np.concatenate([np.broadcast_to(long_tokens, long.shape), np.full(short.size, 1000)]),
        (MODEL,))
    index = pd.date_range(START, periods=2, freq="15min", name="interval_start_utc")
    frame = pd.DataFrame({column("price_usd_per_mwh", "W"): 50.0,
                          column("carbon_gco2_per_kwh", "W"): 300.0,
                          column("dr_event", "W"): [0.0, 1.0],
                          column("dr_baseline_mw", "W"): [0.0, cap_mw]}, index=index)
    exo = SiteExogenous(site, frame.join(demand_columns(requests, index)), START, 2, requests,
                        request_mix={MODEL: RequestMix(100.0, 1000.0, 1e6)})
    policy = Scripted(lambda obs: Decision(fleet=FleetDecision(
        {W16: 0 if stop_bf16 and obs.step else 1, W8: 1},
        {W16: 1.0} if obs.step == 0 else {W8: 1.0})))
    return simulate(exo, policy, fast_layer=FastLayerConfig(period_s=period_s,
                                                            surge_window_s=0.0))


@pytest.mark.parametrize("period_s", [900.0, 60.0])
def test_a_power_cap_counts_the_requests_an_instance_already_holds(period_s: float) -> None:
    """:func:`held_over_a_cap`. At 900 s BF16 holds 10 requests for ~400 s more, FP8 none.
    The caps must fit what both pools may draw until the next wake-up in 2.6 kW: the two
    idle draws and BF16's running requests take 2.5 kW whatever its cap (a cap stops
    admissions, not running requests), so FP8 may admit two requests (2.6 kW, the cap
    itself; the layer's old 1 % reserve, 2.574 kW, let it admit one). The old bound
    counted each instance at its new cap only, ``P0 + 50 W × b``: it capped BF16 at 1
    (stopping nothing) and left FP8 its 10 slots, 3 kW of IT while BF16's requests ran.
    With one wake-up (``period_s`` 900, the cap holds the whole interval) the old layer
    drew 2.72 kW of IT, 3.40 kW imported against the 3.25-kW cap;
    with a wake-up a minute its later caps made up for it (3.09 kW), as they can for any
    window but the interval's last (the DR week's row 0.2 W over its cap, capped at
    840 s: docs/fleet_closed_loop.md). Now the row ends under its cap either way (2.91
    and 3.17 kW) and FP8's first cap is 2."""
    result = held_over_a_cap(period_s)
    led = result.campus_ledger("W")
    assert led["dr_committed_cap_mw"].iloc[1] == pytest.approx(3.25e-3)
    assert led["import_mw"].iloc[1] <= 3.25e-3 * (1 + 1e-9)
    assert result.kpis["dr_compliance"] == 1.0
    acts = result.fast_actions
    assert acts is not None
    caps = acts[(acts["action"] == "cap") & (acts["step"] == 1)]
    first = caps[caps["time_s"] == 900.0].set_index("precision")["count"]
    assert first["FP8"] == 2



def test_the_dr_cap_reads_a_pool_serving_left_behind_as_it_is_now() -> None:
    """:func:`held_over_a_cap` with BF16's 10 requests of 15,000 tokens: they end at
    ~950 s and BF16 gets nothing more, so serving leaves its pool where it was at 900 s
    (neither a queue nor new requests). Read there, it held 10 requests at every
    wake-up: the old layer counted 500 W of active power it no longer drew in the
    energy so far and held FP8 ever tighter (at 0 from 1560 s; 863 requests admitted,
    2.84 kW imported against the 3.25-kW cap), and with the bound counting the requests
    an instance holds it held FP8 at 1 to 5 the whole interval (348 admitted, 2.66 kW).
    Read as it is at the wake-up (the server's readers bring it there), FP8 admits 1,662
    and the row stays under its cap (3.13 kW)."""
    result = held_over_a_cap(60.0, long_tokens=15_000)
    assert result.kpis["dr_compliance"] == 1.0
    assert result.pools is not None
    started = result.pools.xs(("W", MODEL, "FP8"), level=("campus", "model", "precision"))
    assert started["started"].iloc[1] > 1500

def test_the_import_limit_reads_a_pool_serving_left_behind_as_it_is_now() -> None:
    """Import limit 4.25 kW (3.4 kW of inference IT at PUE 1.25, no other load), 8 GPUs,
    no DR event. Interval 0 sends 10 requests of 10,000 tokens (100 s each) at 800-809 s
    to one FP8 instance; interval 1 stops it (it drains: its requests end at 900.1-909 s,
    then it is off) and sends a burst of 3 requests/s of 1000 tokens from 960 s to the one
    BF16 instance (1 request/s); FP8 is beyond the quality budget, so the FP8 pool gets
    nothing and serving leaves it where it was at 900 s. At 1020 s the campus has drawn
    about 159 kJ (BF16: 120 kJ idle, ~28 kJ running the burst; FP8: ~11 kJ until 909 s):
    (3.4 kW × 900 s − 159 kJ − 780 s × 1.5 kW) / 780 s ≈ 2.2 kW, room for one BF16 at its
    full 1.5 kW. Read at its 900-s state, the FP8 instance was still on with its 10
    requests: 1.5 kW counted on since 900 s in the energy so far (~328 kJ) and at full
    power for the rest of the interval, ≈ 0.5 kW of room: the old layer started nothing
    at 1020 s (its one start came at 1560 s) and imported 2.31 kW over the interval."""
    site = Site(campuses=(Campus("W", "F", gpus=8, pue=PUE,
                                 grid=Grid(import_limit_mw=PUE * 3400.0 / 1e6)),),
                fleet=Fleet(models=(MODEL,), flexibility="S6", table=hand_table(600.0),
                            allowed_precisions=("BF16", "FP8"), quality_budget_pct_points=0.2))
    long = 800.0 + np.arange(10.0)
    burst_at = 960.0 + np.arange(1620) / 3.0
    n = long.size + burst_at.size
    requests = RequestArrays.from_arrays(
        np.concatenate([long, burst_at]), np.zeros(n), np.full(n, 100),
        np.concatenate([np.full(long.size, 10_000), np.full(burst_at.size, 1000)]), (MODEL,))
    index = pd.date_range(START, periods=2, freq="15min", name="interval_start_utc")
    frame = pd.DataFrame({column("price_usd_per_mwh", "W"): 50.0,
                          column("carbon_gco2_per_kwh", "W"): 300.0}, index=index)
    exo = SiteExogenous(site, frame.join(demand_columns(requests, index)), START, 2, requests,
                        request_mix={MODEL: RequestMix(100.0, 1000.0, 1e6)})
    policy = Scripted(lambda obs: Decision(fleet=FleetDecision(
        {W16: 1, W8: 1 if obs.step == 0 else 0}, {W8: 1.0} if obs.step == 0 else {W16: 1.0})))
    result = simulate(exo, policy, fast_layer=ON)
    out = result.outcome
    assert out is not None
    assert out.finish[9] == pytest.approx(909.0)  # the FP8 instance is off from here
    assert starts(result)[0] == (1020.0, "W", 1)
    assert result.ledger["import_mw"].iloc[1] <= PUE * 3400.0 / 1e6


# ----------------------------------------------------------------------------- causality


def poisoned_burst(after: float) -> RequestArrays:
    """:func:`burst` up to ``after`` [s], then 10 requests/s of 3000 output tokens."""
    clean = burst()
    keep = clean.arrival_s < after
    late = after + np.arange(1500) / 10.0
    n = late.size
    return RequestArrays.from_arrays(
        np.concatenate([clean.arrival_s[keep], late]), np.zeros(keep.sum() + n),
        np.concatenate([clean.request_tokens[keep], np.full(n, 100)]),
        np.concatenate([clean.response_tokens[keep], np.full(n, 3000)]), (MODEL,))


def test_poisoned_future_arrivals_do_not_change_earlier_actions() -> None:
    """Requests arriving from 150 s on (between two wake-ups) replaced by a heavier
    stream: every start and re-dispatch before 150 s and the pool of every request admitted before
    150 s (the moves to campus B) are the same; after it the layer reacts differently
    (a request still queued at 150 s may be re-dispatched later, on what arrived by
    then)."""
    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    results = []
    for requests in (burst(), poisoned_burst(150.0)):
        exo, policy = case({a: 1, b: 1}, {a: 1.0}, gpus={"A": 8, "B": 8}, flexibility="S4",
                           requests=requests)
        results.append(simulate(exo, policy, fast_layer=ON))
    clean, dirty = results
    before = [s for s in starts(clean) if s[0] < 150.0]
    assert before and before == [s for s in starts(dirty) if s[0] < 150.0]
    assert starts(clean) != starts(dirty)
    co, do = clean.outcome, dirty.outcome
    assert co is not None and do is not None
    clean_acts, dirty_acts = clean.fast_actions, dirty.fast_actions
    assert clean_acts is not None and dirty_acts is not None
    # (a "move" row counts the requests of the window that starts at its time_s)
    pd.testing.assert_frame_equal(*(a[(a["time_s"] < 150.0) & (a["action"] != "move")]
                                    .reset_index(drop=True) for a in (clean_acts, dirty_acts)))
    early = co.requests.arrival_s < 150.0
    assert early.sum() == (do.requests.arrival_s < 150.0).sum()
    n = int(early.sum())  # the first n requests of both runs
    admitted = co.start[:n] < 150.0
    np.testing.assert_array_equal(admitted, do.start[:n] < 150.0)
    np.testing.assert_array_equal(co.pool[:n][admitted], do.pool[:n][admitted])
    assert (co.pool[:n][admitted] == 1).any()  # some early requests were moved to B


# ----------------------------------------------------------------------------- off switch


def test_off_switch_reproduces_the_stored_figures_and_on_changes_them() -> None:
    """The stored figures of the fleet regression case (tests/test_engine_regression.py),
    to 1e-9, with the layer switched off; switched on, it acts on that case's queues."""
    exo, policy = fleet_case()
    serving = ServingConfig(fidelity="request", slots_per_instance=4)
    off = simulate(exo, policy, serving=serving, fast_layer=replace(ON, enabled=False))
    for name, value in FLEET_FIGURES["request"].items():
        assert off.kpis[name] == pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True), name
    exo, policy = fleet_case()
    on = simulate(exo, policy, serving=serving, fast_layer=ON)
    acted = on.kpis["fast_instances_started"] + on.kpis["fast_requests_rerouted"]
    assert acted > 0
    assert on.kpis["cost_usd"] != off.kpis["cost_usd"]


def test_idle_layer_serves_as_without_it() -> None:
    """A plan with room to spare leaves the layer nothing to do: serving in 60-s
    windows gives the same books as one 15-min window."""
    exo, policy = case({W16: 4}, {W16: 1.0}, requests=burst(0.5, 600.0))
    on = simulate(exo, policy, fast_layer=ON)
    exo, policy = case({W16: 4}, {W16: 1.0}, requests=burst(0.5, 600.0))
    off = simulate(exo, policy)
    assert on.fast_actions is not None and on.fast_actions.empty
    for key in ("cost_usd", "tokens_served", "inference_it_energy_mwh", "ttft_p99_s",
                "slo_attainment"):
        assert on.kpis[key] == pytest.approx(off.kpis[key], rel=1e-12), key


# ----------------------------------------------------------------------------- scenario keys


def test_scenario_keys_and_labels() -> None:
    """``[controller.fast_layer]`` is read and checked; ``fast``/``nofast`` labels switch it."""
    from tests.loop_cases import COMBINED

    table = {**COMBINED, "controller": {**COMBINED["controller"],
                                        "fast_layer": {"period_s": 30.0, "drain_s": 120.0}}}
    sc = scenario_from_table(table, "<t>")
    assert sc.controller.fast_layer == FastLayerConfig(period_s=30.0, drain_s=120.0)
    assert controller_variant(sc, "nofast").controller.fast_layer.enabled is False
    assert controller_variant(controller_variant(sc, "nofast"), "fast").controller.fast_layer \
        == sc.controller.fast_layer
    bad = {**COMBINED, "controller": {"fast_layer": {"period_s": 1200.0}}}
    with pytest.raises(ConfigError, match=r"controller\.fast_layer\.period_s.*\(0, 900\]"):
        scenario_from_table(bad, "<t>")
    bad = {**COMBINED, "controller": {"fast_layer": {"perod_s": 30.0}}}
    with pytest.raises(ConfigError, match="did you mean 'period_s'"):
        scenario_from_table(bad, "<t>")
    assert FastLayerConfig(period_s=60.0).ticks(1) == [900.0 + 60.0 * k for k in range(1, 15)]
    assert FastLayerConfig(period_s=900.0).ticks(0) == []


def test_serving_in_windows_is_serving_in_one() -> None:
    """The request-level server served interval by interval, or in windows at wake-ups
    (pools without traffic left behind until the interval end, as the layer serves, or
    brought to a wake-up by a reader), gives the same requests' times and the same books."""
    from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals
    from mpc_dc.sim.serving import PoolSpec, RequestLevelServer

    exo, _ = fleet_case()
    site = exo.site
    requests = build_arrivals(START, 4 * 900.0, ArrivalConfig(rate_multiplier=3.0, seed=4),
                              models=site.models)
    specs = [PoolSpec.from_row(k, site.row(k), 4) for k in site.pools]
    P = len(site.pools)
    # Campus B's instances get no requests: left behind between wake-ups.
    plan = [[(i + s) % 3 for i in range(P)] for s in range(2)]
    shares = [{k: 1.0 for k, n in zip(site.pools, plan[s], strict=True) if n and k[0] == "A"}
              for s in range(2)]
    servers = [RequestLevelServer(specs, requests, 4) for _ in range(2)]
    books = []
    for which, server in enumerate(servers):
        stats = []
        for step in range(4):
            if which == 0:
                stats.append(server.run_interval(step, plan[step % 2], shares[step % 2]))
                continue
            server.begin_interval(step, plan[step % 2], shares[step % 2])
            for k, tick in enumerate(FastLayerConfig(period_s=37.0).ticks(step)):
                server.serve_until(tick)
                if k % 2:  # a reader brings the pools left behind to the tick
                    server.power_now_w()
            server.serve_until((step + 1) * 900.0)
            stats.append(server.end_interval())
        books.append(stats)
    one, windows = (s.outcome() for s in servers)
    for name in ("start", "first_token", "finish", "energy_j", "tokens_decoded"):
        np.testing.assert_allclose(getattr(windows, name), getattr(one, name), rtol=1e-9,
                                   atol=1e-6, equal_nan=True, err_msg=name)
    for a, b in zip(*books, strict=True):
        for name in ("started", "queue_end", "tokens_decoded", "instance_s",
                     "ready_instance_s", "idle_energy_j", "active_energy_j", "busy_slot_s"):
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9,
                                       atol=1e-6, err_msg=name)


def test_skipping_the_redispatch_without_a_queue_changes_no_decision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake-up with no request queued skips the queue re-dispatch (d)
    (``FastLayer._redispatch_due``): the run of the re-dispatch test above (A's queue
    moves to B at 120 s; nothing is queued at the wake-ups before the burst) has the
    same actions, pool table and per-request records as with the re-dispatch run at
    every wake-up."""
    from mpc_dc.sim.fast_layer import FastLayer

    a, b = ("A", MODEL, "BF16"), ("B", MODEL, "BF16")
    due = FastLayer._redispatch_due
    skipped: list[bool] = []

    def counted(queue: np.ndarray) -> bool:
        skipped.append(not due(queue))
        return due(queue)

    monkeypatch.setattr(FastLayer, "_redispatch_due", staticmethod(counted))
    exo, policy = case({a: 1, b: 4}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S3")
    skipping = simulate(exo, policy, fast_layer=ON)
    assert any(skipped) and not all(skipped)
    monkeypatch.setattr(FastLayer, "_redispatch_due", staticmethod(lambda queue: True))
    exo, policy = case({a: 1, b: 4}, {a: 1.0}, gpus={"A": 4, "B": 4}, flexibility="S3")
    full = simulate(exo, policy, fast_layer=ON)
    assert skipping.fast_actions is not None and full.fast_actions is not None
    assert (skipping.fast_actions["action"] == "requeue").any()
    assert skipping.fast_actions.equals(full.fast_actions)
    assert skipping.pools is not None and skipping.pools.equals(full.pools)
    assert skipping.outcome is not None and full.outcome is not None
    for name in ("pool", "start", "first_token", "finish"):
        np.testing.assert_array_equal(getattr(skipping.outcome, name),
                                      getattr(full.outcome, name))


def _surge_by_search(layer: Any, server: Any, step: int, now: float,
                     until: float) -> float | None:
    """The surge wake-up time searched window by window (the layer's computation before
    it counted each interval's windows once): the first arrival ``t`` in ``[now + W,
    until)`` whose arrivals over ``[max(t − W, now), t)`` exceed the bar."""
    W = layer.config.surge_window_s
    if W <= 0.0 or until <= now + W:
        return None
    known, mu = layer.service_rate(step)
    cap = np.bincount(layer.model_of, minlength=len(layer.models),
                      weights=np.where(known, server.committed_instances() * mu, 0.0))
    bar = np.maximum(cap, layer._acted_rate) * W
    bar = bar + 3.0 * np.sqrt(bar)
    first = np.inf
    for m, times in enumerate(layer._arrivals_by_model()):
        tm = times[(times >= now) & (times < until)]
        for i, t in enumerate(tm):
            if t >= now + W and i - int(tm.searchsorted(t - W, side="left")) > bar[m]:
                first = min(first, float(t))
                break
    return None if np.isinf(first) else first


def test_surge_counts_once_per_interval_find_the_searched_surges(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``FastLayer._surge`` reads counts computed once per interval; at every wake-up of
    a run with surges (Poisson arrivals at 0.5 requests/s with bursts of 4 per second
    at 100-160 s, 420-440 s and 1000-1100 s, over two intervals) it finds the time the
    window-by-window search finds."""
    from mpc_dc.sim.fast_layer import FastLayer

    rng = np.random.default_rng(5)
    arrival = np.sort(np.concatenate([
        rng.uniform(0.0, 1800.0, 900), rng.uniform(100.0, 160.0, 240),
        rng.uniform(420.0, 440.0, 80), rng.uniform(1000.0, 1100.0, 400)]))
    n = arrival.size
    requests = RequestArrays.from_arrays(arrival, np.zeros(n), np.full(n, 100),
                                         np.full(n, 1000), (MODEL,))
    counted = FastLayer._surge
    found: list[float | None] = []

    def both(self: Any, server: Any, step: int, now: float, until: float) -> float | None:
        t = counted(self, server, step, now, until)
        assert t == _surge_by_search(self, server, step, now, until), (step, now, until)
        found.append(t)
        return t

    monkeypatch.setattr(FastLayer, "_surge", both)
    exo, policy = case({W16: 1}, {W16: 1.0}, requests=requests)
    simulate(exo, policy, fast_layer=replace(ON, surge_window_s=10.0))
    assert len(found) > 20 and sum(t is not None for t in found) >= 2


def bf16_on_a_curve(monkeypatch: pytest.MonkeyPatch, *, per_request_w: float,
                    saturating_w: float, half_batch: float) -> BatchCurve:
    """BF16's instances (the hand table's "hand-gpu" has no fitted curve) on the curve
    ``P(n) = 1000 W + per_request_w n + saturating_w n / (n + half_batch)``, a step of
    10 ms whatever the batch (100 tokens/s a request); returns the curve."""
    from mpc_dc.params import serving_fit

    curve = BatchCurve(step_base_s=0.01, step_per_seq_s=0.0, step_per_context_token_s=0.0,
                       prefill_tokens_per_s=10_000.0, power_idle_w=1000.0,
                       power_per_seq_w=per_request_w, power_sat_w=saturating_w,
                       power_half_batch=half_batch)
    original = serving_fit.fitted_curve
    monkeypatch.setattr(serving_fit, "fitted_curve", lambda model, precision, gpu: (
        curve if precision == "BF16" else original(model, precision, gpu)))
    return curve


def test_a_power_cap_bounds_a_draining_instance_whose_curve_falls_with_its_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`held_over_a_cap`'s site, BF16 stopped in the DR event (it drains), its
    instance on a batch curve that falls with the batch, ``P(n) = 1000 W − 80 W n +
    1000 W n / (n + 0.2)``: 1180 W at 10 requests, 1753 W at 1. At 900 s it holds 10
    requests that end one every 90 s, so it draws more as it drains. The cap's bound
    counted a draining instance at its power now, P(10), as if its occupancy, which only
    falls, bounded its power: it let FP8 admit 8 (2.58 kW of 2.59 kW left) while BF16
    rose towards 1.75 kW: 3.63 kW imported against the 3.24-kW cap. Counted at the
    curve's running maximum up to its occupancy (as an admitting instance is), nothing
    of FP8 fits (cap 0) and the row stays under the cap (3.13 kW)."""
    falling = bf16_on_a_curve(monkeypatch, per_request_w=-80.0, saturating_w=1000.0,
                              half_batch=0.2)
    assert np.all(np.diff(falling.power_w(np.arange(1, 11))) < 0)
    cap_mw = 2.59e-3 * PUE
    # 10 requests at 800-809 s decoding at 100 tokens/s each, ending at 990, 1080, ... 1800 s
    long = 800.0 + np.arange(10.0)
    ends = 900.0 + 90.0 * np.arange(1, 11)
    result = held_over_a_cap(900.0, np.round((ends - long) * 100.0), cap_mw=cap_mw,
                             stop_bf16=True)
    led = result.campus_ledger("W")
    assert led["dr_committed_cap_mw"].iloc[1] == pytest.approx(cap_mw)
    assert led["import_mw"].iloc[1] <= cap_mw * (1 + 1e-9)
    assert result.kpis["dr_compliance"] == 1.0


def test_the_import_limit_bounds_what_it_starts_on_a_curve_that_peaks_below_the_full_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """BF16 on ``P(n) = 1000 W − 150 W n + 2500 W n / (n + 0.5)``: 1881 W at its full
    batch of 10, 2700 W at 2. A burst of 3 requests/s (60-200 s) then 0.4 requests/s to
    the interval's end, one instance planned, 4 GPUs, the import limited to 4 kW of
    inference IT (PUE 1.25). The layer counted every instance at P(B) = 1881 W, so at
    120 s it found room for one start; after the burst the two instances ran at about 2
    requests each, near the curve's peak: 4.30 kW of IT over the interval. Counted at
    the peak, 2700 W, it starts one only at 360 s and the interval stays within the
    limit (3.59 kW)."""
    bf16_on_a_curve(monkeypatch, per_request_w=-150.0, saturating_w=2500.0, half_batch=0.5)
    arrival = np.concatenate([60.0 + np.arange(420) / 3.0, 200.0 + np.arange(280) / 0.4])
    n = arrival.size
    requests = RequestArrays.from_arrays(arrival, np.zeros(n), np.full(n, 100),
                                         np.full(n, 1000), (MODEL,))
    exo, policy = case({W16: 1}, {W16: 1.0}, requests=requests, steps=1)
    limit_mw = PUE * 4000.0 / 1e6
    site = replace(exo.site, campuses=tuple(replace(c, grid=Grid(import_limit_mw=limit_mw))
                                            for c in exo.site.campuses))
    result = simulate(replace(exo, site=site), policy, fast_layer=ON)
    assert sum(count for _, _, count in starts(result)) >= 1
    assert result.ledger["import_mw"].iloc[0] <= limit_mw * (1 + 1e-9)
