"""Trace the fast layer's DR cap, wake-up by wake-up (a diagnostic, not a benchmark).

    python benchmarks/trace_dr_cap.py TRACE.pkl run SCENARIO.toml --data DIR --controller C \
        --no-plots --out RUN
    python benchmarks/trace_dr_cap.py --show TRACE.pkl STEP CAMPUS_INDEX

The first runs ``mpc-dc`` with :meth:`~mpc_dc.sim.fast_layer.FastLayer._hold_cap` and
:meth:`~mpc_dc.sim.serving.RequestLevelServer.end_interval` wrapped: at each wake-up in
an event interval it records the energy so far and the power now per pool (as the layer
reads them), each instance's ready time, occupancy and kind (``c`` committed, ``d``
draining), the batch caps before and after, and for each capped campus what
:meth:`~mpc_dc.sim.fast_layer.FastLayer._cap_batches` was asked to fit (its target) and
the bound of the caps it chose; at the interval end the energy per pool. The second
prints one (interval, campus): what the rest of the interval may average at each
wake-up, the caps' target (its excess over what may be averaged is credit the caps took
beyond what is left) and bound, the caps set, and the interval's mean inference power
against its cap [W].
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import numpy as np

from mpc_dc.sim import fast_layer as fl
from mpc_dc.sim import serving_kernel as kern
from mpc_dc.sim.arrivals import STEP_S
from mpc_dc.sim.serving import RequestLevelServer

TRACE: list[tuple[str, dict[str, Any]]] = []
_hold = fl.FastLayer._hold_cap
_end = RequestLevelServer.end_interval
_batches = fl.FastLayer._cap_batches
_FITTED: list[dict[str, Any]] = []
"""The :meth:`_cap_batches` calls of the wake-up under way (its record is written after)."""


def _instances(server: RequestLevelServer
               ) -> list[tuple[float, list[tuple[float, float, str]], int]]:
    out = []
    for ps in server._pools:
        fs = ps.fs
        inst = ([(float(fs[j, kern.F_READY]), float(fs[j, kern.F_NB]), "c") for j in ps.committed]
                + [(float(fs[j, kern.F_READY]), float(fs[j, kern.F_NB]), "d") for j in ps.draining])
        out.append((float(ps.pp[kern.P_MAX_BATCH]), inst, int(ps.queue.size)))
    return out


def _traced_batches(self: fl.FastLayer, pools: np.ndarray, ready: np.ndarray,
                    occupancy: Any, fixed_w: float, target_w: float, need: np.ndarray,
                    mu: np.ndarray) -> np.ndarray:
    batch = _batches(self, pools, ready, occupancy, fixed_w, target_w, need, mu)
    # the bound of the caps chosen, as _cap_batches counts it
    bound = fixed_w + sum(float(np.maximum.accumulate(self._active_w[p])[np.maximum(b, occ)].sum())
                          for p, b, occ in zip(pools.tolist(), batch.tolist(), occupancy,
                                             strict=True))
    _FITTED.append({"pools": pools.tolist(), "target": target_w, "bound": bound})
    return batch


def _traced_hold(self: fl.FastLayer, server: RequestLevelServer, step: int, t: float,
                 until: float, limits: fl.CampusLimits, shares: np.ndarray,
                 moves: dict[int, list[tuple[int, float]]]) -> dict[int, list[tuple[int, float]]]:
    out = _hold(self, server, step, t, until, limits, shares, moves)
    # read after the call: the layer's own reading (a pool brought to t where it does so)
    TRACE.append(("hold", {"step": step, "t": t, "until": until,
                           "cap_w": np.array(limits.inference_cap_w),
                           "energy": server.energy_so_far_j(), "power": server.power_now_w(),
                           "pools": _instances(server), "campus_of": self.campus_of.copy(),
                           "fitted": list(_FITTED)}))
    _FITTED.clear()
    return out


def _traced_end(self: RequestLevelServer) -> Any:
    step = self._open.step
    stats = _end(self)
    if TRACE and TRACE[-1][0] == "hold" and TRACE[-1][1]["step"] == step:
        TRACE.append(("end", {"step": step, "energy": stats.idle_energy_j + stats.active_energy_j}))
    return stats


def show(path: str, step: int, campus: int) -> None:
    """Print one (interval, campus) of a trace."""
    with open(path, "rb") as f:
        trace = pickle.load(f)
    holds = [d for kind, d in trace if kind == "hold" and d["step"] == step]
    end = next(d for kind, d in trace if kind == "end" and d["step"] == step)
    mine = np.flatnonzero(holds[0]["campus_of"] == campus)
    cap = float(holds[0]["cap_w"][campus])
    t0 = step * STEP_S
    for d in holds:
        energy = float(d["energy"][mine].sum())
        left = t0 + STEP_S - d["t"]
        allowed = (cap * STEP_S - energy) / left
        print(f"t = {d['t'] - t0:6.1f} s: energy {energy:11.1f} J, may average "
              f"{allowed:8.2f} W, power now {d['power'][mine].sum():8.2f} W")
        for fit in d.get("fitted", []):
            if fit["pools"] == mine.tolist():
                print(f"    caps fitted to {fit['target']:8.2f} W (credit "
                      f"{fit['target'] - allowed:6.2f} W), their bound {fit['bound']:8.2f} W")
        for p in mine.tolist():
            batch, inst, queue = d["pools"][p]
            if inst:
                print(f"    pool {p}: cap {batch:5.0f}, queue {queue}, instances (ready [s], "
                      f"occupancy, kind) {[(round(r - t0, 1), n, k) for r, n, k in inst]}")
    total = float(end["energy"][mine].sum())
    print(f"interval: {total:.1f} J, mean {total / STEP_S:.4f} W against the cap {cap:.4f} W")


if __name__ == "__main__":
    if sys.argv[1] == "--show":
        show(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    fl.FastLayer._hold_cap = _traced_hold  # type: ignore[method-assign]
    fl.FastLayer._cap_batches = _traced_batches  # type: ignore[method-assign]
    RequestLevelServer.end_interval = _traced_end  # type: ignore[method-assign]
    from mpc_dc.cli import main
    try:
        code = main(sys.argv[2:])
    finally:
        with open(sys.argv[1], "wb") as f:
            pickle.dump(TRACE, f)
    sys.exit(code)
