"""Where a fleet run's lateness comes from, per model (a diagnostic, not a benchmark).

    python benchmarks/lateness_anatomy.py RUN [RUN ...]
    python benchmarks/lateness_anatomy.py --bursts SCENARIO.toml --data DIR

The first reads each run directory of ``mpc-dc run`` (its ``scenario.json``,
``ledger.parquet``, ``pools.parquet`` and ``requests.parquet``) and prints per model:

* planned over arrived tokens (the plan's headroom over the interval means), over the
  run and split by DR events [-];
* the late share of requests by the pool-interval's realised utilisation, arrived
  tokens over ``ρ̄ μ`` times its mean ready instances [%];
* the late share of requests arriving in the first 90 s of an interval in which the
  model's instance count rose, stayed or fell (against the interval before), and in
  the rest of those intervals [%], from ``requests.parquet`` (the run's sample of
  requests where it keeps one);
* the late share in DR-event and non-event intervals (the ledger's ``dr_event`` on any
  campus) [%], the run's ``dr_capped_s`` [s], and per campus the mean planned import
  and committed cap over its DR-event intervals [kW].

The second regenerates the scenario's request stream (as ``mpc-dc run`` does, every
request of the history and the run) and prints per model the token rate over windows
of its decode time at the TPOT target (``n̄ τ``, as
:func:`mpc_dc.site.data.history_burst_late_share`) against the interval's mean, its
50th / 90th / 99th percentiles over the windows holding a request, on the history and
on the run; and on the history the burst estimate of the late share at each planned
utilisation (:func:`mpc_dc.sim.bursts.window_late_share`) with and without the tokens
arriving while the queue a burst leaves behind (a Lindley recursion over the windows
at the capacity at the SLO) waits beyond the TTFT target [%].
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mpc_dc.sim.arrivals import STEP_S
from mpc_dc.sim.bursts import BURST_UTILISATIONS, interval_windows, window_late_share
from mpc_dc.site import data as site_data
from mpc_dc.site.scenario import load_scenario

UTILISATION_BANDS = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0, 1.2, 5.0]
"""Bands of realised utilisation [-] for the late share."""
START_WINDOW_S = 90.0
"""The head of an interval [s] whose requests meet the instances the plan starts there
still loading."""


def _pct(late: float, total: float) -> str:
    return f"{100.0 * late / total:6.2f}" if total > 0 else "     -"


def run_anatomy(run: Path) -> None:
    """Print the lateness anatomy of one run directory (module docstring)."""
    scenario = json.loads((run / "scenario.json").read_text())
    capacity = scenario["fleet"]["capacity_tokens_per_s"]
    cap = float(scenario["fleet"]["utilization_cap"])
    pools = pd.read_parquet(run / "pools.parquet").reset_index()
    ledger = pd.read_parquet(run / "ledger.parquet").reset_index()
    event = ledger.groupby("interval_start_utc")["dr_event"].any()
    pools["event"] = pools["interval_start_utc"].map(event).astype(bool)
    pools["mu"] = [float(capacity[f"{m}/{q}"]) for m, q in
                   zip(pools["model"], pools["precision"], strict=True)]
    ready = pools["ready_instance_s"] / STEP_S
    capacity_at_slo = (cap * pools["mu"] * ready).where(ready > 0)        # [tokens/s]
    pools["u_real"] = (pools["arrived_tokens"] / STEP_S) / capacity_at_slo
    print(f"== {run}")
    print(f"  dr_capped_s {pools['dr_capped_s'].sum():,.0f} s")
    in_event = ledger[ledger["dr_event"]].groupby("campus", observed=True)
    for campus, part in in_event:
        print(f"  {campus} in DR events: planned import "
              f"{1e3 * part['planned_import_mw'].mean():.2f} kW, committed cap "
              f"{1e3 * part['dr_committed_cap_mw'].mean():.2f} kW (means)")
    for model, mine in pools.groupby("model", observed=True):
        headroom = []
        for part in (mine, mine[mine["event"]], mine[~mine["event"]]):
            planned = float((part["planned_tokens_per_s"] * STEP_S).sum())
            arrived = float(part["arrived_tokens"].sum())
            headroom.append(f"{planned / arrived:.3f}" if arrived > 0 else "-")
        print(f"  {model}: planned / arrived tokens {headroom[0]} "
              f"(DR event {headroom[1]}, no event {headroom[2]})")
        served = mine[mine["arrivals"] > 0]
        bands = served.groupby(pd.cut(served["u_real"], UTILISATION_BANDS), observed=True)
        print("    late % by realised utilisation:")
        for band, part in bands:
            late = _pct(part["late_requests"].sum(), part["arrivals"].sum())
            print(f"      {band!s:12s} {late}"
                  f"  ({part['arrivals'].sum():,.0f} requests, {len(part)} pool-intervals)")
        for flag, name in ((True, "DR event"), (False, "no event")):
            part = mine[mine["event"] == flag]
            late = _pct(part["late_requests"].sum(), part["arrivals"].sum())
            print(f"    late % {name:9s} {late}"
                  f"  ({part['arrivals'].sum():,.0f} requests)")
    _interval_start(run, pools)


def _interval_start(run: Path, pools: pd.DataFrame) -> None:
    """Late share of the requests in the head of an interval by the change in the model's
    instance count there, from the run's requests."""
    requests = pd.read_parquet(run / "requests.parquet",
                               columns=["arrival_s", "model", "slo_met", "slo_decided"])
    t0 = pools["interval_start_utc"].min()
    pools = pools.assign(step=((pools["interval_start_utc"] - t0).dt.total_seconds()
                               // STEP_S).astype(int))
    count = pools.groupby(["step", "model"], observed=True)["instances"].sum().reset_index()
    count["change"] = np.sign(count.groupby("model", observed=True)["instances"].diff().fillna(0))
    requests = requests.assign(
        step=(requests["arrival_s"] // STEP_S).astype(int),
        head=(requests["arrival_s"] % STEP_S) < START_WINDOW_S,
        late=requests["slo_decided"] & ~requests["slo_met"],
        model=requests["model"].astype(str))
    count["model"] = count["model"].astype(str)
    requests = requests.merge(count[["step", "model", "change"]], on=["step", "model"], how="left")
    print(f"  late % by the model's instance count against the interval before "
          f"({len(requests):,} requests in requests.parquet; head = first "
          f"{START_WINDOW_S:.0f} s):")
    for model, mine in requests.groupby("model"):
        cells = []
        for change, name in ((1, "rose"), (0, "same"), (-1, "fell")):
            for head, where in ((True, "head"), (False, "rest")):
                part = mine[(mine["change"] == change) & (mine["head"] == head)]
                cells.append(f"{name}/{where} {_pct(part['late'].sum(), len(part))} "
                             f"(n {len(part):,})")
        print(f"    {model}: " + "; ".join(cells))


def _lindley_late_share(window_tokens: np.ndarray, lengths: np.ndarray, cap: float,
                        ttft_s: float) -> np.ndarray:
    """Per planned utilisation, the share of tokens in windows whose rate exceeds the
    capacity at the SLO or that arrive while the queue carried over (a Lindley
    recursion over the windows, in tokens) waits beyond ``ttft_s`` [-]."""
    rate = window_tokens / lengths[None, :]
    mean = window_tokens.sum(axis=1) / STEP_S
    out = []
    for u in BURST_UTILISATIONS:
        capacity = mean / (cap * u)
        queue = np.zeros(len(mean))
        late = 0.0
        for j in range(window_tokens.shape[1]):
            waiting = queue > ttft_s * capacity
            late += float(window_tokens[(rate[:, j] > capacity) | waiting, j].sum())
            queue = np.maximum(0.0, queue + (rate[:, j] - capacity) * lengths[j])
        out.append(late / float(window_tokens.sum()))
    return np.array(out)


def stream_bursts(scenario_path: Path, data: Path | None) -> None:
    """Print the burst ratios and the history's burst estimates (module docstring)."""
    scenario = load_scenario(scenario_path)
    if data is not None:
        scenario = replace(scenario, data=replace(scenario.data, dir=str(data)))
    sources = site_data.check_data(scenario, source=scenario_path)
    fleet = scenario.site.fleet
    if fleet is None:
        raise SystemExit(f"{scenario_path}: no fleet, no request stream")
    every = site_data.site_request_stream(scenario, sources)
    history_s = sources.history_steps * STEP_S
    spans = {"history": (0.0, history_s),
             "run": (history_s, history_s + sources.run_steps * STEP_S)}
    cap = fleet.utilization_cap
    print(f"== {scenario_path}: {len(every):,} requests, history {sources.history_steps} "
          f"intervals, run {sources.run_steps}")
    for m, model in enumerate(fleet.models):
        tau = site_data.tpot_target_s(scenario, model)
        ttft_s = scenario.serving.ttft_slo_s.get(model, scenario.serving.default_ttft_slo_s)
        mine = every.model == m
        in_history = mine & (every.arrival_s < history_s)
        window_s = float(every.response_tokens[in_history].mean()) * tau
        print(f"  {model}: window n̄ τ = {window_s:.1f} s")
        for name, (lo, hi) in spans.items():
            keep = mine & (every.arrival_s >= lo) & (every.arrival_s < hi)
            t = every.arrival_s[keep] - lo
            tokens = every.response_tokens[keep].astype(float)
            window_tokens, lengths = interval_windows(t, tokens, hi - lo, window_s)
            mean = window_tokens.sum(axis=1, keepdims=True) / STEP_S
            ratio = (window_tokens / lengths[None, :]) / np.where(mean > 0, mean, np.nan)
            p50, p90, p99 = np.percentile(ratio[window_tokens > 0], [50, 90, 99])
            print(f"    {name:7s} rate / interval mean p50 / p90 / p99 = "
                  f"{p50:.2f} / {p90:.2f} / {p99:.2f}")
            if name == "history":
                share = window_late_share(t, tokens, hi - lo, window_s, cap)
                queued = _lindley_late_share(window_tokens, lengths, cap, ttft_s)
                print("    history burst estimate, late % at u = "
                      + ", ".join(f"{u:g}" for u in BURST_UTILISATIONS))
                print("      windows " + " ".join(f"{100 * s:5.2f}" for s in share))
                print("      + queue " + " ".join(f"{100 * s:5.2f}" for s in queued))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories of mpc-dc run")
    parser.add_argument("--bursts", type=Path, metavar="SCENARIO",
                        help="scenario TOML whose request stream to measure the bursts of")
    parser.add_argument("--data", type=Path, help="data directory for --bursts")
    args = parser.parse_args(argv)
    if not args.runs and args.bursts is None:
        parser.error("give run directories or --bursts SCENARIO")
    for run in args.runs:
        run_anatomy(run)
    if args.bursts is not None:
        stream_bursts(args.bursts, args.data)


if __name__ == "__main__":
    main()
