"""The old engines' inputs expressed in the one site model (equivalence tests, benchmarks).

An RCDC run (:class:`~mpc_dc.sim.exogenous.RcdcExogenous`) becomes a one-campus
site without GPUs; a fleet run (:class:`~mpc_dc.params.fleet.FleetConfig`,
:class:`~mpc_dc.sim.fleet_engine.FleetExogenous`) becomes campuses with GPUs, no
renewable, export or battery. Phase 2 deletes the old inputs and this module.
"""

from __future__ import annotations

import pandas as pd

from mpc_dc.params.fleet import FleetConfig
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.exogenous import CHANNELS, RcdcExogenous
from mpc_dc.sim.exogenous2 import SiteExogenous, column, demand_columns
from mpc_dc.sim.fleet_engine import FleetExogenous
from mpc_dc.site.config import (
    Battery,
    Campus,
    Fleet,
    Grid,
    OtherIT,
    ProcessingFunction,
    Renewable,
    Site,
    Tariff,
)

CAMPUS = "dc"
"""Name of the RCDC campus."""


def rcdc_site(exo: RcdcExogenous) -> Site:
    """The old RCDC site configuration as one campus of the site model."""
    cfg = exo.config
    dc, grid, tariff = cfg.datacenter, cfg.grid, cfg.grid.tariff
    battery = None
    if cfg.battery is not None:
        b = cfg.battery
        battery = Battery(energy_mwh=b.energy_mwh, power_mw=b.power_mw,
                          charge_efficiency=b.charge_efficiency,
                          discharge_efficiency=b.discharge_efficiency,
                          initial_energy_mwh=exo.initial_battery_mwh)
    campus = Campus(
        name=CAMPUS, price_node="F", gpus=0, pue=dc.pue,
        other_it=OtherIT(
            it_capacity_mw=dc.it_capacity_mw,
            processing=ProcessingFunction(dc.processing.power_frac, dc.processing.work_frac),
            deferrable_share=exo.deferrable_share, window_h=exo.window_steps / 4,
            release=exo.deferrable_release),
        renewable=Renewable(nameplate_mw=cfg.renewable.nameplate_mw),
        grid=Grid(import_limit_mw=grid.import_limit_mw, export_limit_mw=grid.export_limit_mw,
                  tariff=Tariff(kind=tariff.kind,
                                demand_charge_usd_per_kw=tariff.demand_charge_usd_per_kw,
                                import_adder_usd_per_mwh=tariff.import_adder_usd_per_mwh,
                                export_credit_factor=tariff.export_credit_factor)),
        battery=battery)
    return Site(campuses=(campus,))


def rcdc_exogenous(exo: RcdcExogenous) -> SiteExogenous:
    """The old RCDC run data as a one-campus site run (carbon reported, not priced)."""
    frame = pd.concat([exo.history[list(CHANNELS)], exo.frame[list(CHANNELS)]])
    frame = frame.rename(columns=lambda c: column(c, CAMPUS))
    frame[column("carbon_gco2_per_kwh", CAMPUS)] = 350.0
    publication = {column(c, CAMPUS): rule for c, rule in exo.publication.items()}
    return SiteExogenous(rcdc_site(exo), frame, exo.start, exo.n_steps, None, publication,
                         exo.local_tz, exo.name)


def fleet_site(config: FleetConfig) -> Site:
    """The old fleet configuration in the site model (no renewable, no export)."""
    return Site(
        campuses=tuple(Campus(name=c.name, price_node=c.price_node, carbon_zone=c.carbon_zone,
                              gpus=c.gpus, pue=c.pue, grid=Grid(import_limit_mw=1000.0))
                       for c in config.campuses),
        fleet=Fleet(models=config.models, flexibility="S6",
                    utilization_cap=config.utilization_cap),
        carbon_price_usd_per_t=config.carbon_price_usd_per_t)


def fleet_exogenous(config: FleetConfig, exo: FleetExogenous,
                    requests: RequestArrays) -> SiteExogenous:
    frame = pd.DataFrame(index=exo.frame.index)
    for c in config.campuses:
        frame[column("price_usd_per_mwh", c.name)] = exo.frame[f"lmp_usd_per_mwh[{c.price_node}]"]
        frame[column("carbon_gco2_per_kwh", c.name)] = exo.frame[
            f"carbon_gco2_per_kwh[{c.carbon_zone}]"]
    frame = frame.join(demand_columns(requests, pd.DatetimeIndex(exo.frame.index)))
    return SiteExogenous(fleet_site(config), frame, exo.start, exo.n_steps, requests)
