"""Old configurations and inputs translated to the one site model (for the equivalence
tests of :mod:`mpc_dc.problem2` against :mod:`mpc_dc.problem` and
:mod:`mpc_dc.fleet_problem`).

An old RCDC ``SiteConfig`` is one campus with other IT, a renewable plant, a grid
connection and (optionally) a battery, and no GPUs; an old ``FleetConfig`` is campuses
with GPUs, an unlimited import, no export and no other block. The translation is
field by field; nothing is tuned.
"""

from __future__ import annotations

import numpy as np

from mpc_dc import fleet_problem as old_fleet
from mpc_dc import problem as old_rcdc
from mpc_dc import problem2 as new
from mpc_dc.params.fleet import FleetConfig
from mpc_dc.params.site import SiteConfig
from mpc_dc.site.config import (
    Battery,
    Campus,
    DemandResponse,
    Fleet,
    Flexibility,
    Grid,
    OtherIT,
    ProcessingFunction,
    Renewable,
    Site,
    Tariff,
)


def site_of_rcdc(cfg: SiteConfig, *, name: str = "dc") -> Site:
    """The RCDC site as one campus without GPUs."""
    dc, grid, tariff = cfg.datacenter, cfg.grid, cfg.grid.tariff
    bat = cfg.battery
    return Site((Campus(
        name, "F", pue=dc.pue,
        other_it=OtherIT(it_capacity_mw=dc.it_capacity_mw, processing=ProcessingFunction(
            dc.processing.power_frac, dc.processing.work_frac)),
        renewable=Renewable(cfg.renewable.nameplate_mw),
        grid=Grid(grid.import_limit_mw, grid.export_limit_mw, Tariff(
            tariff.kind, tariff.demand_charge_usd_per_kw, tariff.import_adder_usd_per_mwh,
            tariff.export_credit_factor)),
        battery=None if bat is None else Battery(
            bat.energy_mwh, bat.power_mw, bat.charge_efficiency, bat.discharge_efficiency)),))


def inputs_of_rcdc(inputs: old_rcdc.HorizonInputs) -> new.HorizonInputs:
    """The same horizon for the one-campus site (no fleet, no carbon)."""
    H = inputs.horizon_steps
    return new.HorizonInputs(np.zeros((0, H)), inputs.import_price_usd_per_mwh,
                             inputs.export_price_usd_per_mwh, 0.0, inputs.renewable_cf,
                             inputs.work_nd_wu)


def state_of_rcdc(state: old_rcdc.PlantState) -> new.PlantState:
    """The same state for the one-campus site."""
    return new.PlantState(df_due_cum_wu=state.df_due_cum_wu,
                          df_available_cum_wu=state.df_available_cum_wu,
                          peak_import_to_date_mw=state.peak_import_to_date_mw,
                          battery_energy_mwh=state.battery_energy_mwh)


def site_of_fleet(cfg: FleetConfig) -> Site:
    """The fleet as campuses with GPUs, unlimited import and no export."""
    flex = cfg.flexibility
    campuses = tuple(Campus(c.name, c.price_node, carbon_zone=c.carbon_zone, gpus=c.gpus,
                            pue=c.pue, grid=Grid(import_limit_mw=float("inf")))
                     for c in cfg.campuses)
    fleet = Fleet(models=cfg.models,
                  flexibility=Flexibility(flex.switching, flex.spatial, flex.quantization),
                  utilization_cap=cfg.utilization_cap,
                  start_cost_usd_per_gpu=cfg.start_cost_usd_per_gpu,
                  quality_budget_pct_points=cfg.quality_budget_pct_points,
                  quality_cost_usd_per_point_mtok=cfg.quality_cost_usd_per_point_mtok,
                  unserved_penalty_usd_per_mtok=cfg.unserved_penalty_usd_per_mtok,
                  table=cfg.table)
    dr = DemandResponse(cfg.dr.reward_usd_per_kwh, cfg.dr.penalty_usd_per_kwh,
                        cfg.dr.cap_fraction_of_baseline)
    return Site(campuses, fleet, cfg.carbon_price_usd_per_t, dr)


def inputs_of_fleet(inputs: old_fleet.FleetInputs) -> new.HorizonInputs:
    """The same horizon: import and export at the campus price, no other IT."""
    price = inputs.price_usd_per_mwh
    return new.HorizonInputs(inputs.demand_tokens_per_s, price, price,
                             inputs.carbon_gco2_per_kwh, 0.0, 0.0, dr_event=inputs.dr_event,
                             dr_baseline_mw=inputs.dr_baseline_mw,
                             gpus_available=inputs.gpus_available,
                             dr_reward_usd_per_kwh=inputs.dr_reward_usd_per_kwh,
                             dr_penalty_usd_per_kwh=inputs.dr_penalty_usd_per_kwh)


def state_of_fleet(state: old_fleet.FleetState | None) -> new.PlantState:
    """The same fleet state."""
    state = state or old_fleet.FleetState()
    return new.PlantState(dict(state.instances_running), state.may_reprovision)


def options_of_fleet(o: old_fleet.FleetSolverOptions) -> new.SolverOptions:
    """The fleet's solver options in the merged form."""
    return new.SolverOptions(
        committed_intervals=o.committed_intervals, time_limit_s=o.time_limit_s,
        mip_rel_gap=o.mip_rel_gap, full_time_limit_s=o.full_time_limit_s,
        full_mip_rel_gap=o.full_mip_rel_gap, warm_start=o.warm_start,
        round_chunk_intervals=o.round_chunk_intervals, fine_steps=o.fine_steps,
        coarse_block_steps=o.coarse_block_steps, far_start_steps=o.far_start_steps,
        far_block_steps=o.far_block_steps)


def options_of_rcdc(o: old_rcdc.SolverOptions) -> new.SolverOptions:
    """The RCDC solver options in the merged form."""
    return new.SolverOptions(time_limit_s=o.time_limit_s, mip_rel_gap=o.mip_rel_gap,
                             binary_intervals=o.integer_intervals)
