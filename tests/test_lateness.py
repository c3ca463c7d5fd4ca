"""Priced lateness (issue 16): the price of requests that miss their SLO, by hand, in the
books of a closed-loop run, in the plan's objective (the lateness block); the demand
nowcast and the backlog drain of the MPC, by hand.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from forecasters.nowcast import nowcast_shift, nowcast_weights
from mpc_dc.control.mpc import MpcPolicy, drain_shares
from mpc_dc.params.quant_table import QuantTable
from mpc_dc.problem import Form, HorizonInputs, LatenessPrices, PlantState, Problem
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import SiteExogenous, demand_columns
from mpc_dc.sim.fluid import FluidServer
from mpc_dc.sim.lateness import erlang_c, fluid_book, request_book, request_lateness
from mpc_dc.sim.meter import net_cost_usd
from mpc_dc.sim.policy import Decision, FleetDecision, Observation
from mpc_dc.sim.serving import (
    DROPPED_NO_ROUTE,
    FINISHED,
    IN_SERVICE,
    QUEUED,
    PoolSpec,
    ServingConfig,
    ServingOutcome,
    slo_met,
)
from mpc_dc.site.config import Campus, Fleet, Grid, Site
from tests.scripted_policy import Scripted
from tests.test_engine import MODEL, POOL, W, hand_case, hand_table
from tests.test_problem_combined import _campus, _fleet, _row

PRICES = ServingConfig(late_usd_per_request=0.01, late_usd_per_s=0.001)


# ----------------------------------------------------------------------------- by request


def _site() -> Site:
    return Site((Campus(W, "F", gpus=8, pue=1.0, grid=Grid()),),
                Fleet(models=(MODEL,), table=hand_table()))


def _outcome() -> ServingOutcome:
    """Eight requests of 10 output tokens on one pool (TTFT target 2 s, TPOT target
    50 ms: 0.45 s for the 9 tokens after the first), a run of two 450-s intervals:

    ====  =======  ===========  ===========  ============  =========================
    req   arrival  first token  finish       status        late by [s]
    ====  =======  ===========  ===========  ============  =========================
    0     0        1            1.18         finished      0 (TPOT 20 ms)
    1     10       15           15.45        finished      3 (TTFT 5 s; TPOT 50 ms)
    2     20       21           21.9         finished      0.45 (TPOT 100 ms: 0.9 − 0.45)
    3     30       40           41.8         finished      8 + 1.35 (TPOT 200 ms)
    4     100      103          -            in service    1 (TTFT alone)
    5     200      -            -            dropped       698 (to the run end, 900 s)
    6     890      -            -            queued        8 (waited 10 s to the end)
    7     899.5    -            -            queued        undecided (0.5 s <= 2 s)
    ====  =======  ===========  ===========  ============  =========================
    """
    arrival = np.array([0.0, 10, 20, 30, 100, 200, 890, 899.5])
    requests = RequestArrays.from_arrays(arrival, np.zeros(8), np.full(8, 100),
                                         np.full(8, 10), (MODEL,))
    pool = PoolSpec.from_row(POOL, hand_table().rows[0], fitted=False)
    nan = np.nan
    first = np.array([1.0, 15, 21, 40, 103, nan, nan, nan])
    finish = np.array([1.18, 15.45, 21.9, 41.8, nan, nan, nan, nan])
    status = np.array([FINISHED, FINISHED, FINISHED, FINISHED, IN_SERVICE, DROPPED_NO_ROUTE,
                       QUEUED, QUEUED], dtype=np.int8)
    return ServingOutcome(
        requests=requests, pools=(pool,), pool=np.array([0, 0, 0, 0, 0, -1, 0, 0]),
        start=first - 0.01, first_token=first, finish=finish, status=status,
        tokens_decoded=np.array([10.0, 10, 10, 10, 3, 0, 0, 0]), energy_j=np.zeros(8),
        ledger_tokens=np.array([43.0]), ledger_tokens_after_end=np.zeros(1),
        queue_history=np.zeros((2, 1)), end_s=900.0)


def test_request_lateness_by_hand() -> None:
    outcome = _outcome()
    site = _site()
    late, late_s = request_lateness(outcome, site, PRICES)
    np.testing.assert_array_equal(late, [False, True, True, True, True, True, True, False])
    np.testing.assert_allclose(late_s, [0, 3, 0.45, 9.35, 1, 698, 8, 0], atol=1e-9)
    met, decided = slo_met(outcome, site, PRICES)
    np.testing.assert_array_equal(late, decided & ~met)
    # Booked by the interval of arrival (450-s intervals): requests 0-5 in the first,
    # 6-7 in the second; the dropped one on the model's (only) pool.
    book = request_book(outcome, site, PRICES, n_steps=2, step_s=450.0)
    np.testing.assert_allclose(book.late_requests, [[5.0], [1.0]])
    np.testing.assert_allclose(book.late_s, [[3 + 0.45 + 9.35 + 1 + 698], [8.0]])
    # 0.01 $ per late request + 0.001 $ per second late
    np.testing.assert_allclose(book.lateness_usd, [[0.05 + 0.7118], [0.01 + 0.008]])


def test_erlang_c_by_hand() -> None:
    """M/M/1 waits with probability ρ: C(1, a) = a. M/M/2 at a = 1: Erlang B is
    (1/2) / (1 + 1 + 1/2) = 0.2, so C = 0.2 / (1 − 0.5 × 0.8) = 1/3. Overloaded
    (a ≥ c): every arrival waits; no load: none does."""
    np.testing.assert_allclose(erlang_c(1.0, np.array([0.25, 0.5, 0.9])), [0.25, 0.5, 0.9],
                               rtol=1e-12)
    assert float(erlang_c(2.0, 1.0)) == pytest.approx(1 / 3, rel=1e-12)
    np.testing.assert_array_equal(erlang_c(np.array([2.0, 2.0, 3.0]), np.array([2.0, 5.0, 0.0])),
                                  [1.0, 1.0, 0.0])


def test_fluid_lateness_from_the_queue_estimate_by_hand() -> None:
    """Two 900-s intervals, one pool (TTFT target 2 s, TPOT target 50 ms), the fluid
    queue's per-interval quantities set by hand.

    Interval 0, the wait: 900 arrivals (λ = 1/s) of 0.5 instance-s each on one ready
    instance of 2 slots (ρ = 0.5), no prefill, 202 instance-s of backlog carried in.
    The fluid queue makes an arrival at ``s`` wait 202 − 0.5 s seconds: late until
    s = 400 s, a share 4/9, by 200 − 0.5 s, 40,000 s in all (44.4 s per arrival). The
    others see the M/M/2 tail at a = 1 (C = 1/3), θ = 2 − 1 = 1/s:
    P(W > 2 s) = e^{−2}/3, mean excess e^{−2}/3 s. Late: 900 − 500 (1 − e^{−2}/3)
    = 400 + 500 e^{−2}/3; seconds 40,000 + 500 e^{−2}/3.

    Interval 1, the TPOT: 2250 arrivals (2.5/s) of 11 tokens, every one, decoding
    at a step of 50 ms (the target: no allowance left for a stall), 1/15 s per token
    with the prefills (mean prefill 0.1 s); the instance admits 2.5/s, so a request,
    exposed from its own prefill to its last token (0.1 + 10/15 s), sees
    m = 2.5 × 23/30 = 23/12 prefills in its decode on average and is late when it
    sees one: share 1 − e^{−23/12}, by m × 0.1 = 23/120 s per arrival. Its queue
    is empty and its 200 slots are all but never full (C(200, 5) ≈ 10⁻²³⁵). And 20 of
    the 2270 offered that no pool could take: late by the rest of the run from the
    middle of the interval, 450 − 2 = 448 s each."""
    pool = PoolSpec.from_row(POOL, hand_table().rows[0], fitted=False)
    agg = {"requests": np.array([[900.0], [2270.0]]), "request_tokens": np.zeros((2, 1)),
           "response_tokens": np.array([[9900.0], [24970.0]])}
    fluid = FluidServer((pool,), (MODEL,), agg, 2)
    fluid.tail_arrival_rate[:] = [[1.0], [2.5]]
    fluid.tail_ready[:] = 1.0
    fluid.tail_work_s[:] = [[0.5], [0.01]]
    fluid.tail_batch_limit[:] = [[2.0], [200.0]]
    fluid.tail_backlog_work_s[:] = [[202.0], [0.0]]
    fluid.tail_prefill_s[:] = [[0.0], [0.1]]
    fluid.tail_decode_step_s[:] = [[0.02], [0.05]]
    fluid.est_tpot_s[:] = [[0.02], [0.05 / 0.75]]
    fluid.tail_admission_rate[:] = [[1.0], [2.5]]
    fluid.tail_response_mean[:] = 11.0
    fluid.tail_response_sq_mean[:] = 121.0
    book = fluid_book(fluid, PRICES, np.array([[900.0], [2250.0]]))
    tail = np.exp(-2.0) / 3
    late = [400 + 500 * tail, 2250 * (1 - np.exp(-23 / 12)) + 20]
    seconds = [40_000 + 500 * tail, 2250 * 23 / 120 + 20 * 448.0]
    np.testing.assert_allclose(book.late_requests[:, 0], late, rtol=1e-4)
    np.testing.assert_allclose(book.late_s[:, 0], seconds, rtol=1e-4)
    np.testing.assert_allclose(book.lateness_usd[:, 0],
                               0.01 * np.array(late) + 0.001 * np.array(seconds), rtol=1e-4)


def _hot_fluid_case(requests: int) -> SiteExogenous:
    """The hand case's campus, one instance of the hand pool (10 slots, decode step
    10 ms, TPOT target 50 ms, prefill 10,000 tokens/s), ``requests`` of 2000 prompt
    and 5 response tokens evenly over the first interval from 60 s."""
    exo, _ = hand_case()
    assert exo.requests is not None
    t = np.sort(np.random.default_rng(7).uniform(60.0, 900.0, requests))
    arrays = RequestArrays.from_arrays(t, np.zeros(requests), np.full(requests, 2000),
                                       np.full(requests, 5), (MODEL,))
    frame = exo.frame.drop(columns=demand_columns(exo.requests, exo.frame.index).columns)
    return replace(exo, frame=frame.join(demand_columns(arrays, exo.frame.index)),
                   requests=arrays)


def test_fluid_interval_within_its_mean_targets_but_hot_has_late_requests() -> None:
    """1000 requests of 2000 prompt tokens on one instance: 200 s of prefill in 840
    ready seconds, no backlog, so the fluid means hold (wait 0 + prefill 0.2 s within
    2 s, TPOT 10 ms / (1 − 0.24) within 50 ms) and the all-or-nothing rule counted no
    late request. But a request decoding its 4 tokens after the first is late when
    another's 0.2-s prefill lands in its decode (allowance 4 × 40 ms): the request
    level finds 285 such (seeded Poisson arrivals). The estimate must see them, within
    a factor 3 (it takes prefills as exponential, so a 0.2-s one misses the 0.16-s
    allowance with probability e^{−0.8} rather than 1: about half as many)."""
    one = FleetDecision({POOL: 1}, {POOL: 1.0})
    runs = {f: simulate(_hot_fluid_case(1000), Scripted(lambda obs: Decision({}, one)),
                        serving=replace(PRICES, fidelity=f)).kpis for f in ("request", "fluid")}
    fluid, request = runs["fluid"], runs["request"]
    assert request["late_requests"] > 100
    assert request["late_requests"] / 3 < fluid["late_requests"] < 3 * request["late_requests"]
    assert fluid["slo_attainment_estimate"] == pytest.approx(1 - fluid["late_requests"] / 1000)
    assert fluid["slo_attainment_estimate"] == pytest.approx(request["slo_attainment"], abs=0.2)
    assert fluid["lateness_usd"] > 0


@pytest.mark.parametrize("requests", [300, 1000, 6000])
def test_fluid_late_requests_are_at_most_the_arrivals(requests: int) -> None:
    """Per pool and interval the estimate never books more late requests than arrived,
    cool, hot or overloaded (6000 × 0.2 s of prefill in 840 s carries a backlog), and
    the run's invariants (ledgers, token book, lateness prices) hold."""
    one = FleetDecision({POOL: 1}, {POOL: 1.0})
    result = simulate(_hot_fluid_case(requests), Scripted(lambda obs: Decision({}, one)),
                      serving=replace(PRICES, fidelity="fluid"))
    assert result.pools is not None
    late = result.pools["late_requests"].to_numpy()
    assert (late >= 0).all()
    assert (late <= result.pools["arrivals"].to_numpy() * (1 + 1e-12)).all()
    assert (result.pools["late_s"].to_numpy() >= 0).all()


def test_closed_loop_books_and_prices_lateness() -> None:
    """The hand case of tests/test_engine.py on one instance of 10 slots: 180 requests
    of 10 s each every 0.5 s queue up. Every late request is in the books: the pool
    table and the ledger hold its price, the net cost includes it, the late requests
    are the SLO misses, and the ledger's seconds are the requests' own."""
    exo, _ = hand_case()
    one = FleetDecision({POOL: 1}, {POOL: 1.0})
    result = simulate(exo, Scripted(lambda obs: Decision({}, one)), serving=PRICES)
    k = result.kpis
    assert result.outcome is not None and result.slo is not None
    late, late_s = request_lateness(result.outcome, exo.site, PRICES)
    assert k["late_requests"] == late.sum() > 100
    assert k["late_s"] == pytest.approx(late_s.sum(), rel=1e-12)
    assert k["lateness_usd"] == pytest.approx(0.01 * late.sum() + 0.001 * late_s.sum())
    assert k["cost_usd"] - k["cost_without_slo_usd"] == pytest.approx(k["lateness_usd"])
    assert k["cost_usd"] == pytest.approx(net_cost_usd(result.ledger), rel=1e-12)
    assert result.ledger["lateness_usd"].sum() == pytest.approx(k["lateness_usd"])
    assert result.pools is not None
    assert result.pools["late_s"].sum() == pytest.approx(k["late_s"])
    # Without prices nothing is charged, and the cost is the meter's alone.
    free = simulate(exo, Scripted(lambda obs: Decision({}, one))).kpis
    assert free["lateness_usd"] == 0.0 and free["late_requests"] == k["late_requests"]
    assert free["cost_usd"] == pytest.approx(k["cost_without_slo_usd"])
    # Fluid: estimated from the fluid queue, booked and priced alike. Its instance does
    # the interval's work in 180 s of its 840 ready seconds (no queue, nothing late);
    # with 20 × the output tokens the work is 3600 s and the queue carries over.
    assert isinstance(exo.requests, RequestArrays)
    requests = replace(exo.requests, response_tokens=20 * exo.requests.response_tokens)
    frame = exo.frame.copy()
    truth = demand_columns(requests, exo.run_index)
    frame.loc[truth.index, truth.columns] = truth.to_numpy()
    heavy = replace(exo, frame=frame, requests=requests)
    fluid = simulate(heavy, Scripted(lambda obs: Decision({}, one)),
                     serving=replace(PRICES, fidelity="fluid"))
    kf = fluid.kpis
    assert kf["late_requests"] > 100
    assert kf["lateness_usd"] == pytest.approx(0.01 * kf["late_requests"] + 0.001 * kf["late_s"])
    assert kf["cost_usd"] - kf["cost_without_slo_usd"] == pytest.approx(kf["lateness_usd"])


# ----------------------------------------------------------------------------- the plan


def _short_site(spatial: bool) -> Site:
    campuses = (_campus("A", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0),
                _campus("B", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0))
    fleet = _fleet()
    fleet = replace(fleet, flexibility="S6" if spatial else "S2")
    return Site(campuses, fleet)


@pytest.mark.parametrize("spatial", [True, False])
def test_lateness_block_carries_what_a_column_cannot_serve(spatial: bool) -> None:
    """No GPU in column 0, four per campus after; 1000 tokens/s per campus
    (μ = 1000 tokens/s per 1-GPU instance, 2 MW each when serving, 30 $/MWh).

    Without the block the 2 × 900,000 tokens of column 0 are unserved (2 × 900 $) and
    column 1 serves its own demand. With it they join the backlog (each campus's own
    without spatial flexibility) and column 1 serves them on top, with two instances
    per campus: entry 1e-5 $/token × 1.8e6 = 18 $, a wait of column 0's 900 s at
    1e-8 $/(token · s) = 16.2 $, 34.2 $ of lateness instead of 1800 $ unserved."""
    site = _short_site(spatial)
    H = 3
    inputs = HorizonInputs.build(site, H, price_usd_per_mwh=[[30.0] * H] * 2,
                                 demand_tokens_per_s=[[2000.0] * H],
                                 gpus_available=[[0.0, 4.0, 4.0]] * 2)
    plain = Problem(site, H).solve(inputs, PlantState(), Form.COMMITTED_INTEGER)
    priced = Problem(site, H, lateness=LatenessPrices((1e-5,), (1e-8,))).solve(
        inputs, PlantState(), Form.COMMITTED_INTEGER)
    assert plain.plan is not None and plain.cost is not None
    assert priced.plan is not None and priced.cost is not None
    np.testing.assert_allclose(plain.plan.instances.sum(axis=0), [0, 2, 2], atol=1e-6)
    assert plain.cost.unserved_usd == pytest.approx(1800.0)
    np.testing.assert_allclose(priced.plan.instances.sum(axis=0), [0, 4, 2], atol=1e-6)
    np.testing.assert_allclose(priced.plan.served_tokens_per_s, [[0.0, 4000.0, 2000.0]],
                               atol=1e-3)
    assert priced.plan.backlog_tokens is not None
    np.testing.assert_allclose(priced.plan.backlog_tokens, [[1.8e6, 0.0, 0.0]], atol=1e-3)
    assert priced.cost.unserved_usd == pytest.approx(0.0, abs=1e-6)
    assert priced.cost.lateness_usd == pytest.approx(34.2)
    # energy: 8 MW in column 1 and 4 MW in column 2, 0.25 h at 30 $/MWh
    assert priced.objective_usd == pytest.approx(34.2 + 0.25 * 30 * 12)


def test_lateness_left_at_the_horizon_end_is_unserved() -> None:
    """GPUs only in column 0, demand in column 1: the plan cannot serve it; carried to
    the end it costs its entry, its wait and the unserved price, which is more than
    leaving it unserved: the block never makes dropping demand cheaper."""
    site = _short_site(True)
    inputs = HorizonInputs.build(site, 2, price_usd_per_mwh=[[30.0] * 2] * 2,
                                 demand_tokens_per_s=[[0.0, 1000.0]],
                                 gpus_available=[[4.0, 0.0]] * 2)
    res = Problem(site, 2, lateness=LatenessPrices((1e-5,), (1e-8,))).solve(inputs)
    assert res.plan is not None and res.cost is not None
    assert res.cost.unserved_usd == pytest.approx(900.0)
    assert res.cost.lateness_usd == pytest.approx(0.0, abs=1e-9)


def test_a_late_token_pays_its_entry() -> None:
    """One campus, demand only in column 0, GPUs only in column 1. At 2e-3 $ per token
    entering the backlog (above the unserved price, 1e-3 $/token) carrying the 900,000
    tokens costs 1800 $ and leaving them unserved 900 $: the plan leaves them. Were the
    entry free, the wait (9e-10 $/(token · s) × 900 s, 0.73 $) would carry them."""
    site = Site((_campus("A", gpus=4, it_mw=None, nameplate_mw=None, export_mw=0.0),),
                _fleet())
    inputs = HorizonInputs.build(site, 2, price_usd_per_mwh=[[30.0, 30.0]],
                                 demand_tokens_per_s=[[1000.0, 0.0]],
                                 gpus_available=[[0.0, 4.0]])
    res = Problem(site, 2, lateness=LatenessPrices((2e-3,), (9e-10,))).solve(inputs)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances, [[0.0, 0.0]], atol=1e-6)
    assert res.objective_usd == pytest.approx(900.0)
    assert res.cost.lateness_usd == pytest.approx(0.0, abs=1e-9)


# ----------------------------------------------------------------------------- nowcast


def test_nowcast_weights_and_shift_by_hand() -> None:
    """τ = 1 h; the first target ends 15 min after the observed interval."""
    w = nowcast_weights(900.0, 3, 3600.0)
    np.testing.assert_allclose(w, np.exp([-0.25, -0.5, -0.75]))
    shift = nowcast_shift(np.array([[400.0, 400.0, 400.0]]), np.array([100.0]), w)
    np.testing.assert_allclose(shift, [-300.0 * w])
    np.testing.assert_array_equal(nowcast_weights(900.0, 3, 0.0), np.zeros(3))
    np.testing.assert_array_equal(nowcast_shift(np.ones((1, 3)), np.array([np.nan]), w),
                                  np.zeros((1, 3)))
    np.testing.assert_allclose(drain_shares(2.5, 4), [1.0, 1.0, 0.5, 0.0])


def test_mpc_demand_nowcast_and_drain_by_hand() -> None:
    """The MPC plans a point forecast of 400 tokens/s; 100 tokens/s were observed in the
    interval before the decision (τ = 1 h, 4 intervals): 400 − 300 e^{−k/4} in planned
    interval k = 1, 2, ... A queue of 9 requests of n̄ tokens each, drained within two
    intervals, adds 9 n̄ / 1800 s to the first two."""
    from forecasters.presets import make_for
    from mpc_dc.control.forecasting import ChannelForecasts
    from tests.loop_cases import fleet_short, prepared

    _, exo = prepared(fleet_short())
    site = exo.site
    model = site.models[0]
    demand = [f"tokens_per_s[{m}]" for m in site.models]
    policy = MpcPolicy(exo, ChannelForecasts({c: make_for("persistence", "request_rate")
                                              for c in demand}), 8,
                       nowcast_tau_steps=4.0, drain_steps=2.0)
    t0 = exo.run_start
    policy.observe(t0, {**dict.fromkeys(demand, 100.0),
                        **{f"requests_per_h[{m}]": 3600.0 for m in site.models}})
    obs = Observation(step=1, time=t0 + pd.Timedelta(minutes=15))
    point = {c: np.full(8, 400.0) for c in demand}
    got = policy.demand(obs, 8, point)
    want = 400.0 - 300.0 * np.exp(-np.arange(1, 9) / 4.0)
    np.testing.assert_allclose(got, np.tile(want, (len(demand), 1)), rtol=1e-12)
    n_bar = policy._tokens_seen[0] / policy._requests_seen[0]
    pool = next(k for k in site.pools if k[1] == model)
    queued = policy.demand(replace(obs, queue_requests={pool: 9.0}), 8, point)
    np.testing.assert_allclose(queued[0] - got[0],
                               [9 * n_bar / 1800.0] * 2 + [0.0] * 6, rtol=1e-12)
    # Without a time constant the forecast is planned as it is.
    policy.nowcast_tau["demand"] = 0.0
    np.testing.assert_allclose(policy.demand(obs, 8, point), 400.0)


def _two_campus_site() -> Site:
    """Two campuses with one 1-GPU instance each (μ = 1000 tokens/s, no warm-up, 1 J
    per token, no idle power, utilisation cap 1)."""
    campuses = (_campus("A", gpus=1, it_mw=None, nameplate_mw=None, export_mw=0.0),
                _campus("B", gpus=1, it_mw=None, nameplate_mw=None, export_mw=0.0))
    row = _row("BF16", mu=1000, gpus=1, idle_w=0.0, e_j=1.0, loss=0)
    return Site(campuses, replace(_fleet(), table=QuantTable((row,), "hand")))


@pytest.mark.parametrize("congestion_share", [0.0, 0.1])
def test_congestion_splits_a_model_at_even_utilisation(congestion_share: float) -> None:
    """1600 tokens/s over two campuses' one instance each, energy at 30 $/MWh at A and
    60 at B. The backlog alone prices nothing below capacity, so the cheaper campus is
    filled: A 1000, B 600 tokens/s. With congestion at σ = 0.1 of the late price
    (1e-5 $/token) each token beyond 0.7, 0.8 and 0.9 of a pool's capacity costs
    1e-6 $ more (the energy saved by serving it at A, 1 J × 30 $/MWh = 8.3e-9 $, is
    far less): at A 1000, B 600 the hinges cost (0.3 + 0.2 + 0.1 + 0) × 1000 tokens/s,
    at 800 / 800 (0.1 + 0.1) × 1000, the least (A's marginal token is priced 2σ, B's σ
    until both reach 0.8): 200 tokens/s × 900 s × 1e-6 $ = 0.18 $."""
    site = _two_campus_site()
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[30.0], [60.0]],
                                 demand_tokens_per_s=[[1600.0]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    prices = LatenessPrices((1e-5,), (1e-8,), congestion_share=congestion_share)
    res = Problem(site, 1, lateness=prices).solve(inputs, state, Form.COMMITTED_INTEGER)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances, [[1.0], [1.0]], atol=1e-6)
    fleet = res.plan.decision().fleet
    assert fleet is not None
    shares = fleet.routing_share
    if congestion_share == 0:
        np.testing.assert_allclose(res.plan.tokens_per_s, [[1000.0], [600.0]], atol=1e-3)
        assert res.cost.congestion_usd == 0.0
    else:
        np.testing.assert_allclose(res.plan.tokens_per_s, [[800.0], [800.0]], atol=1e-3)
        assert list(shares.values()) == pytest.approx([0.5, 0.5])
        assert res.cost.congestion_usd == pytest.approx(0.18)
        # the cost the plan reports is the objective's
        assert res.objective_usd == pytest.approx(res.cost.total_usd)


@pytest.mark.parametrize(("demand", "utilisation", "hinges"), [
    (1400.0, 0.70, 0.0), (1500.0, 0.75, 0.05), (1700.0, 0.85, 0.05 + 0.15),
    (1900.0, 0.95, 0.05 + 0.15 + 0.25), (2000.0, 1.0, 0.1 + 0.2 + 0.3),
    (2100.0, 1.0, 0.1 + 0.2 + 0.3)])
def test_congestion_optimum_is_the_sum_of_hinges(demand: float, utilisation: float,
                                                 hinges: float) -> None:
    """The LP's congestion price at its optimum is the hinge sum the block defines,
    whatever rows carry it (the vertex form replaced one row per knee, issue 14).
    Two campuses with one instance each (C = 1000 tokens/s), energy at 30 $/MWh at
    both, so only congestion decides the split; σ = 0.1 of 1e-5 $/token per knee.
    The convex cost is least at equal utilisation r = D / 2000 (within a segment any
    split costs the same): 2 × 1000 tokens/s × f(r) × 1e-6 $ × 900 s with
    f(r) = Σ_j max(0, r − κ_j), κ = 0.7, 0.8, 0.9. Beyond 2000 tokens/s the
    capacity holds (the form implies x <= C): the rest waits, congestion as at 2000."""
    site = _two_campus_site()
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[30.0], [30.0]],
                                 demand_tokens_per_s=[[demand]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    results = [Problem(site, 1, lateness=LatenessPrices((1e-5,), (1e-8,), congestion_share=s))
               .solve(inputs, state, Form.COMMITTED_INTEGER) for s in (0.0, 0.1)]
    by_hand = 2 * 1000.0 * hinges * 1e-6 * 900.0
    without, with_price = results
    assert with_price.plan is not None and with_price.cost is not None
    np.testing.assert_allclose(with_price.plan.instances, [[1.0], [1.0]], atol=1e-6)
    assert with_price.plan.tokens_per_s.sum() == pytest.approx(2000.0 * utilisation, abs=1e-3)
    assert np.all(with_price.plan.tokens_per_s <= 1000.0 + 1e-6)
    assert with_price.cost.congestion_usd == pytest.approx(by_hand, abs=1e-9)
    # The LP's own objective (objective_usd is the plan's cost recomputed after the
    # solve, so it would not see a wrong price in the rows).
    assert with_price.lp_bound_usd - without.lp_bound_usd == pytest.approx(by_hand, abs=1e-9)
