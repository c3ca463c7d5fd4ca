"""Request-level serving: Erlang C, conservation, routing, scale-up delay and drain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_dc.sim.arrivals import (
    ArrivalConfig,
    RequestArrays,
    ZeroTokenPolicy,
    build_arrivals,
)
from mpc_dc.sim.router import SmoothRouter, apportion
from mpc_dc.sim.serving import (
    FINISHED,
    IN_SERVICE,
    QUEUED,
    PoolSpec,
    RequestLevelServer,
    merge_by_arrival,
)

KEY = ("a", "m", "BF16")


def _pool(
    slots: int = 1,
    load_time_s: float = 0.0,
    idle_w: float = 0.0,
    marginal: float = 0.0,
    prefill: float = 1e9,
    tau: float = 1.0,
    key: tuple[str, str, str] = KEY,
) -> PoolSpec:
    return PoolSpec(key, slots, prefill, tau, idle_w, marginal, load_time_s, slots / tau)


def test_scale_up_capacity_arrives_after_load_time() -> None:
    req = RequestArrays.from_arrays(
        np.array([10.0, 20.0]), np.zeros(2), np.zeros(2), np.ones(2, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer([_pool(load_time_s=100.0)], req, 2, service_s=np.array([5.0, 5.0]))
    server.run_interval(0, [1], {KEY: 1.0})
    server.run_interval(1, [1], {KEY: 1.0})
    np.testing.assert_allclose(server.start, [100.0, 105.0])


def test_queue_carried_to_next_interval_uses_new_capacity() -> None:
    # One instance busy with a long request; the second request waits and is served by
    # an instance added at the next boundary (load 0), not by the busy one.
    req = RequestArrays.from_arrays(
        np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), np.ones(2, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer([_pool()], req, 2, service_s=np.array([5000.0, 10.0]))
    s0 = server.run_interval(0, [1], {KEY: 1.0})
    assert s0.queue_end[0] == 1
    server.run_interval(1, [2], {KEY: 1.0})
    np.testing.assert_allclose(server.start, [0.0, 900.0])


def test_drain_finishes_work_and_charges_idle_until_done() -> None:
    req = RequestArrays.from_arrays(
        np.array([0.0, 0.0, 950.0]), np.zeros(3), np.zeros(3), np.ones(3, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer(
        [_pool(idle_w=100.0)], req, 3, service_s=np.array([1200.0, 300.0, 10.0])
    )
    server.run_interval(0, [2], {KEY: 1.0})
    s1 = server.run_interval(1, [1], {KEY: 1.0})  # drains the instance that freed at 300 s
    # The remaining instance is busy until 1200 s: request 3 waits for it.
    assert server.start[2] == pytest.approx(1200.0)
    assert s1.instance_s[0] == pytest.approx(900.0)  # the drained one was already idle
    server2 = RequestLevelServer(
        [_pool(idle_w=100.0)], req, 3, service_s=np.array([1200.0, 1300.0, 10.0])
    )
    server2.run_interval(0, [2], {KEY: 1.0})
    s = server2.run_interval(1, [1], {KEY: 1.0})
    # Both busy past 900 s: the earlier-free one (1200 s) drains and draws idle power
    # until then, request 3 runs on the other one after 1300 s.
    assert s.instance_s[0] == pytest.approx(900.0 + 300.0)
    assert server2.start[2] == pytest.approx(1300.0)


def test_scale_down_cancels_loading_instances_first() -> None:
    req = RequestArrays.from_arrays(
        np.array([1.0]), np.zeros(1), np.zeros(1), np.ones(1, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer([_pool(load_time_s=2000.0)], req, 3, service_s=np.array([1.0]))
    server.run_interval(0, [1], {KEY: 1.0})
    s1 = server.run_interval(1, [0], {KEY: 1.0})
    # the loading instance is cancelled, not drained: no instance time after 900 s
    assert server.committed_instances().tolist() == [0]
    assert s1.instance_s[0] == 0.0


def _arrivals_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrival_s": [0.0, 10.0, 20.0, 30.0, 40.0, 50.0],
            "model": ["ChatGPT", "GPT-4", "ChatGPT", "Other", "ChatGPT", "GPT-4"],
            "request_tokens": [100, 0, 50, 10, 30, 40],
            "response_tokens": [10, 0, 0, 5, 20, 30],
        }
    )


def test_arrival_policies_are_named_and_counted() -> None:
    start = pd.Timestamp("2022-04-01", tz="UTC")
    config = ArrivalConfig(zero_request=ZeroTokenPolicy.DROP, failed=ZeroTokenPolicy.DROP)
    frame = _arrivals_frame()
    req = build_arrivals(start, 900.0, config, trace=frame, trace_end_s=900.0)
    assert req.stats.dropped["unmapped_model"] == 1
    assert req.stats.dropped["zero_request_tokens"] == 1
    assert req.stats.dropped["failed_zero_response"] == 1
    assert len(req) == 3
    req.stats.check()
    keep = build_arrivals(
        start, 900.0, ArrivalConfig(failed=ZeroTokenPolicy.KEEP), trace=frame, trace_end_s=900.0
    )
    assert len(keep) == 4


def test_generator_fills_beyond_the_trace() -> None:
    start = pd.Timestamp("2022-04-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "arrival_s": np.arange(0, 1800.0, 10.0),
            "model": "ChatGPT",
            "request_tokens": 10,
            "response_tokens": 10,
        }
    )
    req = build_arrivals(start, 86400.0, trace=frame, trace_end_s=1800.0)
    assert req.stats.by_source["trace"] == 180
    assert req.stats.by_source["generator"] > 1000
    assert req.arrival_s[req.source == 1].min() >= 1800.0
    assert np.all(np.diff(req.arrival_s) >= 0)


def test_router_tracks_planned_shares() -> None:
    pools = [("a", "m", "BF16"), ("b", "m", "BF16"), ("c", "m", "FP8")]
    router = SmoothRouter(pools, ("m",))
    rng = np.random.default_rng(0)
    for _ in range(200):
        shares = dict(zip(pools, rng.dirichlet(np.ones(3)), strict=True))
        n = int(rng.integers(0, 50))
        out = router.route(np.zeros(n, dtype=np.int32), shares)
        assert out.size == n and np.all(out >= 0)
    assert np.abs(router.routed - router.planned).max() < 1.0 + 1e-9


def test_router_interleaves_smoothly() -> None:
    pools = [("a", "m", "BF16"), ("b", "m", "BF16")]
    router = SmoothRouter(pools, ("m",))
    out = router.route(np.zeros(8, dtype=np.int32), {pools[0]: 0.5, pools[1]: 0.5})
    assert np.all(out[::2] != out[1::2])
    no_route = router.route(np.ones(3, dtype=np.int32), {pools[0]: 1.0})
    assert np.all(no_route == -1)


def test_apportion_sums_and_is_close() -> None:
    counts = apportion(np.array([-0.4, 2.7, 1.7]), 4)
    assert counts.sum() == 4 and counts.min() >= 0
    # carried errors can leave more requests missing than there are pools
    counts = apportion(np.array([-0.9, -0.9]), 3)
    assert counts.sum() == 3 and counts.min() >= 0


def test_router_routes_every_request_under_many_small_calls() -> None:
    """Many routing calls of a few requests (as re-dispatch makes) with changing pool
    sets: every request of a routed model gets a pool (it crashed on the DR week when
    carried errors left more requests missing than pools)."""
    rng = np.random.default_rng(4)
    keys = [("a", "m", "BF16"), ("b", "m", "FP8"), ("c", "m", "INT4")]
    router = SmoothRouter(keys, ("m",))
    for _ in range(3000):
        chosen = [k for k in keys if rng.random() < 0.6] or [keys[0]]
        shares = {k: float(rng.uniform(0.01, 1.0)) for k in chosen}
        n = int(rng.integers(0, 5))
        out = router.route(np.zeros(n, dtype=np.int32), shares)
        assert out.size == n and np.all(out >= 0)


def test_conservation_tokens_and_energy() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    arrival = np.sort(rng.uniform(0, 4 * 900.0, n))
    model = rng.integers(0, 2, n)
    req = RequestArrays.from_arrays(
        arrival, model, rng.integers(0, 2000, n), rng.integers(0, 800, n), ("m", "k")
    )
    pools = [
        _pool(slots=8, tau=0.02, prefill=5000.0, idle_w=300.0, marginal=0.3),
        _pool(slots=4, tau=0.03, prefill=3000.0, idle_w=500.0, marginal=0.5, key=("b", "m", "FP8")),
        _pool(
            slots=8, tau=0.02, prefill=5000.0, idle_w=300.0, marginal=0.2, key=("a", "k", "BF16")
        ),
    ]
    server = RequestLevelServer(pools, req, 4)
    shares = {pools[0].key: 0.7, pools[1].key: 0.3, pools[2].key: 1.0}
    active = 0.0
    plans = [(3, 1, 3), (3, 1, 3), (1, 0, 3), (2, 2, 0)]  # overload and scale-downs
    for k, plan in enumerate(plans):
        s = server.run_interval(k, plan, shares)
        active += float(s.active_energy_j.sum())
    out = server.outcome()
    counts = out.status_counts()
    assert sum(counts.values()) == n
    assert counts["queued"] > 0 and counts["in_service"] > 0
    out.check(ledger_active_energy_j=active)
    fin = out.status == FINISHED
    assert np.all(out.finish[fin] <= 4 * 900.0)
    assert np.all(np.isnan(out.start[out.status == QUEUED]))
    assert np.all(out.start[out.status == IN_SERVICE] < 4 * 900.0)
    # Tokens decoded + tokens left = response tokens routed.
    left = req.response_tokens - out.tokens_decoded
    assert float(out.tokens_decoded.sum() + left.sum()) == pytest.approx(
        float(req.response_tokens.sum())
    )
    assert np.all(out.start[fin] >= req.arrival_s[fin])


def test_queue_of_a_pool_left_without_instances_is_redispatched() -> None:
    """Pool A (1 instance) takes a 5000-s request at t = 0 and queues the one at t = 1;
    B (1 instance) is idle, unrouted. At the next boundary A is scaled to 0 and the
    shares send the model to B: the queued request moves to B and starts at 900 s (not
    in the past, though B's slot was free since 0), instead of waiting for A to come
    back; A's running request drains. Conservation still holds."""
    b_key = ("b", "m", "BF16")
    req = RequestArrays.from_arrays(
        np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), np.ones(2, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer([_pool(), _pool(key=b_key)], req, 3,
                                service_s=np.array([5000.0, 10.0]))
    s0 = server.run_interval(0, [1, 1], {KEY: 1.0})
    assert s0.queue_end.tolist() == [1, 0]
    s1 = server.run_interval(1, [0, 1], {b_key: 1.0})
    assert s1.started.tolist() == [0, 1] and s1.queue_end.tolist() == [0, 0]
    np.testing.assert_allclose(server.start, [0.0, 900.0])
    assert server.pool.tolist() == [0, 1]
    assert server.requeued_requests == 1
    server.run_interval(2, [0, 1], {b_key: 1.0})
    server.outcome().check()


def test_queue_without_another_route_stays() -> None:
    """Scaled to 0 with no other pool of the model routed: the queue waits for the pool."""
    req = RequestArrays.from_arrays(
        np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), np.ones(2, dtype=np.int64), ("m",)
    )
    server = RequestLevelServer([_pool()], req, 2, service_s=np.array([5000.0, 10.0]))
    server.run_interval(0, [1], {KEY: 1.0})
    s1 = server.run_interval(1, [0], {})
    assert s1.queue_end.tolist() == [1] and server.requeued_requests == 0


def test_conservation_with_pools_emptied_at_random() -> None:
    """Three pools of one model with different speeds and energies, instance counts
    drawn at random (zeros included, so queues are re-dispatched): records and ledger
    agree on tokens and active energy (a re-dispatched request starting in the past
    would put its tokens in an interval already reported: caught here at trial 16)."""
    rng = np.random.default_rng(1)
    keys = [("a", "m", "BF16"), ("b", "m", "BF16"), ("c", "m", "FP8")]
    pools = [PoolSpec(k, 2, 1000.0, 0.05 * (i + 1), 10.0, 0.1 * (i + 1), 30.0 * i,
                      2 / (0.05 * (i + 1))) for i, k in enumerate(keys)]
    moved = 0
    for _ in range(60):
        steps, n = 6, int(rng.integers(50, 400))
        req = RequestArrays.from_arrays(np.sort(rng.uniform(0, steps * 900, n)), np.zeros(n),
                                        rng.integers(1, 500, n), rng.integers(1, 400, n), ("m",))
        server = RequestLevelServer(pools, req, steps)
        active = 0.0
        for k in range(steps):
            inst = rng.integers(0, 3, 3)
            if inst.sum() == 0:
                inst[rng.integers(0, 3)] = 1
            shares = {keys[i]: float(rng.uniform(0.1, 1)) for i in range(3) if inst[i] > 0}
            active += float(server.run_interval(k, inst, shares).active_energy_j.sum())
        server.outcome().check(ledger_active_energy_j=active)
        started = ~np.isnan(server.start)
        assert np.all(server.start[started] >= req.arrival_s[started])
        moved += server.requeued_requests
    assert moved > 0


@given(st.lists(st.integers(0, 5), max_size=12), st.lists(st.integers(0, 39), max_size=12),
       st.booleans())
def test_merge_by_arrival_is_the_stable_sort_of_both_queues(
        arrivals: list[int], picks: list[int], in_order: bool) -> None:
    """Requeued requests join a queue in arrival order, ties behind it: the merge of two
    queues in order (the linear path) and of any two (the sort) equal the stable sort of
    their concatenation, including equal arrival times."""
    arrival_s = np.sort(np.array(arrivals + [9] * 40, dtype=float))[:40]
    rng = np.random.default_rng(len(picks))
    idx = np.array(picks, dtype=np.int64)
    if not in_order:
        rng.shuffle(idx)
    cut = len(idx) // 2
    queue, moved = (np.sort(idx[:cut]), np.sort(idx[cut:])) if in_order else (idx[:cut],
                                                                              idx[cut:])
    both = np.concatenate([queue, moved])
    expected = both[np.argsort(arrival_s[both], kind="stable")]
    merged = merge_by_arrival(queue, moved, arrival_s)
    assert merged.dtype == np.int64
    np.testing.assert_array_equal(merged, expected)


def test_a_pool_left_behind_reads_as_it_is_now() -> None:
    """One instance of 2 slots (100 W idle): requests at 1 s and 2 s run for 100 s
    and 150 s, one at 800 s for 200 s. Served in windows, the pool gets nothing after 60 s
    and :meth:`RequestLevelServer.serve_until` leaves it where it was (at 60 s, both
    requests running). Read at 300 s without anything else called, it reads as the same
    server served to 300 s in one window: no request running, 100 W, the energy drawn.
    In interval 1 the plan scales it to 0 while the 800-s request runs: it drains and
    goes off at ~1000 s; read at 1200 s it is off, and the energy so far is the whole
    interval's. (Before, the readers took a pool left behind at its last window's
    occupancy: 2 requests, the active power of both counted until 300 s, the drained
    instance still on.)"""
    req = RequestArrays.from_arrays(
        np.array([1.0, 2.0, 800.0]), np.zeros(3), np.zeros(3), np.full(3, 10, dtype=np.int64),
        ("m",))
    service = np.array([100.0, 150.0, 200.0])
    spec = _pool(slots=2, idle_w=100.0, marginal=1.0)
    windows = RequestLevelServer([spec], req, 2, service_s=service)
    one = RequestLevelServer([spec], req, 2, service_s=service)
    for server in (windows, one):
        server.begin_interval(0, [1], {KEY: 1.0})
    windows.serve_until(60.0)
    assert windows.occupancy_by(60.0)[0].tolist() == [2]
    windows.serve_until(300.0)
    one.serve_until(300.0)
    assert one.occupancy_by(300.0)[0].tolist() == [0]
    assert windows.occupancy_by(300.0)[0].tolist() == [0]
    assert windows.power_now_w().tolist() == one.power_now_w().tolist() == [100.0]
    np.testing.assert_allclose(windows.energy_so_far_j(), one.energy_so_far_j(), rtol=1e-12)
    assert one.energy_so_far_j()[0] > 100.0 * 300.0  # the requests' active energy counts
    windows.serve_until(900.0)
    windows.end_interval()
    windows.begin_interval(1, [0], {KEY: 1.0})
    assert windows.instance_counts(900.0)[2].tolist() == [1]  # draining, the 800-s request on
    windows.serve_until(1200.0)
    assert windows.instance_counts(1200.0)[2].tolist() == [0]
    assert windows.power_now_w().tolist() == [0.0]
    so_far = windows.energy_so_far_j()
    windows.serve_until(1800.0)
    stats = windows.end_interval()
    np.testing.assert_allclose(so_far, stats.idle_energy_j + stats.active_energy_j, rtol=1e-12)
    assert windows.finish[2] == pytest.approx(1000.0)
