"""The queueing a 15-min mean hides (issue 16): the late share of a model's bursts by
utilisation (:mod:`mpc_dc.sim.bursts`), the congestion knee weights calibrated on it
and the plan's price with them, the overload while new instances load
(:mod:`mpc_dc.blocks.lateness`) and the rounding that keeps what they buy, by hand; the
scenario keys that switch them on."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from mpc_dc.blocks.lateness import CONGESTION_KNEES, calibrated_knee_weights
from mpc_dc.problem import (
    Form,
    HorizonInputs,
    LatenessPrices,
    PlantState,
    Problem,
    SolverOptions,
)
from mpc_dc.runner import history_knee_weights, plan_lateness, solver_options
from mpc_dc.sim.bursts import BURST_UTILISATIONS, window_late_share
from mpc_dc.site.config import Site
from mpc_dc.site.data import build_site_exogenous
from mpc_dc.site.scenario import Scenario, controller_variant, default_scenario
from tests.test_lateness import _two_campus_site
from tests.test_problem_fleet import _config, _inputs, _row


def _one_burst() -> tuple[np.ndarray, np.ndarray]:
    """One 900-s interval in 100-s windows: 100 tokens in each of windows 0–7 (one
    request at 50 s into each), 1000 in window 8 (ten requests of 100 at 850 s).
    1800 tokens: mean 2 tokens/s; window rates 1 (eight) and 10 tokens/s (one)."""
    arrival = np.concatenate([50.0 + 100.0 * np.arange(8), np.full(10, 850.0)])
    tokens = np.concatenate([np.full(8, 100), np.full(10, 100)])
    return arrival, tokens


def _calibrated(scenario: Scenario) -> Scenario:
    """``scenario`` with ``controller.congestion_calibration = "history"``: the history's
    bursts are measured only then."""
    return replace(scenario, controller=replace(scenario.controller,
                                                congestion_calibration="history"))


@pytest.mark.parametrize(("utilisation", "share"), [
    # capacity at the SLO of a pool planned at u for 2 tokens/s, ρ̄ = 1: 2 / u
    (0.1, 0.0),          # 20 tokens/s: no window beyond it
    (0.15, 0.0),         # 13.3: still none
    (0.25, 1000 / 1800),  # 8: the burst's window (10) is
    (1.0, 1000 / 1800),  # 2: the burst's window only (the others run at 1)
])
def test_window_late_share_by_hand(utilisation: float, share: float) -> None:
    arrival, tokens = _one_burst()
    got = window_late_share(arrival, tokens, 900.0, 100.0, 1.0, (utilisation,))
    assert got == pytest.approx([share])


def test_window_late_share_takes_the_cap_and_a_short_last_window() -> None:
    """ρ̄ = 0.5 halves the capacity: at u = 0.25 it is 2 / (0.5 · 0.25) = 16 tokens/s,
    beyond the burst's 10. With 200-s windows (the last 100 s long), the burst's
    window (800–900 s) holds 1000 tokens over 100 s: 10 tokens/s; windows 0–3 hold
    200 tokens over 200 s: 1 token/s; at u = 0.5, ρ̄ = 1 (4 tokens/s) the burst's
    window alone is beyond."""
    arrival, tokens = _one_burst()
    assert window_late_share(arrival, tokens, 900.0, 100.0, 0.5, (0.25, 0.5)) \
        == pytest.approx([0.0, 1000 / 1800])
    assert window_late_share(arrival, tokens, 900.0, 200.0, 1.0, (0.5,)) \
        == pytest.approx([1000 / 1800])
    # nothing arrived: nothing late; a window must be positive
    assert window_late_share(arrival, tokens, 0.0, 100.0, 1.0, (0.5,)) == pytest.approx([0.0])
    with pytest.raises(ValueError, match="window_s"):
        window_late_share(arrival, tokens, 900.0, 0.0, 1.0)


def test_calibrated_knee_weights_by_hand() -> None:
    """p(u) = u − 0.5: g(r) = r p(r) is 0.14, 0.24, 0.36, 0.5 at 0.7, 0.8, 0.9, 1;
    slopes 1.0, 1.2, 1.4 less g(0.7)/0.7 = 0.2: 0.8, 1.0, 1.2, so w = 0.8, 0.2, 0.2.
    A constant p is a price on every token alike: no weight. A late share whose g
    bends down beyond 0.9 keeps the slope before (convex)."""
    u = np.array([0.5, 1.0])
    assert calibrated_knee_weights(u, u - 0.5) == pytest.approx((0.8, 0.2, 0.2))
    assert calibrated_knee_weights(u, np.full(2, 0.3)) == pytest.approx((0.0, 0.0, 0.0))
    # p = 0 up to 0.8, 0.1 at 0.9 and 1: g 0, 0, 0.09, 0.1: slopes 0, 0.9, 0.1 -> 0, 0.9, 0.9
    grid = np.array((0.5, *CONGESTION_KNEES, 1.0))
    share = np.array([0.0, 0.0, 0.0, 0.1, 0.1])
    assert calibrated_knee_weights(grid, share) == pytest.approx((0.0, 0.9, 0.0))


@pytest.mark.parametrize(("demand", "hinges"), [
    (1400.0, 0.0), (1700.0, 0.3 * 0.15), (1900.0, 0.3 * 0.25 + 0.5 * 0.05),
    (2000.0, 0.3 * 0.3 + 0.5 * 0.1)])
def test_plan_prices_congestion_with_per_model_weights(demand: float, hinges: float) -> None:
    """Knee weights w = (0.3, 0, 0.5) in place of σ at every knee: the two-campus site
    of tests/test_lateness.py (one instance of 1000 tokens/s each, same price) splits
    D evenly at r = D / 2000 and pays 2 × 1000 tokens/s × f(r) × 1e-5 $ × 900 s with
    f(r) = 0.3 max(0, r − 0.7) + 0.5 max(0, r − 0.9)."""
    site = _two_campus_site()
    inputs = HorizonInputs.build(site, 1, price_usd_per_mwh=[[30.0], [30.0]],
                                 demand_tokens_per_s=[[demand]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    weighted = LatenessPrices((1e-5,), (1e-8,), congestion_weights=((0.3, 0.0, 0.5),))
    results = [Problem(site, 1, lateness=p).solve(inputs, state, Form.COMMITTED_INTEGER)
               for p in (LatenessPrices((1e-5,), (1e-8,)), weighted)]
    without, with_price = results
    by_hand = 2 * 1000.0 * hinges * 1e-5 * 900.0
    assert with_price.cost is not None
    assert with_price.cost.congestion_usd == pytest.approx(by_hand, abs=1e-9)
    assert with_price.lp_bound_usd - without.lp_bound_usd == pytest.approx(by_hand, abs=1e-9)


def test_lateness_prices_refuse_weights_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="one weight per model and knee"):
        LatenessPrices((1e-5,), (1e-8,), congestion_weights=((0.3, 0.5),))
    with pytest.raises(ValueError, match="finite values >= 0"):
        LatenessPrices((1e-5,), (1e-8,), congestion_weights=((0.3, -0.1, 0.5),))
    assert not LatenessPrices((1e-5,), (1e-8,)).congested


def test_history_calibration_key_prices_the_history_bursts() -> None:
    """The default scenario: every model's bursts measured on its history, the late
    share rising with the utilisation; ``congestion_calibration = "history"`` puts
    their knee weights in the plan's prices, ``share`` keeps σ."""
    scenario = default_scenario()
    exo = build_site_exogenous(_calibrated(scenario))
    assert set(exo.burst_late_share) == set(exo.site.models)
    for share in exo.burst_late_share.values():
        assert share.shape == (len(BURST_UTILISATIONS),)
        assert np.all(np.diff(share) >= 0) and share[-1] > share[0]
    # ``share`` set explicitly: the default is ``auto`` (→ ``history`` here) since session 14.
    shared = plan_lateness(replace(scenario, controller=replace(
        scenario.controller, congestion_calibration="share")), exo)
    assert shared is not None and shared.congestion_weights == ()
    calibrated = plan_lateness(replace(scenario, controller=replace(
        scenario.controller, congestion_calibration="history")), exo)
    assert calibrated is not None
    assert calibrated.congestion_weights == history_knee_weights(exo)
    assert calibrated.knee_weights().shape == (len(exo.site.models), len(CONGESTION_KNEES))
    with pytest.raises(ValueError, match="needs history requests of every model"):
        history_knee_weights(replace(exo, burst_late_share={}))


def _one_pool_site() -> Site:
    """One campus of 8 GPUs, one pool: 1-GPU instances of μ = 1000 tokens/s at the SLO
    (ρ̄ = 1), 100 W idle, no energy per token, 90-s load, no start cost."""
    return _config([_row("BF16", mu=1000, gpus=1, idle_w=100.0, e_j=0.0, loss=0,
                         load_s=90.0)])


@pytest.mark.parametrize("round_up_trial", [False, True])
def test_warmup_overload_is_priced_and_bought_off_by_an_early_start(
        round_up_trial: bool) -> None:
    """Demand 500 then 1500 tokens/s, one instance running, 30 $/MWh. The mean alone
    lets the plan start the second instance in column 1 (capacity 1000 (2 − 90/900)
    = 1900 >= 1500), but for its 90-s load the ready instance serves 1000 tokens/s at
    the SLO: 500 tokens/s × 90 s = 45,000 tokens late, each at 1e-5 $ plus 45 s ×
    1e-8 $/s: 0.47025 $. Starting it in column 0 instead costs 100 W × 0.25 h ×
    30 $/MWh = 0.00075 $. The relaxation does that (n = 1.56 in column 0); the joint
    rounding covers column 0's 500 tokens/s with one instance and loses it, the
    round-up trial keeps it."""
    site = _one_pool_site()
    inputs = _inputs([500.0, 1500.0], [[30.0, 30.0]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    prices = LatenessPrices((1e-5,), (1e-8,), warmup=True)
    res = Problem(site, 2, SolverOptions(round_up_trial=round_up_trial),
                  lateness=prices).solve(inputs, state, Form.COMMITTED_INTEGER)
    assert res.plan is not None and res.cost is not None
    if round_up_trial:
        assert res.plan.instances[0, 0] == pytest.approx(2.0)
        assert res.cost.congestion_usd == pytest.approx(0.0, abs=1e-9)
    else:
        assert res.plan.instances[0, 0] == pytest.approx(1.0)
        assert res.cost.congestion_usd == pytest.approx(45_000 * (1e-5 + 45 * 1e-8))
    # unpriced, the plan starts late whatever the rounding
    plain = Problem(site, 2, SolverOptions(round_up_trial=True),
                    lateness=LatenessPrices((1e-5,), (1e-8,))).solve(
        inputs, state, Form.COMMITTED_INTEGER)
    assert plain.plan is not None and plain.plan.instances[0, 0] == pytest.approx(1.0)


def test_scenario_keys_switch_the_round_up_trial() -> None:
    """The defaults price the bursts, so the trial is on; with both keys off it is off,
    and either key (``auto`` too, the calibration's default) switches it on; without the
    lateness block there are no burst prices for it to keep."""
    spec = default_scenario().controller
    assert solver_options(spec).round_up_trial
    off = replace(spec, congestion_calibration="share", warmup_lateness=False)
    assert not solver_options(off).round_up_trial
    assert solver_options(replace(off, warmup_lateness=True)).round_up_trial
    assert solver_options(replace(off, congestion_calibration="history")).round_up_trial
    assert solver_options(replace(off, congestion_calibration="auto")).round_up_trial
    assert not solver_options(replace(spec, lateness_weight=0.0)).round_up_trial


def test_fleet_defaults_price_the_bursts_and_auto_falls_back_to_share(
        caplog: pytest.LogCaptureFixture) -> None:
    """Session 14's defaults: a fleet scenario with history requests of every model
    plans with the warm-up overload and the history's knee weights (``auto`` →
    ``history``), as an explicit ``history`` does; where the history lacks a model,
    ``auto`` plans with ``congestion_share`` at every knee and says why at INFO (an
    explicit ``history`` raises there: the test above)."""
    scenario = default_scenario()
    assert scenario.fleet is not None
    assert scenario.controller.congestion_calibration == "auto"
    assert scenario.controller.warmup_lateness
    exo = build_site_exogenous(scenario)
    assert set(exo.burst_late_share) == set(exo.site.models)
    prices = plan_lateness(scenario, exo)
    assert prices is not None and prices.warmup
    assert prices.congestion_weights == history_knee_weights(exo)
    explicit = _calibrated(scenario)
    assert plan_lateness(explicit, build_site_exogenous(explicit)) == prices

    first = exo.site.models[0]
    missing = {m: s for m, s in exo.burst_late_share.items() if m != first}
    with caplog.at_level(logging.INFO, logger="mpc_dc.runner"):
        fallback = plan_lateness(scenario, replace(exo, burst_late_share=missing))
    assert fallback is not None and fallback.warmup
    assert fallback.congestion_weights == ()
    assert fallback.congestion_share == scenario.controller.congestion_share > 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("'auto': 'share'" in m and first in m for m in said), said


def test_history_calibration_reads_nothing_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No lookahead: the default scenario built twice, the second time with the run
    period's requests poisoned (every response 50 times as long, every arrival moved into
    the first minute of its interval: bursts far beyond any in the history). The run's
    truth changes, the history's burst shares, mixes and knee weights do not."""
    from mpc_dc.sim.arrivals import STEP_S, RequestArrays
    from mpc_dc.site import data as site_data

    scenario = _calibrated(default_scenario())
    clean = build_site_exogenous(scenario)
    original = site_data.request_stream
    run_from_s = clean.history_steps * STEP_S

    def poisoned(*args: object, **kwargs: object) -> RequestArrays:
        every = original(*args, **kwargs)  # type: ignore[arg-type]
        run = every.arrival_s >= run_from_s
        arrival = every.arrival_s.copy()
        start = np.floor(arrival / STEP_S) * STEP_S
        arrival[run] = start[run] + (arrival[run] - start[run]) / 15.0
        tokens = every.response_tokens.copy()
        tokens[run] = tokens[run] * 50
        order = np.argsort(arrival, kind="stable")
        return RequestArrays(arrival[order], every.model[order], every.request_tokens[order],
                             tokens[order], every.source[order], every.models, every.stats)

    monkeypatch.setattr(site_data, "request_stream", poisoned)
    dirty = build_site_exogenous(scenario)
    truth = [c for c in clean.frame.columns if str(c).startswith("tokens_per_s[")]
    run_rows = slice(clean.history_steps, clean.history_steps + clean.n_steps)
    assert not np.allclose(clean.frame[truth].iloc[run_rows], dirty.frame[truth].iloc[run_rows])
    assert set(dirty.burst_late_share) == set(clean.burst_late_share)
    for model, share in clean.burst_late_share.items():
        np.testing.assert_array_equal(dirty.burst_late_share[model], share)
    assert dirty.request_mix == clean.request_mix
    assert history_knee_weights(dirty) == history_knee_weights(clean)


def test_bad_calibration_keys_are_refused_in_one_line_naming_the_key() -> None:
    """An unknown calibration, a non-boolean warm-up switch: a ConfigError naming the key
    (the file's loader checks both); a model without history requests to measure: a
    ConfigError naming ``controller.congestion_calibration`` (bad input the CLI reports
    in one line, exit 2), not a bare ValueError (the CLI's "internal error")."""
    from mpc_dc.site.scenario import with_overrides
    from traces.errors import ConfigError

    scenario = default_scenario()
    with pytest.raises(ConfigError, match=r"congestion_calibration.*expected one of"):
        with_overrides(scenario, {"controller.congestion_calibration": "histroy"}, "s.toml")
    with pytest.raises(ConfigError, match=r"warmup_lateness.*expected true or false"):
        with_overrides(scenario, {"controller.warmup_lateness": "yes"}, "s.toml")
    history = _calibrated(scenario)
    exo = build_site_exogenous(history)
    first = exo.site.models[0]
    missing = {m: s for m, s in exo.burst_late_share.items() if m != first}
    with pytest.raises(ConfigError, match=rf"controller\.congestion_calibration.*{first}"):
        plan_lateness(history, replace(exo, burst_late_share=missing))


def test_fluid_fidelity_takes_the_same_history_weights() -> None:
    """The calibration reads the history's request stream, which a fleet scenario builds
    whatever the serving fidelity: under ``fluid`` the weights are those of ``request``,
    finite and >= 0 (no NaN, no error)."""
    scenario = _calibrated(default_scenario())
    fluid = controller_variant(scenario, "fluid")
    assert fluid.serving.fidelity == "fluid"
    weights = plan_lateness(fluid, build_site_exogenous(fluid))
    assert weights is not None
    assert weights.congestion_weights == history_knee_weights(build_site_exogenous(scenario))
    assert np.all(np.isfinite(weights.knee_weights())) and np.all(weights.knee_weights() >= 0)


@pytest.mark.parametrize("form", [Form.LP, Form.COMMITTED_INTEGER])
def test_both_keys_price_the_plan_as_its_objective_does(form: Form) -> None:
    """Knee weights and the warm-up overload together on :func:`_one_pool_site` with power
    so dear (1e5 $/MWh) that an early start costs more than the overload: the cost of the
    plan re-computed from its columns (``congestion_usd``, post-processing) is the
    solver's objective (checked on Form.LP, whose LP bound is that objective), the
    warm-up counted once: ``congestion_usd`` is the knees' cost
    plus the overload's, each on the plan's own columns."""
    from mpc_dc.blocks.lateness import congestion_cost_usd, warmup_overload_cost_usd

    site = _one_pool_site()
    inputs = _inputs([500.0, 1500.0], [[1e5, 1e5]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    both = LatenessPrices((1e-5,), (1e-8,), congestion_weights=((0.4, 0.3, 0.5),),
                          warmup=True)
    problem = Problem(site, 2, SolverOptions(round_up_trial=True), lateness=both)
    res = problem.solve(inputs, state, form)
    assert res.plan is not None and res.cost is not None
    plan = res.plan
    ctx = problem.ctx
    warm = warmup_overload_cost_usd(ctx, both, plan.instances, plan.starts, plan.tokens_per_s)
    knees = congestion_cost_usd(ctx, replace(both, warmup=False), plan.instances, plan.starts,
                                plan.tokens_per_s)
    assert warm > 0 and knees > 0
    assert res.cost.congestion_usd == pytest.approx(warm + knees, rel=1e-9)
    if form is Form.LP:
        assert res.objective_usd == pytest.approx(res.lp_bound_usd, rel=1e-7)


def test_round_up_trial_falls_back_where_rounding_up_breaks_the_import_limit() -> None:
    """:func:`test_warmup_overload_is_priced_and_bought_off_by_an_early_start`'s pool
    with the campus's import limited to 150 W (1.5 instances idle, PUE 1): the
    relaxation starts 1.5 instances early against the warm-up, rounding up (2 in column
    0) fits the 8 GPUs but not the grid, so its LP fails and the joint rounding's plan
    stands: the plan with the trial is the plan without it, within the limit."""
    from mpc_dc.site.config import Grid
    from tests.test_problem_fleet import campus

    limited = replace(campus("A", 8), grid=Grid(import_limit_mw=150e-6))
    site = _config([_row("BF16", mu=1000, gpus=1, idle_w=100.0, e_j=0.0, loss=0,
                         load_s=90.0)], campuses=(limited,))
    inputs = _inputs([500.0, 1500.0], [[30.0, 30.0]])
    state = PlantState(instances_running={k: 1 for k in site.pools})
    prices = LatenessPrices((1e-5,), (1e-8,), warmup=True)
    plans = []
    for trial in (False, True):
        problem = Problem(site, 2, SolverOptions(round_up_trial=trial), lateness=prices)
        res = problem.solve(inputs, state, Form.COMMITTED_INTEGER)
        assert res.plan is not None and res.cost is not None, res.message
        assert np.all(res.plan.import_mw <= 150e-6 * (1 + 1e-9))
        plans.append((res.plan.instances[0, 0], res.objective_usd))
    assert plans[1] == pytest.approx(plans[0])
