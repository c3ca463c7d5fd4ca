"""Hand-solvable instances of the one problem on sites of inference pools only
(docs/fleet.md): campuses with GPUs, no other IT, renewable, battery or export, an
unlimited import (so grid import is the facility power).

Unless a test says otherwise: one campus "A" (PUE 1), one model "m", ρ̄ = 1, no
warm-up, no start, carbon or quality cost, price 100 $/MWh, Δ = 0.25 h. Costs
below are ``Δ · price · P``; P [MW] = Σ (p_idle n + e x) / 10⁶.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpc_dc.params.quant_table import QuantRow, QuantTable, load_quant_table
from mpc_dc.problem import (
    Form,
    HorizonInputs,
    PlantState,
    Problem,
    SolverOptions,
    StartRecord,
    round_instances,
    solve_day,
)
from mpc_dc.site.config import (
    CA_2026_AUCTION_RESERVE_USD_PER_T,
    Campus,
    Fleet,
    Flexibility,
    Grid,
    Site,
)

BASE_ROW = load_quant_table().get("qwen3-8b", "BF16")


def _row(precision: str, *, mu: float, gpus: int, idle_w: float, e_j: float,
         loss: float, load_s: float = 0.0) -> QuantRow:
    return dataclasses.replace(
        BASE_ROW, model="m", precision=precision, tokens_per_s_at_slo=mu, gpus_per_instance=gpus,
        idle_power_w=idle_w, marginal_energy_per_token_j=e_j, quality_delta_pct_points=-loss,
        load_time_s=load_s)


def campus(name: str, gpus: int, node: str | None = None, pue: float = 1.0) -> Campus:
    """A campus of pools only: no import limit, no export."""
    return Campus(name, node or name, carbon_zone="US-CAL-CISO", gpus=gpus, pue=pue,
                  grid=Grid(import_limit_mw=float("inf")))


def _config(rows: list[QuantRow], campuses: tuple[Campus, ...] = (campus("A", 8),),
            carbon_price_usd_per_t: float = 0.0, **fleet: object) -> Site:
    """The campuses serving model "m" from the table ``rows``; ``fleet`` overrides the
    fleet's fields (ρ̄ 1, no start or quality cost by default)."""
    args: dict[str, object] = dict(models=("m",), utilization_cap=1.0,
                                   start_cost_usd_per_gpu=0.0, quality_cost_usd_per_point_mtok=0.0,
                                   table=QuantTable(tuple(rows), "hand"))
    args.update(fleet)
    return Site(campuses, Fleet(**args), carbon_price_usd_per_t)  # type: ignore[arg-type]


def _inputs(demand: list[float], prices: list[list[float]]) -> HorizonInputs:
    """Demand of model "m" [tokens/s] and each campus's price (import and export) [$/MWh]."""
    price = np.array(prices, dtype=float)
    none = np.zeros_like(price)
    return HorizonInputs(np.array([demand], dtype=float), price, price, none, none, none)


def two_campus_site(gpus_b: int = 64, **fleet: object) -> Site:
    """Campuses A (NP15) and B (SP15) of 64 GPUs (B: ``gpus_b``), PUE 1.2, serving
    qwen3-8b and qwen3-32b from the shipped table; carbon at California's 2026 auction
    reserve price."""
    return Site((campus("A", 64, "NP15", 1.2), campus("B", gpus_b, "SP15", 1.2)),
                Fleet(models=("qwen3-8b", "qwen3-32b"), **fleet),  # type: ignore[arg-type]
                carbon_price_usd_per_t=CA_2026_AUCTION_RESERVE_USD_PER_T)


def random_inputs(rng: np.random.Generator, H: int) -> HorizonInputs:
    """Two models' demand 10-80 ktokens/s, two campuses' prices 20-80 $/MWh, carbon
    100-300 g/kWh."""
    demand, price = rng.uniform(1e4, 8e4, (2, H)), rng.uniform(20, 80, (2, H))
    carbon = rng.uniform(100, 300, (2, H))
    none = np.zeros((2, H))
    return HorizonInputs(demand, price, price, carbon, none, none)


FORMS = [Form.COMMITTED_INTEGER, Form.COMMITTED_MIP, Form.FULL_MILP]


@pytest.mark.parametrize("form", FORMS)
def test_quality_budget_binds(form: Form) -> None:
    """BF16: μ 1000 tok/s, 1 GPU, 100 W idle, 0.1 J/token; FP8: same but 0.05 J/token
    and 1 point quality loss. Budget 0.5 point → at most half the tokens on FP8.
    D = 2000 tok/s for 2 intervals → 1 BF16 + 1 FP8 instance, each 1000 tok/s;
    P = 200 + 100 + 50 = 350 W; cost = 2 · 0.25 · 100 · 350e-6 = 0.0175 $."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0),
                   _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.05, loss=1.0)],
                  quality_budget_pct_points=0.5)
    prob = Problem(cfg, 2)
    res = prob.solve(_inputs([2000, 2000], [[100, 100]]), PlantState(), form)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances, [[1, 1], [1, 1]], atol=1e-6)
    np.testing.assert_allclose(res.plan.tokens_per_s, [[1000, 1000], [1000, 1000]], atol=1e-3)
    assert res.cost.total_usd == pytest.approx(0.0175, rel=1e-6)
    assert res.unserved_tokens == pytest.approx(0.0, abs=1e-6)


def test_gpu_limit_forces_low_precision() -> None:
    """BF16 needs 2 GPUs per instance, FP8 1; FP8 costs more energy (0.2 vs 0.1 J/token)
    but G = 2 GPUs: serving 2000 tok/s needs 2 FP8 instances (2 GPUs), BF16 would need
    4. P = 2 · 100 + 2000 · 0.2 = 600 W; one interval: 0.25 · 100 · 600e-6 = 0.015 $."""
    cfg = _config([_row("BF16", mu=1000, gpus=2, idle_w=100, e_j=0.1, loss=0),
                   _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.2, loss=0.1)],
                  campuses=(campus("A", 2),), quality_budget_pct_points=1.0)
    res = Problem(cfg, 1).solve(_inputs([2000], [[100]]), PlantState(), Form.FULL_MILP)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances[:, 0], [0, 2], atol=1e-6)
    assert res.cost.total_usd == pytest.approx(0.015, rel=1e-6)


@pytest.mark.parametrize("spatial", [True, False])
def test_spatial_routing_moves_tokens_to_cheaper_campus(spatial: bool) -> None:
    """Campuses A (10 $/MWh) and B (100 $/MWh), 4 GPUs each, BF16 only, D = 2000 tok/s.
    With Sp: 2 instances at A, P_A = 200 + 200 = 400 W, cost 0.25·10·400e-6 = 0.001 $.
    Without: fixed shares 1/2 → 1 instance each, 200 W at each campus,
    cost 0.25·(10 + 100)·200e-6 = 0.0055 $."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)],
                  campuses=(campus("A", 4), campus("B", 4)),
                  flexibility=Flexibility(spatial=spatial))
    res = Problem(cfg, 1).solve(_inputs([2000], [[10], [100]]), PlantState())
    assert res.plan is not None and res.cost is not None
    if spatial:
        np.testing.assert_allclose(res.plan.instances[:, 0], [2, 0], atol=1e-6)
        assert res.cost.total_usd == pytest.approx(0.001, rel=1e-6)
    else:
        np.testing.assert_allclose(res.plan.instances[:, 0], [1, 1], atol=1e-6)
        assert res.cost.total_usd == pytest.approx(0.0055, rel=1e-6)
    # Routing follows the planned tokens: all to A with Sp, half each without.
    share = res.plan.decision(0).fleet.routing_share
    expect = {("A", "m", "BF16"): 1.0} if spatial else {("A", "m", "BF16"): 0.5,
                                                        ("B", "m", "BF16"): 0.5}
    assert share == pytest.approx(expect)


def test_unserved_reported_only_when_infeasible() -> None:
    """G = 2 GPUs, μ = 1000 tok/s, 1 GPU each: at most 2000 tok/s. D = 1500 → all served;
    D = 5000 → 3000 tok/s unserved, i.e. 3000 · 900 s = 2.7e6 tokens in the interval."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)],
                  campuses=(campus("A", 2),))
    prob = Problem(cfg, 1)
    ok = prob.solve(_inputs([1500], [[50]]), PlantState())
    assert ok.unserved_tokens == pytest.approx(0.0, abs=1e-6)
    short = prob.solve(_inputs([5000], [[50]]), PlantState())
    assert short.plan is not None and short.cost is not None
    assert short.unserved_tokens == pytest.approx(2.7e6, rel=1e-6)
    assert short.cost.unserved_usd > 0


def test_switching_off_keeps_fleet_constant() -> None:
    """D = 1000, 3000, 1000 tok/s, 1 instance running. Without Sw the fleet is sized for
    the peak: 3 instances in every interval. With Sw: 1, 3, 1."""
    rows = [_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0)]
    for sw, expect in ((False, [3, 3, 3]), (True, [1, 3, 1])):
        cfg = _config(rows, flexibility=Flexibility(switching=sw))
        res = Problem(cfg, 3).solve(_inputs([1000, 3000, 1000], [[50, 50, 50]]),
                                    PlantState({("A", "m", "BF16"): 1}), Form.FULL_MILP)
        assert res.plan is not None
        np.testing.assert_allclose(res.plan.instances[0], expect, atol=1e-6)


@pytest.mark.parametrize(("sw", "expect", "cost"), [(True, [3, 3, 1], 0.015),
                                                    (False, [3, 3, 3], 0.0175)])
def test_warmup_starts_instances_an_interval_early(sw: bool, expect: list[int],
                                                   cost: float) -> None:
    """Load time 675 s = 3/4 of an interval: an instance started in an interval serves
    a quarter of it. D = 1000, 3000, 1000 tok/s, 1 instance running, μ = 1000 tok/s,
    100 W idle, 0.1 J/token, 50 $/MWh.

    With Sw: starting the 2 extra instances in interval 1 itself would give
    1000 (n − 0.75 (n − 1)) >= 3000, i.e. n = 9; starting them in interval 0 gives
    3 · 1000 − 0.75 · 2 · 1000 = 1500 >= 1000 there and 3000 in interval 1: n = 3, 3, 1
    (7 instance-intervals, the fewest). Power: idle 100 · 7 + tokens 0.1 · 5000 =
    1200 W over the intervals, cost 0.25 · 50 · 1200e-6 = 0.015 $ (without warm-up
    it would be 1, 3, 1 at 0.0125 $). Without Sw: 3 in every interval, the first
    interval's 1500 tok/s still covers its 1000: 0.25 · 50 · 1400e-6 = 0.0175 $."""
    rows = [_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0, load_s=675.0)]
    cfg = _config(rows, flexibility=Flexibility(switching=sw))
    res = Problem(cfg, 3).solve(_inputs([1000, 3000, 1000], [[50, 50, 50]]),
                                PlantState({("A", "m", "BF16"): 1}), Form.FULL_MILP)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances[0], expect, atol=1e-6)
    np.testing.assert_allclose(res.plan.starts[0], [2, 0, 0], atol=1e-6)
    assert res.cost.total_usd == pytest.approx(cost, rel=1e-6)
    assert res.unserved_tokens == pytest.approx(0.0, abs=1e-6)


def test_warmup_without_an_earlier_interval_leaves_tokens_unserved() -> None:
    """Same pool, 8 GPUs, one interval, D = 3000 tok/s from 1 running instance: 8
    instances (7 starting) serve 1000 (8 − 0.75 · 7) = 2750 tok/s; 250 tok/s ·
    900 s = 225,000 tokens are unserved."""
    rows = [_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0, load_s=675.0)]
    res = Problem(_config(rows), 1).solve(_inputs([3000], [[50]]),
                                          PlantState({("A", "m", "BF16"): 1}), Form.FULL_MILP)
    assert res.plan is not None
    np.testing.assert_allclose(res.plan.instances[0], [8], atol=1e-6)
    assert res.unserved_tokens == pytest.approx(225_000, rel=1e-6)


def test_joint_rounding_does_not_add_an_instance_per_precision() -> None:
    """Sw off, one campus, BF16 and FP8 both μ 1000 tok/s, 1 GPU, 100 W idle; BF16
    0.1 J/token, FP8 0.05 J/token with 1 point loss, budget 0.5 point; D = 1000 tok/s.
    LP: 500 tok/s on each, n = 0.5 + 0.5, P = 100 + 50 + 25 = 175 W (bound
    2 · 0.25 · 100 · 175e-6 = 0.00875 $). Per-pool ceil: 1 + 1 instances, 275 W.
    Joint: one instance covers 1000 tok/s; FP8 alone breaks the budget (1000 > 500
    points·tok/s), so 1 BF16: P = 100 + 100 = 200 W, 0.01 $ (= BF16 only, S1)."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0),
                   _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.05, loss=1.0)],
                  quality_budget_pct_points=0.5, flexibility=Flexibility(switching=False))
    prob = Problem(cfg, 2)
    inputs = _inputs([1000, 1000], [[100, 100]])
    lp = prob.solve(inputs, PlantState(), Form.LP)
    assert lp.plan is not None
    np.testing.assert_allclose(lp.plan.instances, [[0.5, 0.5], [0.5, 0.5]], atol=1e-6)
    gpus = np.full((1, 2), 8.0)
    demand = np.array([[1000.0, 1000.0]])
    joint = round_instances(prob.ctx, lp.plan.instances, lp.plan.tokens_per_s, np.zeros(2),
                            gpus, demand, price_usd_per_mwh=np.full((1, 2), 100.0),
                            constant=True)
    np.testing.assert_array_equal(joint, [[1, 1], [0, 0]])
    # without prices (LP remainder order) and without the quality check it still adds one
    plain = round_instances(prob.ctx, lp.plan.instances, lp.plan.tokens_per_s, np.zeros(2),
                            gpus)
    assert plain.sum(axis=0).tolist() == [1, 1]
    res = prob.solve(inputs, PlantState(), Form.COMMITTED_INTEGER)
    assert res.plan is not None and res.cost is not None
    np.testing.assert_allclose(res.plan.instances, [[1, 1], [0, 0]], atol=1e-9)
    assert res.cost.total_usd == pytest.approx(0.01, rel=1e-6)
    assert res.lp_bound_usd == pytest.approx(0.00875, rel=1e-6)
    assert res.unserved_tokens == pytest.approx(0.0, abs=1e-6)
    d = res.plan.decision(0).fleet  # the integral committed counts are not re-inflated
    assert d.instances == {("A", "m", "BF16"): 1, ("A", "m", "FP8"): 0}


def test_cost_matches_objective_and_forms_are_ordered() -> None:
    """LP bound <= full MILP <= round-and-fix over all intervals; the LP's HiGHS
    objective equals the cost recomputed from its plan."""
    H = 8
    inputs = random_inputs(np.random.default_rng(1), H)
    prob = Problem(two_campus_site(), H)
    lp = prob.solve(inputs, PlantState(), Form.LP)
    full = prob.solve(inputs, PlantState(), Form.FULL_MILP)
    day = solve_day(prob, inputs, PlantState())
    assert lp.cost is not None and full.cost is not None and day.cost is not None
    assert lp.objective_usd <= full.objective_usd * (1 + 1e-6)
    assert full.objective_usd <= day.objective_usd * (1 + 2e-3)
    assert np.allclose(day.plan.instances, np.round(day.plan.instances))  # type: ignore[union-attr]
    assert lp.lp_bound_usd == pytest.approx(lp.objective_usd, rel=1e-6)


def test_dr_settlement_and_cap_penalty() -> None:
    """Baseline 1 kW in an event interval, reward 1 $/kWh, penalty 2 $/kWh, cap = baseline.
    Power 0.3 kW (1 instance 100 W idle + 2000 tok/s · 0.1 J) → settlement
    0.25 h · 1 · (1 − 0.3) kW = 0.175 $ reward, no penalty."""
    cfg = _config([_row("BF16", mu=3000, gpus=1, idle_w=100, e_j=0.1, loss=0)])
    inputs = dataclasses.replace(_inputs([2000], [[0.0]]), dr_event=np.ones((1, 1)),
                                 dr_baseline_mw=np.full((1, 1), 1e-3))
    res = Problem(cfg, 1).solve(inputs, PlantState())
    assert res.cost is not None
    assert res.cost.dr_reward_usd == pytest.approx(0.175, rel=1e-6)
    assert res.cost.dr_penalty_usd == pytest.approx(0.0, abs=1e-9)


def receding_windows(series: HorizonInputs, H: int) -> list[HorizonInputs]:
    """Every ``H``-interval window of ``series``, each one interval after the last."""
    N = series.horizon_steps
    return [HorizonInputs(*(getattr(series, name)[:, k:k + H] for name in (
        "demand_tokens_per_s", "import_price_usd_per_mwh", "export_price_usd_per_mwh",
        "carbon_gco2_per_kwh", "renewable_cf", "work_nd_wu"))) for k in range(N - H + 1)]


def _receding_case() -> tuple[Site, list[HorizonInputs], int]:
    """Two campuses, two models, H = 6, seven receding steps of a 12-interval series."""
    H = 6
    return two_campus_site(), receding_windows(random_inputs(np.random.default_rng(3), 12), H), H


def test_shift_maps_move_columns_and_rows_one_interval() -> None:
    """Column (k, t) comes from (k, t+1); the start row at t = 0 (``u − n ≥ −n0``) comes
    from the start row at t = 1 (``u − n + n_prev ≥ 0``); the last interval keeps its own."""
    cfg, _, H = _receding_case()
    prob = Problem(cfg, H)
    fast = prob.model(False).fast
    col_src, row_src, row_time = fast.shift_maps(H)
    n = fast.columns("instances")
    P = prob.ctx.n_pools
    np.testing.assert_array_equal(col_src[n[: P * (H - 1)]], n[P:])
    np.testing.assert_array_equal(col_src[n[P * (H - 1):]], n[P * (H - 1):])
    shifted = row_src != np.arange(fast.n_rows)
    assert np.all(row_time[shifted] < H - 1)
    np.testing.assert_array_equal(row_time[row_src[shifted]], row_time[shifted] + 1)
    A = fast.matrix.tocsr()
    u = fast.columns("starts")
    start_row0 = int(np.flatnonzero(A[:, [u[0]]].toarray().ravel())[0])
    assert row_time[start_row0] == 0
    src = row_src[start_row0]
    assert row_time[src] == 1 and A[src, u[P]] != 0


def test_shifted_basis_is_complete() -> None:
    cfg, steps, H = _receding_case()
    prob = Problem(cfg, H)
    prob.solve(steps[0], PlantState(), Form.LP)
    fast = prob.model(False).fast
    basis = fast.current_basis()
    assert basis is not None
    col, row = fast.shift_basis(basis, fast.shift_maps(H))
    assert np.count_nonzero(col == 1) + np.count_nonzero(row == 1) == fast.n_rows
    assert fast.set_basis(col, row)


@pytest.mark.parametrize("warm", ["auto", "shift", "same"])
def test_warm_started_receding_solves_match_cold(warm: str) -> None:
    """The starting basis changes the path, never the optimum: on a receding sequence
    every warm-started LP and committed-integer solve equals a cold one; ``auto``
    recognises the shifted inputs as a step and identical inputs as a re-solve."""
    cfg, steps, H = _receding_case()
    warm_prob = Problem(cfg, H, SolverOptions(warm_start=warm))
    cold_prob = Problem(cfg, H, SolverOptions(warm_start="cold"))
    state = PlantState()
    for i, inputs in enumerate(steps):
        for form in (Form.LP, Form.COMMITTED_INTEGER):
            favourite = warm_prob.model(False).starts.favourite()
            a = warm_prob.solve(inputs, state, form)
            b = cold_prob.solve(inputs, state, form)
            assert a.objective_usd == pytest.approx(b.objective_usd, rel=1e-6, abs=1e-9)
            assert cold_prob.last_warm_start == "cold"
            if warm == "auto" and i > 0:
                # LP after a new step: a receding step, from the measured favourite;
                # committed-integer re-solves the same inputs: unshifted, no step
                assert warm_prob.model(False).starts.steps == i
                assert warm_prob.last_warm_start == (favourite if form is Form.LP else "same")
        assert a.plan is not None
        state = PlantState({p: round(a.plan.instances[k, 0]) for k, p in enumerate(a.plan.pools)})


@pytest.mark.parametrize("status", ["kSolveError", "kNotset"])
def test_rejected_warm_basis_falls_back_to_a_cold_solve(monkeypatch: pytest.MonkeyPatch,
                                                        status: str) -> None:
    """HiGHS may answer kSolveError to a warm basis (seen at 288 steps) or stop with
    kNotset ("excessive dual values", seen with a coarse tail): the LP is then solved
    cold, counted, and gives the cold optimum."""
    cfg, steps, H = _receding_case()
    prob = Problem(cfg, H, SolverOptions(warm_start="shift"))
    prob.solve(steps[0], PlantState(), Form.LP)
    fast = prob.model(False).fast
    real_solve = fast.solve
    calls: list[str] = []

    def reject_warm() -> object:
        calls.append(prob.last_warm_start)
        solution = real_solve()
        if prob.last_warm_start != "cold":
            return dataclasses.replace(solution, model_status=status, x=None)
        return solution

    monkeypatch.setattr(fast, "solve", reject_warm)
    warm = prob.solve(steps[1], PlantState(), Form.LP)
    cold = Problem(cfg, H, SolverOptions(warm_start="cold")).solve(
        steps[1], PlantState(), Form.LP)
    assert calls == ["shift", "cold"]
    assert prob.warm_start_failures == 1
    assert warm.objective_usd == pytest.approx(cold.objective_usd, rel=1e-6)


@pytest.mark.parametrize(("shift_iterations", "same_iterations", "expected"),
                         [(1000, 10, "same"), (10, 1000, "shift")])
def test_auto_warm_start_takes_the_start_measured_cheaper(
        monkeypatch: pytest.MonkeyPatch, shift_iterations: int, same_iterations: int,
        expected: str) -> None:
    """``auto`` starts a receding step from the basis that needed fewer simplex
    iterations on the same data: with HiGHS's counts replaced (shifted start 1000,
    unshifted 10, or the reverse), the first step starts shifted and probes the
    unshifted start, and every later step starts from the cheaper one; the probe
    steps (the first four) also run the other start, the rest only one LP."""
    cfg, steps, H = _receding_case()
    prob = Problem(cfg, H, SolverOptions(warm_start="auto"))
    state = PlantState()
    prob.solve(steps[0], state, Form.LP)
    model = prob.model(False)
    fast = model.fast
    real_set_basis, real_solve = fast.set_basis, fast.solve
    given: list[str] = []  # the start of a basis set since the last run
    solved: list[str] = []

    def set_basis(col: np.ndarray, row: np.ndarray) -> bool:
        unshifted = model.basis is not None and np.array_equal(col, model.basis[0])
        given[:] = ["same" if unshifted else "shift"]
        return real_set_basis(col, row)

    def solve() -> object:
        sol = real_solve()
        # no basis given: HiGHS continues from the one it holds (unshifted)
        kind = given.pop() if given else prob.last_warm_start
        solved.append(kind)
        count = {"shift": shift_iterations, "same": same_iterations}.get(kind, 0)
        return dataclasses.replace(sol, simplex_iterations=count)

    monkeypatch.setattr(fast, "set_basis", set_basis)
    monkeypatch.setattr(fast, "solve", solve)
    starts, runs = [], []
    for inputs in steps[1:]:
        before = len(solved)
        prob.solve(inputs, state, Form.LP)
        starts.append(prob.last_warm_start)
        runs.append(len(solved) - before)
    assert starts == ["shift"] + [expected] * (len(steps) - 2)
    assert runs == [2, 2, 2, 2] + [1] * (len(steps) - 5)
    assert model.starts.favourite() == expected


def test_start_record_probes_and_averages() -> None:
    """Probe steps: the first four, then every 37th; the record is an exponential
    average (newest 0.2) of unshifted minus shifted iterations; ties favour the shift."""
    record = StartRecord()
    assert record.favourite() == "shift"
    probes = [step for step in range(1, 120) if record.probe_due()]
    assert probes == [1, 2, 3, 4, 37, 74, 111]
    record.score("shift", 100, 60)  # unshifted 60: 40 fewer
    assert record.difference == -40.0 and record.favourite() == "same"
    record.score("same", 60, 260)  # shifted 260
    assert record.difference == pytest.approx(-40.0 + 0.2 * (-200.0 + 40.0))
    record.score("same", 300, 100)  # unshifted 200 more
    assert record.difference == pytest.approx(-72.0 + 0.2 * (200.0 + 72.0))
    assert record.favourite() == "same"  # -17.6: one probe does not overturn it
    record.score("shift", 50, 400)  # unshifted 350 more
    assert record.difference == pytest.approx(-17.6 + 0.2 * (350.0 + 17.6))
    assert record.favourite() == "shift"


def test_warm_start_option_is_checked() -> None:
    with pytest.raises(ValueError, match="warm_start"):
        SolverOptions(warm_start="hot")


def test_full_milp_start_and_fixed_bounds_restored() -> None:
    """A MIP start (the rounded plan) is taken by HiGHS and does not change the optimum;
    fixing instances for one solve leaves the model's bounds as compiled.

    BF16 and FP8 pools as in ``test_quality_budget_binds``, D = 2500, 4000, 1500 tok/s."""
    cfg = _config([_row("BF16", mu=1000, gpus=1, idle_w=100, e_j=0.1, loss=0),
                   _row("FP8", mu=1000, gpus=1, idle_w=100, e_j=0.05, loss=1.0)],
                  quality_budget_pct_points=0.5)
    H = 3
    prob = Problem(cfg, H, SolverOptions(full_mip_rel_gap=1e-9, round_chunk_intervals=1))
    inputs = _inputs([2500, 4000, 1500], [[100, 60, 100]])
    rounded = prob.solve(inputs, PlantState(), integer_intervals=H)
    assert rounded.plan is not None
    np.testing.assert_allclose(rounded.plan.instances, np.round(rounded.plan.instances))
    plain = prob.solve(inputs, PlantState(), Form.FULL_MILP)
    started = prob.solve(inputs, PlantState(), Form.FULL_MILP, start=rounded.plan)
    assert started.objective_usd == pytest.approx(plain.objective_usd, rel=1e-9)
    assert plain.objective_usd <= rounded.objective_usd * (1 + 1e-9)
    lp = prob.solve(inputs, PlantState(), Form.LP)
    fixed = prob.solve(inputs, PlantState(), Form.LP,
                       fix_instances=rounded.plan.instances[:, :1] + 1)
    again = prob.solve(inputs, PlantState(), Form.LP)
    assert fixed.objective_usd > lp.objective_usd
    assert again.objective_usd == pytest.approx(lp.objective_usd, rel=1e-9)


def _quality_bound_site(gpus: int) -> Site:
    """One campus of ``gpus`` GPUs, 4-GPU instances of BF16 (1,000 tokens/s) and FP8
    (1,500 tokens/s, 1 quality point lost), a quality budget of 0.5 points: FP8 may
    serve at most half of the demand."""
    return _config([_row("BF16", mu=1000, gpus=4, idle_w=100, e_j=0.1, loss=0),
                    _row("FP8", mu=1500, gpus=4, idle_w=100, e_j=0.05, loss=1.0)],
                   campuses=(campus("A", gpus),), quality_budget_pct_points=0.5)


@pytest.mark.parametrize(("share", "repaired"), [(0.1, True), (0.2, False)])
def test_chunk_mip_repairs_a_loss_beyond_the_repair_token_share(share: float,
                                                                repaired: bool) -> None:
    """12 GPUs (3 instances), demand 4,200 tokens/s: the relaxation serves 3,600
    (1.8 BF16 + 1.2 FP8, FP8 at its 2,100 cap); the joint rounding keeps 1 BF16 + 2 FP8,
    3,100 (FP8 capped at 2,100), 500 tokens/s = 11.9 % of the interval's demand lost;
    the chunk MIP finds 2 BF16 + 1 FP8, 3,500. A share below 11.9 % repairs, above
    keeps the rounding."""
    prob = Problem(_quality_bound_site(12), 2, SolverOptions(repair_token_share=share))
    res = prob.solve(_inputs([4200, 4200], [[100, 100]]), PlantState())
    assert res.plan is not None
    first = res.plan.instances[:, 0]
    served = res.plan.tokens_per_s[:, 0].sum()
    if repaired:
        assert (prob.chunk_mip_repairs, prob.repairs_skipped) == (1, 0)
        np.testing.assert_allclose(first, [2, 1])
        assert served == pytest.approx(3500)
    else:
        assert (prob.chunk_mip_repairs, prob.repairs_skipped) == (0, 1)
        np.testing.assert_allclose(first, [1, 2])
        assert served == pytest.approx(3100)


def test_default_keeps_a_rounding_that_loses_a_sliver_of_a_large_fleet() -> None:
    """12,000 GPUs, demand 4,200,100 tokens/s: the relaxation fills the 3,000 slots with
    1,599.97 BF16 + 1,400.03 FP8; rounding loses under 10⁻³ of the interval's tokens.
    By default the rounding is kept (no MIP: at the DR seed's scale each ran into the
    5-s limit); ``repair_token_share = 0`` repairs it as before."""
    site, inputs = _quality_bound_site(12_000), _inputs([4_200_100, 4_200_100], [[100, 100]])
    kept = Problem(site, 2)
    res = kept.solve(inputs, PlantState())
    assert kept.chunk_mip_repairs == 0
    assert kept.repairs_skipped == 1
    assert (res.chunk_mip_repairs, res.repairs_skipped) == (0, 1)  # the solve's own counts
    lp = kept.solve(inputs, PlantState(), Form.LP)
    assert res.plan is not None and lp.plan is not None
    lost = lp.plan.tokens_per_s[:, 0].sum() - res.plan.tokens_per_s[:, 0].sum()
    assert 0 < lost <= 1e-3 * 4_200_100
    strict = Problem(site, 2, SolverOptions(repair_token_share=0.0))
    repaired = strict.solve(inputs, PlantState())
    assert (strict.chunk_mip_repairs, strict.repairs_skipped) == (1, 0)
    assert (repaired.chunk_mip_repairs, repaired.repairs_skipped) == (1, 0)
    assert repaired.objective_usd <= res.objective_usd


def test_repair_token_share_is_checked() -> None:
    with pytest.raises(ValueError, match="repair_token_share"):
        SolverOptions(repair_token_share=1.0)


def test_whole_horizon_dive_redoes_a_chunk_that_loses_tokens(shared_data: object) -> None:
    """Regression (DR study week, S6, step 547, the fleet state the closed loop had there):
    rounding intervals 64-71 at once from one relaxation left 1,100 tokens/s unserved at
    69-71 (GPU-full campuses, instances that load for a whole interval), a plan 83 %
    above the LP bound. The chunk is now redone in halves: no token lost, within 1 %."""
    from pathlib import Path

    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data, study_site

    study = DrStudyConfig()
    data = load_dr_data(Path(str(shared_data)), study)
    # the table of that run (issue 15 changed its idle powers), so the state is the one
    # that lost tokens
    table = load_quant_table(Path(__file__).parent / "data"
                             / "quant_power_table_before_issue15.csv")
    # the DR study's fleet on the table of that run
    site = study_site()
    assert site.fleet is not None
    site = dataclasses.replace(site, fleet=dataclasses.replace(site.fleet, flexibility="S6",
                                                               table=table))
    k, H = 547, 96
    price = data.price_usd_per_mwh[:, k:k + H]
    none = np.zeros_like(price)
    inputs = HorizonInputs(data.demand_tokens_per_s[:, k:k + H], price, price,
                           data.carbon_gco2_per_kwh[:, k:k + H], none, none)
    running = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 54, 60, 0, 0, 55, 64, 0, 91, 80, 0, 42, 103, 0, 0,
               44, 113, 0, 48, 150, 0]
    prob = Problem(site, H)
    state = PlantState(dict(zip(prob.pools, running, strict=True)))
    lp = prob.solve(inputs, state, Form.LP)
    dive = prob.solve(inputs, state, integer_intervals=H)
    assert dive.plan is not None and dive.cost is not None
    assert prob.finer_dives >= 1
    assert dive.cost.unserved_usd == pytest.approx(0.0, abs=1e-6)
    assert dive.objective_usd <= 1.01 * lp.objective_usd
    assert np.allclose(dive.plan.instances, np.round(dive.plan.instances))


def test_controller_stats_count_the_rounding_repairs() -> None:
    """The solves' repair counts reach the controller's stats (the KPIs
    ``chunk_mip_repairs`` and ``repairs_skipped``)."""
    from mpc_dc.control.mpc import ControllerStats

    site, inputs = _quality_bound_site(12_000), _inputs([4_200_100, 4_200_100], [[100, 100]])
    stats = ControllerStats()
    for options in (SolverOptions(), SolverOptions(repair_token_share=0.0)):
        stats.record(Problem(site, 2, options).solve(inputs, PlantState()))
    assert (stats.chunk_mip_repairs, stats.repairs_skipped) == (1, 1)
