"""The planner's instance power line, taken from the batch curve the simulator serves with.

The planner (:func:`mpc_dc.blocks.inference_fleet.define_inference_power`) keeps a
pool's power linear in its instances ``n`` and tokens ``x`` [tokens/s]::

    P = n · P_int + s · x                                                   [W]

so that the problem stays an LP/MILP. The simulator's instance, though, draws along
its batch curve (:class:`~mpc_dc.sim.serving.BatchCurve`): in the steady state of an
instance holding ``b`` requests, it serves ``X(b)`` tokens/s
(:meth:`BatchCurve.saturated`, the throughput a queue of that occupancy sustains)
and draws ``P(b)``; the power per instance as a function of its throughput is
``g(x) = P(X⁻¹(x))``, with ``g(0) = P0``. Where ``g`` is concave (the saturating power
of the mixture-of-experts Qwen3-235B: its ``K`` is ~15 requests), a line with the
table's energy per token at capacity lies below ``g`` at every partial load: the
Qwen3-235B BF16 instance is planned at 2,466 W and draws ~2,880 W at 20 % of its
capacity.

**The line.** ``g`` is taken piecewise linear through ``(0, P0)`` and ``(X(b), P(b))``
for ``b = 1 .. B``; ``x₀ = ρ̄ μ`` is the throughput the planner provisions an instance
at (``fleet.utilization_cap`` × the capacity at the SLO). The planner's line is the
**supporting line from above at x₀**: through ``(x₀, g(x₀))`` with slope

    s = min_{x < x₀} (g(x₀) − g(x)) / (x₀ − x)                              [J/token]

the steepest line through that point that no point of ``g`` on ``[0, x₀]`` lies
above, and ``P_int = g(x₀) − s x₀``. For a concave ``g`` it is the tangent at ``x₀``;
for a convex one (the dense models' curves bend up slightly as their step time grows)
the chord from ``(0, P0)``. Hence (:func:`supporting_line`):

* exact at the planned utilisation: an instance loaded as planned draws as planned;
* never below ``g`` on ``[0, x₀]``: an instance loaded less than planned draws no
  more than planned, and neither does a pool whose instances share the load
  unevenly, as long as the tokens stay under the plan (``Σ_i g(x_i) ≤ n P_int + s Σ
  x_i``): a plan under a DR cap stays under it at partial load;
* the price: above ``g`` at low load (Qwen3-235B BF16: by ~1.1 kW per instance at
  zero load, whose true idle power is 2,195 W), so the planner overprices an
  instance it keeps nearly idle; its economics then push it to consolidate, which
  is what the concave curve rewards.

A pool whose model has no request mix keeps the table's line (``idle_power_w``,
``marginal_energy_per_token_j``), as the capacity keeps the table's throughput.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpc_dc.sim.serving import BatchCurve, PoolSpec, RequestMix, workload_capacity
from mpc_dc.site.config import Site


@dataclass(frozen=True)
class PowerLine:
    """The planner's power line of one instance, ``P(x) = intercept_w + slope · x``.

    Parameters
    ----------
    intercept_w : float [W]
        ``P_int``, per running instance.
    slope_j_per_token : float [J/token]
        ``s``, per token/s served.
    """

    intercept_w: float
    slope_j_per_token: float

    def power_w(self, tokens_per_s: float) -> float:
        """Planned power of one instance serving ``tokens_per_s`` [W]."""
        return self.intercept_w + self.slope_j_per_token * tokens_per_s


def supporting_line(x: np.ndarray, p: np.ndarray, x0: float) -> PowerLine:
    """The steepest line through ``(x₀, g(x₀))`` not below ``g`` on ``[0, x₀]``.

    Parameters
    ----------
    x : ndarray [tokens/s]
        Increasing throughputs of the vertices of ``g``, ``x[0] = 0``.
    p : ndarray [W]
        ``g`` at ``x``.
    x0 : float [tokens/s]
        Where the line is exact, ``0 < x₀``; clipped to ``x[-1]``.

    Returns
    -------
    PowerLine
        With ``slope = min_{x_i < x₀} (g(x₀) − p_i) / (x₀ − x_i)`` (module docstring);
        ``g`` being piecewise linear, its vertices left of ``x₀`` are the only
        candidates.
    """
    x = np.asarray(x, dtype=float)
    p = np.asarray(p, dtype=float)
    if x.size < 2 or x[0] != 0.0 or np.any(np.diff(x) <= 0) or not x0 > 0:
        raise ValueError("supporting_line: expected increasing x from 0 and x0 > 0")
    x0 = min(float(x0), float(x[-1]))
    g0 = float(np.interp(x0, x, p))
    left = x < x0
    slope = float(np.min((g0 - p[left]) / (x0 - x[left])))
    return PowerLine(g0 - slope * x0, slope)


def instance_curve(curve: BatchCurve, max_batch: int,
                   mix: RequestMix) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of one instance's ``g``: throughput [tokens/s] and power [W].

    ``(0, P0)`` and ``(X(b), P(b))`` for ``b = 1 ..`` ``max_batch`` (bounded by the KV
    cache, as in :meth:`BatchCurve.capacity_at_slo`) on the token lengths of ``mix``,
    up to the largest throughput.
    """
    kv = ((curve.kv_capacity_tokens - mix.prompt_tokens - mix.response_tokens)
          / mix.context_per_seq)
    top = int(max(1, min(max_batch, math.floor(kv)))) if math.isfinite(kv) else max_batch
    b = np.arange(1, top + 1, dtype=float)
    state = curve.saturated(b, mix.prompt_tokens, mix.response_tokens,  # type: ignore[arg-type]
                            mix.context_per_seq)
    x = np.concatenate([[0.0], np.asarray(state["tokens_per_s"], dtype=float)])
    p = np.concatenate([[curve.power_idle_w], np.asarray(state["power_w"], dtype=float)])
    # X(b) rises with b over the batches an SLO admits; past a throughput peak (a step
    # that grows faster than the batch) the branch is one no planner provisions on
    keep = x > np.maximum.accumulate(np.concatenate([[-np.inf], x[:-1]]))
    return x[keep], p[keep]


def instance_power_line(curve: BatchCurve, max_batch: int, mix: RequestMix,
                        tokens_per_s: float) -> PowerLine:
    """:func:`supporting_line` of one instance's ``g`` (:func:`instance_curve`) at
    ``tokens_per_s`` (``x₀``, the planned throughput of one instance) [tokens/s]."""
    return supporting_line(*instance_curve(curve, max_batch, mix), tokens_per_s)


def workload_power_lines(site: Site, mix: Mapping[str, RequestMix],
                         capacity_tokens_per_s: Mapping[str, float],
                         ) -> dict[str, PowerLine]:
    """The planner's line of every (model, precision) of ``site``'s fleet with a mix.

    ``x₀ = ρ̄ μ`` with ``μ`` = ``capacity_tokens_per_s["model/precision"]`` (else the
    fleet's :meth:`~mpc_dc.site.config.Fleet.capacity`), on the curve the simulator
    serves the pool with (:meth:`PoolSpec.from_row`). Models without a mix are left
    out (they keep the table's line).

    Returns
    -------
    dict
        ``"model/precision"`` → :class:`PowerLine`.
    """
    fleet = site.fleet
    out: dict[str, PowerLine] = {}
    if fleet is None:
        return out
    for model in fleet.models:
        if model not in mix:
            continue
        for precision in fleet.precisions(model):
            key = f"{model}/{precision}"
            row = fleet.table.get(model, precision)
            mu = float(capacity_tokens_per_s.get(key, fleet.capacity(model, precision)))
            spec = PoolSpec.from_row(("", model, precision), row)
            out[key] = instance_power_line(spec.batch_curve, row.max_batch, mix[model],
                                           fleet.utilization_cap * mu)
    return out


def shape_table(site: Site, mix: Mapping[str, RequestMix],
                tpot_slo_s: Mapping[str, float] | None = None,
                shares: tuple[float, ...] = (0.2, 0.5, 0.85)) -> list[dict[str, object]]:
    """Per (model, precision) with a mix: μ [tokens/s], the shape of ``g`` on
    ``[0, ρ̄ μ]`` (``concave``, ``convex`` or ``mixed``), ``g``, the table's line and the
    planner's line at ``shares`` of μ [W], and the line's intercept [W] and slope
    [J/token] (module docstring; ``python -m mpc_dc.params.power_line``). μ is a run's
    (:func:`~mpc_dc.sim.serving.workload_capacity` at the TPOT targets ``tpot_slo_s``)."""
    fleet = site.fleet
    if fleet is None:
        return []
    capacity = workload_capacity(site, mix, tpot_slo_s)
    lines = workload_power_lines(site, mix, capacity)
    rows: list[dict[str, object]] = []
    for key, line in lines.items():
        model, precision = key.split("/")
        row = fleet.table.get(model, precision)
        mu = capacity.get(key, fleet.capacity(model, precision))
        x, p = instance_curve(PoolSpec.from_row(("", model, precision), row).batch_curve,
                              row.max_batch, mix[model])
        inside = x <= fleet.utilization_cap * mu
        bends = np.diff(np.diff(p[inside]) / np.diff(x[inside]))
        shape = ("concave" if np.all(bends <= 1e-12) else "convex" if np.all(bends >= -1e-12)
                 else "mixed")
        out: dict[str, object] = {"pool": key, "mu_tokens_per_s": mu, "shape": shape,
                                  "intercept_w": line.intercept_w,
                                  "slope_j_per_token": line.slope_j_per_token}
        for u in shares:
            out[f"g_{u:g}"] = float(np.interp(u * mu, x, p))
            out[f"table_{u:g}"] = row.idle_power_w + row.marginal_energy_per_token_j * u * mu
            out[f"line_{u:g}"] = line.power_w(u * mu)
        rows.append(out)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print :func:`shape_table` for a scenario's fleet on its workload's token mix."""
    import pandas as pd

    from mpc_dc.commands._common import with_data_dir
    from mpc_dc.site.data import build_site_exogenous
    from mpc_dc.site.scenario import load_scenario
    from traces.errors import ConfigError, TraceError

    parser = argparse.ArgumentParser(prog="python -m mpc_dc.params.power_line",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--data", type=Path, default=None, help="real data directory")
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
        scenario = with_data_dir(scenario, args.data)
        exo = build_site_exogenous(scenario, source=args.scenario)
    except (ConfigError, TraceError) as err:
        print(err, file=sys.stderr)
        return 2
    table = pd.DataFrame(shape_table(scenario.site, exo.request_mix,
                                     scenario.serving.tpot_slo_s))
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
