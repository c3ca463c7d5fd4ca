"""The one scenario schema (issue 14): examples load, every bad or old key is one line naming it.

* every example of ``mpc_dc/scenarios`` loads, dumps to a table that reads back
  equal, and the sweep file's overrides (dotted keys of the new schema) all apply;
* each file of the two schemas before (``tests/data/old_scenarios``) is refused with one line
  naming its first old key and the new one, and so is every old key and value alone;
* unknown keys name the nearest valid key; out-of-range values, nodes and zones the
  data do not have, models that fit nowhere, DR days outside the run are refused at
  load, each with the key in the file;
* overrides reach list entries by position or name and add absent optional blocks;
  ``controller_variant`` labels.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest

from mpc_dc.site.scenario import (
    OLD_KEYS,
    OLD_VALUES,
    REMOVED_KEYS,
    Scenario,
    check_old_keys,
    controller_variant,
    default_scenario,
    example_path,
    load_scenario,
    read_toml,
    scenario_from_table,
    scenario_to_mapping,
    with_overrides,
)
from tests.tables import DELETE, merged
from traces.errors import ConfigError

EXAMPLES = sorted(p.stem for p in example_path("default").parent.glob("*.toml"))
OLD_EXAMPLES = Path(__file__).parent / "data" / "old_scenarios"
"""The example files of the two schemas before the one schema, as they were shipped
(commit 3994763), kept to check that they are refused naming the new key."""
SCENARIO_EXAMPLES = [n for n in EXAMPLES if not n.startswith("sweep_")]

#: A small valid table of the new schema: the product site, synthetic, two days.
BASE: dict[str, Any] = {
    "name": "t",
    "run": {"start": "2022-04-01T04:00:00Z", "days": 2, "history_days": 1},
    "data": {"source": "synthetic"},
    "site": {"campuses": [
        {"name": "north", "price_node": "D", "gpus": 16,
         "other_it": {"it_capacity_mw": 0.1, "deferrable_share": 0.5},
         "renewable": {"nameplate_mw": 0.2}, "grid": {"export_limit_mw": 0.2}},
        {"name": "nyc", "price_node": "J", "gpus": 8},
    ]},
    "fleet": {"models": ["qwen3-32b", "qwen3-235b-a22b"]},
    "dr": {"days": ["2022-04-02"]},
}


def _campus(i: int, **changes: Any) -> dict[str, Any]:
    campuses = copy.deepcopy(BASE["site"]["campuses"])
    campuses[i].update(changes)
    return {"site": {"campuses": campuses}}


def _refused(table: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        scenario_from_table(table, "s.toml")
    err = info.value
    assert "\n" not in str(err) and err.source == "s.toml", str(err)
    return err


def test_every_old_example_has_a_migrated_one() -> None:
    """The old embedded default (an RCDC week) is ``rcdc_default`` now; ``default`` is the
    synthetic product site."""
    old = sorted(p.stem for p in OLD_EXAMPLES.glob("*.toml"))
    migrated = {"default": "rcdc_default"}
    # New examples without an old counterpart: the product site, the reliability
    # sweep of issue 18, the per-channel forecast-error sweep of issue 17 and issue
    # 16's cost-SLO sweep and 30-day BurstGPT fleet.
    new = {"default", "nyiso_wind_fleet", "sweep_faults", "sweep_forecast_channels",
           "sweep_cost_slo", "burstgpt_caiso_month"}
    assert {migrated.get(n, n) for n in old} | new == set(EXAMPLES)


@pytest.mark.parametrize("name", SCENARIO_EXAMPLES)
def test_example_loads_and_reads_back_equal(name: str) -> None:
    scenario = load_scenario(example_path(name))
    table = scenario_to_mapping(scenario)
    assert "fleet" not in table["site"] and "table" not in table.get("fleet", {})
    again = scenario_from_table(table, "<dump>")
    assert again == scenario
    assert again.site.fleet == again.fleet  # the top-level [fleet] is the site's fleet


def test_default_is_the_synthetic_product_site() -> None:
    default = default_scenario()
    product = load_scenario(example_path("nyiso_wind_fleet"))
    assert default.data.source == "synthetic" and product.data.source == "real"
    assert default.site == product.site and default.fleet == product.fleet
    assert default.run.days < product.run.days
    assert product.run.days == 30 and len(product.site.campuses) == 3
    assert [c.renewable is not None for c in product.site.campuses] == [True, True, False]
    assert [c.other_it is not None for c in product.site.campuses] == [True, False, False]
    assert all(c.grid.tariff.kind == "wholesale" for c in product.site.campuses)
    assert sum(c.grid.export_limit_mw > 0 for c in product.site.campuses) == 2
    assert {q for pool in product.site.pools for q in pool[2:]} == {"BF16", "FP8"}


def test_sweep_overrides_use_the_new_keys() -> None:
    table = read_toml(example_path("sweep_forecast_error"))
    sweep = table.pop("sweep")
    base = scenario_from_table(table, "sweep")
    grid = sweep["grid"]
    runs = 0
    for case, values in itertools.product(sweep["list"], itertools.product(*grid.values())):
        overrides = {**case, **dict(zip(grid, values, strict=True))}
        scenario = with_overrides(base, overrides, "sweep")
        other_it = scenario.site.campuses[0].other_it
        assert other_it is not None
        assert other_it.deferrable_share == overrides[next(iter(grid))]
        runs += 1
    assert runs == 24
    assert with_overrides(base, sweep["reference"], "sweep").controller.kind == "perfect"


# ----------------------------------------------------------------------------- old keys


#: Each file of the two schemas before: the old key it is refused on first.
OLD_FILES = {
    "default": "run.deferrable_share",
    "rcdc_nyiso_wholesale": "run.deferrable_share",
    "rcdc_nyiso_retail": "run.deferrable_share",
    "sweep_forecast_error": "run.deferrable_share",
    "fleet_default": "kind",
    "dr_caiso": "kind",
}


@pytest.mark.parametrize("name", sorted(OLD_FILES))
def test_old_example_files_are_refused_naming_the_new_key(name: str) -> None:
    table = read_toml(OLD_EXAMPLES / f"{name}.toml")
    table.pop("sweep", None)
    err = _refused(table)
    assert err.key == OLD_FILES[name]
    assert "schema before the one schema" in err.message


OLD_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "kind": ({"kind": "fleet"}, "kind", "remove it"),
    "kind_rcdc": ({"kind": "rcdc"}, "kind", "remove it"),
    "flexibility": ({"flexibility": "S4"}, "flexibility", "now fleet.flexibility"),
    "dr_events": ({"dr_events": {"days": []}}, "dr_events", "now [dr]"),
    "site.datacenter": ({"site": {"datacenter": {"it_capacity_mw": 1.0}}}, "site.datacenter",
                        "now [site.campuses.other_it]"),
    "site.renewable": ({"site": {"renewable": {"nameplate_mw": 1.0}}}, "site.renewable",
                       "now site.campuses[i].renewable"),
    "site.grid": ({"site": {"grid": {}}}, "site.grid", "now site.campuses[i].grid"),
    "site.battery": ({"site": {"battery": {}}}, "site.battery",
                     "now site.campuses[i].battery"),
    "site.fleet": ({"site": {"fleet": {}}}, "site.fleet", "now the top-level [fleet]"),
    "fleet.campuses": ({"fleet": {"campuses": []}}, "fleet.campuses",
                       "now [[site.campuses]]"),
    "fleet.carbon_price": ({"fleet": {"carbon_price_usd_per_t": 1.0}},
                           "fleet.carbon_price_usd_per_t",
                           "now site.carbon_price_usd_per_t"),
    "fleet.dr": ({"fleet": {"dr": {}}}, "fleet.dr", "now [site.dr]"),
    "fleet.table": ({"fleet": {"table": {}}}, "fleet.table", "not a scenario key"),
    "data.zone": ({"data": {"zone": "F"}}, "data.zone", "now site.campuses[i].price_node"),
    "data.data_dir": ({"data": {"data_dir": "x"}}, "data.data_dir", "now data.dir"),
    "data.price_known_ahead": ({"data": {"price_known_ahead": True}},
                               "data.price_known_ahead", "now controller.price_known_ahead"),
    "data.rate_multiplier": ({"data": {"rate_multiplier": 2.0}}, "data.rate_multiplier",
                             "now workload.requests.rate_multiplier"),
    "data.model_map": ({"data": {"model_map": {}}}, "data.model_map",
                       "now workload.requests.model_map"),
    "run.deferrable_share": ({"run": {"deferrable_share": 0.4}}, "run.deferrable_share",
                             "now site.campuses[i].other_it.deferrable_share"),
    "run.window_h": ({"run": {"window_h": 24}}, "run.window_h",
                     "now site.campuses[i].other_it.window_h"),
    "run.deferrable_release": ({"run": {"deferrable_release": "on_arrival"}},
                               "run.deferrable_release", "now site.campuses[i].other_it.release"),
    "data.source=nyiso": ({"data": {"source": "nyiso"}}, "data.source",
                          "'nyiso' is a value of the schema before the one schema; now "
                          'data.source = "real"'),
    "data.source=caiso": ({"data": {"source": "caiso"}}, "data.source",
                          "'caiso' is a value of the schema before"),
    "controller.kind=rule": ({"controller": {"kind": "rule"}}, "controller.kind",
                             'now controller.kind = "baseline"'),
    "controller.fault_rate": ({"controller": {"fault_rate": 0.1}}, "controller.fault_rate",
                              "now faults.main_solve"),
}


def test_every_old_key_and_value_has_a_case() -> None:
    keys = {case[1] for case in OLD_CASES.values()}
    assert set(OLD_KEYS) <= keys
    assert {k for k, _ in OLD_VALUES} <= keys


@pytest.mark.parametrize("case", sorted(OLD_CASES))
def test_old_key_is_one_line_naming_the_new_key(case: str) -> None:
    patch, key, message = OLD_CASES[case]
    err = _refused(merged(BASE, patch))
    assert err.key == key and message in err.message, str(err)


@pytest.mark.parametrize("case", sorted(OLD_CASES))
def test_old_key_in_an_override_names_the_new_key(case: str) -> None:
    patch, key, message = OLD_CASES[case]
    node: Any = patch
    dotted = []
    while isinstance(node, dict) and node:
        name, node = next(iter(node.items()))
        dotted.append(name)
    base = scenario_from_table(BASE, "base")
    with pytest.raises(ConfigError) as info:
        with_overrides(base, {".".join(dotted): node}, "sweep.toml")
    assert info.value.key == key and message in info.value.message


@pytest.mark.parametrize("override", ["site.campuses[0].grid.curtail_on_price",
                                      "site.campuses[north].grid.curtail_on_price"])
def test_a_removed_key_is_one_line_naming_what_replaces_it(override: str) -> None:
    """``curtail_on_price`` (the plant curtailed on the realized price, a look-ahead)
    in a file and in an override: refused, naming the controller's curtailment."""
    assert set(REMOVED_KEYS) == {"site.campuses.grid.curtail_on_price"}
    err = _refused(merged(BASE, _campus(0, grid={"export_limit_mw": 0.2,
                                                 "curtail_on_price": True})))
    assert err.key == "site.campuses[0].grid.curtail_on_price", str(err)
    assert "removed" in err.message and "controller.curtail_confidence" in err.message
    with pytest.raises(ConfigError) as info:
        with_overrides(scenario_from_table(BASE, "base"), {override: False}, "sweep.toml")
    assert info.value.key == override and "controller.curtail_confidence" in info.value.message


def test_check_old_keys_accepts_the_new_schema() -> None:
    for name in SCENARIO_EXAMPLES:
        check_old_keys(read_toml(example_path(name)), name)


# ----------------------------------------------------------------------------- bad keys


#: (patch of BASE, key named, text in the message).
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown_top": ({"controler": {}}, "controler", "did you mean 'controller'?"),
    "unknown_run": ({"run": {"dayz": 2}}, "run.dayz", "did you mean 'days'?"),
    "unknown_campus_key": (_campus(0, gpu=4), "site.campuses[0].gpu",
                           "did you mean 'gpus'?"),
    "unknown_other_it_key": (_campus(0, other_it={"capacity_mw": 1.0}),
                             "site.campuses[0].other_it.capacity_mw",
                             "did you mean 'it_capacity_mw'?"),
    "unknown_tariff_key": (_campus(1, grid={"tariff": {"knd": "retail"}}),
                           "site.campuses[1].grid.tariff.knd", "did you mean 'kind'?"),
    "unknown_requests_key": ({"workload": {"requests": {"rate": 2.0}}},
                             "workload.requests.rate",
                             "valid keys: source, rate_multiplier, model_map"),
    "no_campuses": ({"site": {"campuses": DELETE}}, "site.campuses",
                    "required key is missing"),
    "no_site_table": ({"site": DELETE}, "site", "required key is missing"),
    "no_site": ({"site": None}, "site", "expected a table"),
    "campus_without_node": ({"site": {"campuses": [{"name": "x"}]}},
                            "site.campuses[0].price_node", "required key is missing"),
    "negative_gpus": (_campus(1, gpus=-1), "site.campuses[1].gpus", "expected a value >= 0"),
    "pue_below_one": (_campus(1, pue=0.9), "site.campuses[1].pue", "expected a value >= 1"),
    "duplicate_names": (_campus(1, name="north"), "site.campuses",
                        "expected unique campus names"),
    "deferrable_share": (_campus(0, other_it={"deferrable_share": 1.5}),
                         "site.campuses[0].other_it.deferrable_share", "in [0, 1]"),
    "window_not_quarter": (_campus(0, other_it={"window_h": 1.1}),
                           "site.campuses[0].other_it.window_h", "multiple of 0.25 h"),
    "processing_convex": (_campus(0, other_it={"processing": {
        "power_frac": [0.0, 0.5, 1.0], "work_frac": [0.0, 0.2, 1.0]}}),
        "site.campuses[0].other_it.processing", "concave"),
    "demand_charge_wholesale": (_campus(1, grid={"tariff": {"demand_charge_usd_per_kw": 5}}),
                                "site.campuses[1].grid.tariff.demand_charge_usd_per_kw",
                                "retail tariff only"),
    "battery_initial_above": (_campus(1, battery={"energy_mwh": 1.0, "initial_energy_mwh": 2}),
                              "site.campuses[1].battery.initial_energy_mwh", "[0, 1.0]"),
    "negative_carbon_price": ({"site": {"carbon_price_usd_per_t": -1.0}},
                              "site.carbon_price_usd_per_t", ">= 0"),
    "dr_terms": ({"site": {"dr": {"penalty_usd_per_kwh": -1.0}}},
                 "site.dr.penalty_usd_per_kwh", ">= 0"),
    "flexibility": ({"fleet": {"flexibility": "S7"}}, "fleet.flexibility", "expected one of"),
    "unknown_model": ({"fleet": {"models": ["gpt-5"]}}, "fleet.models", "no model 'gpt-5'"),
    "model_fits_nowhere": ({"site": {"campuses": [
        {"name": "a", "price_node": "D", "gpus": 4}]}}, "fleet.models",
        "qwen3-235b-a22b needs at least 8 GPUs"),
    "allowed_precision_unknown": ({"fleet": {"allowed_precisions": ["FP4"]}},
                                  "fleet.allowed_precisions", "'FP4' is no precision"),
    "allowed_precision_empty_under_s1": ({"fleet": {"allowed_precisions": ["FP8"],
                                                    "flexibility": "S1"}},
                                         "fleet.allowed_precisions", "none of ['FP8']"),
    "gpus_without_fleet": ({"fleet": None, "site": {"campuses": [
        {"name": "a", "price_node": "D", "gpus": 8}]}}, "site.campuses[0].gpus",
        "no [fleet] to serve on them"),
    "run_days": ({"run": {"days": 0}}, "run.days", "expected a value > 0"),
    "run_days_too_long": ({"run": {"days": 400}}, "run.days", "<= 366"),
    # 2.01 d ran round(192.96) = 193 intervals, 2.0104 d, without a word
    "run_days_not_whole_intervals": ({"run": {"days": 2.01}}, "run.days",
                                     "expected a whole number of 15-minute intervals (a "
                                     "multiple of 1/96 d = 0.25 h), got 2.01 d = 192.96 "
                                     "intervals"),
    "run_start_off_grid": ({"run": {"start": "2022-04-01T04:05:00Z"}}, "run.start",
                           "15-minute grid"),
    "run_start_not_utc": ({"run": {"start": "2022-04-01T04:00:00+02:00"}}, "run.start",
                          "UTC time"),
    "local_tz": ({"run": {"local_tz": "Mars/Olympus"}}, "run.local_tz", "IANA time zone"),
    "data_source": ({"data": {"source": "mixed"}}, "data.source",
                    "expected one of ['synthetic', 'real']"),
    "requests_source": ({"workload": {"requests": {"source": "azure"}}},
                        "workload.requests.source", "expected one of"),
    "rate_multiplier": ({"workload": {"requests": {"rate_multiplier": 0.0}}},
                        "workload.requests.rate_multiplier", "> 0"),
    "model_map_trace_name": ({"workload": {"requests": {"model_map": {"GPT4": "qwen3-32b"}}}},
                             "workload.requests.model_map", "'GPT4' is not a model name"),
    "model_map_not_served": ({"workload": {"requests": {"model_map": {"GPT-4": "qwen3-8b"}}}},
                             "workload.requests.model_map", "which the fleet does not serve"),
    "ttft_unknown_model": ({"serving": {"ttft_slo_s": {"qwen3-8b": 1.0}}},
                           "serving.ttft_slo_s", "'qwen3-8b' is not served"),
    "fidelity": ({"serving": {"fidelity": "exact"}}, "serving.fidelity", "expected one of"),
    "dr_day_outside_run": ({"dr": {"days": ["2022-04-05"]}}, "dr.days",
                           "DR day 2022-04-05 (America/New_York, 2022-04-05 04:00 to "
                           "2022-04-06 04:00 UTC) is not a whole day of the run"),
    "dr_day_not_a_date": ({"dr": {"days": ["2022-04-31"]}}, "dr.days",
                          "expected a date YYYY-MM-DD"),
    "dr_hours": ({"dr": {"start_hour": 20, "end_hour": 18}}, "dr.end_hour",
                 "expected an hour after start_hour (20)"),
    "dr_campus": ({"dr": {"campuses": ["south"]}}, "dr.campuses", "no campus 'south'"),
    "controller_kind": ({"controller": {"kind": "smart"}}, "controller.kind",
                        "expected one of ['baseline', 'mpc', 'perfect', 'offline']"),
    "forecaster": ({"controller": {"forecaster": "sarimx"}}, "controller.forecaster",
                   "did you mean 'sarimax'?"),
    "forecaster_day_ahead": ({"controller": {"forecaster": "day_ahead_known"}},
                             "controller.forecaster", "controller.price_known_ahead"),
    "fine_horizon": ({"controller": {"fine_horizon_h": 0.3}}, "controller.fine_horizon_h",
                     "multiple of 0.25 h"),
    "quantile": ({"controller": {"demand_quantile": 1.0}}, "controller.demand_quantile",
                 "[0, 1)"),
    "integer_intervals": ({"controller": {"integer_intervals": 0}},
                          "controller.integer_intervals", ">= 1"),
    "error_level": ({"controller": {"error_level": 11.0}}, "controller.error_level", "<= 10"),
    # Node limits (deterministic, unlike the time limits): whole positive numbers.
    "mip_max_nodes_zero": ({"controller": {"mip_max_nodes": 0}}, "controller.mip_max_nodes",
                           "expected an integer in [1, 2147483647] (branch-and-bound nodes)"),
    "mip_max_nodes_float": ({"controller": {"mip_max_nodes": 1e4}},
                            "controller.mip_max_nodes", "expected an integer"),
    "offline_mip_max_nodes": ({"controller": {"offline_mip_max_nodes": -5}},
                              "controller.offline_mip_max_nodes",
                              "expected an integer in [1, 2147483647] "
                              "(branch-and-bound nodes), got -5"),
    "offline_mip_max_nodes_bool": ({"controller": {"offline_mip_max_nodes": True}},
                                   "controller.offline_mip_max_nodes", "expected an integer"),
    "mip_max_nodes_unknown": ({"controller": {"offline_max_nodes": 100}},
                              "controller.offline_max_nodes",
                              "did you mean 'offline_mip_max_nodes'?"),
    "mistyped": ({"controller": {"horizon_h": "24"}}, "controller.horizon_h",
                 "expected a number"),
    # Nodes, zones and series sources the data source does not have.
    "synthetic_carbon_zone": (_campus(0, carbon_zone="DE"), "site.campuses[0].carbon_zone",
                              "unknown carbon zone 'DE' for data.source 'synthetic'; "
                              "expected one of US-CAL-CISO, US-NY-NYIS"),
    "real_price_node": ({"data": {"source": "real"}} | _campus(1, price_node="NYC"),
                        "site.campuses[1].price_node",
                        "unknown price node 'NYC' for data.source 'real'"),
    "real_carbon_zone": ({"data": {"source": "real"}} | _campus(1, carbon_zone="US-TEX-ERCO"),
                         "site.campuses[1].carbon_zone", "unknown carbon zone 'US-TEX-ERCO'"),
    "retail_off_zone_f": ({"data": {"source": "real"}}
                          | _campus(1, grid={"tariff": {"kind": "retail"}}),
                          "site.campuses[1].grid.tariff.kind",
                          "day-ahead prices, which the data have for NYISO zone F"),
    "retail_caiso": ({"data": {"source": "real"}}
                     | _campus(1, price_node="NP15", grid={"tariff": {"kind": "retail"}}),
                     "site.campuses[1].grid.tariff.kind", "not at 'NP15'"),
    "ny_wind_in_california": ({"data": {"source": "real"}} | _campus(0, price_node="SP15"),
                              "site.campuses[0].renewable.source",
                              "New York wind (EIA-930), for NYISO price nodes only"),
    "real_wind_at_a_label": (_campus(0, price_node="upstate", renewable={"source": "real"}),
                             "site.campuses[0].renewable.source", "not 'upstate'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_key_is_one_line_naming_it(case: str) -> None:
    patch, key, message = BAD[case]
    err = _refused(merged(BASE, patch))
    assert err.key == key and message in err.message, str(err)
    assert str(err).startswith(f"s.toml: key '{key}': ")


def test_valid_variations_load() -> None:
    """What the checks must not refuse: NYISO names as nodes, retail at F, synthetic
    labels, windpowerlib at a CAISO hub, no fleet and no GPUs, an empty battery table."""
    real: dict[str, Any] = {"data": {"source": "real"}}
    patch: dict[str, Any]
    for patch in (
        real | _campus(1, price_node="N.Y.C."),
        real | _campus(1, price_node="CAPITL", grid={"tariff": {"kind": "retail"}}),
        real | _campus(0, price_node="NP15", carbon_zone="US-CAL-CISO",
                       renewable={"source": "windpowerlib"}),
        _campus(0, price_node="upstate"),
        _campus(1, battery={}),
        {"fleet": None, "dr": {"days": []}, "site": {"campuses": [
            {"name": "rcdc", "price_node": "F", "other_it": {}, "renewable": {}}]}},
    ):
        scenario_from_table(merged(BASE, patch), "ok.toml")


# ----------------------------------------------------------------------------- overrides


def test_overrides_reach_campuses_by_position_and_name() -> None:
    base = scenario_from_table(BASE, "base")
    out = with_overrides(base, {"site.campuses[north].renewable.nameplate_mw": 0.5,
                                "site.campuses[1].pue": 1.4,
                                "site.campuses[nyc].battery.energy_mwh": 2.0,
                                "fleet.flexibility": "S4"}, "o")
    north, nyc = out.site.campuses
    assert north.renewable is not None and north.renewable.nameplate_mw == 0.5
    assert nyc.pue == 1.4 and nyc.battery is not None and nyc.battery.energy_mwh == 2.0
    assert nyc.battery.power_mw == 25.0  # the added block's defaults
    assert out.site.fleet is not None and out.site.fleet.flexibility == "S4"
    assert base.site.campuses[1].battery is None  # the base is unchanged


@pytest.mark.parametrize(("key", "message"), [
    ("site.campuses[5].pue", "no entry [5]: the list has 2 entries"),
    ("site.campuses[south].pue", "no entry named 'south'"),
    ("site.campuses[0].batery.energy_mwh", "did you mean 'battery'?"),
    ("run.days.x", "not a table in the scenario"),
    ("site.campuses..pue", "expected a dotted key"),
])
def test_bad_override_is_one_line_naming_it(key: str, message: str) -> None:
    base = scenario_from_table(BASE, "base")
    with pytest.raises(ConfigError) as info:
        with_overrides(base, {key: 1.0}, "o")
    assert message in info.value.message and info.value.source == "o"


def test_controller_variants() -> None:
    base = scenario_from_table(BASE, "base")
    assert controller_variant(base, "baseline").controller.kind == "baseline"
    assert controller_variant(base, "rule").controller.kind == "baseline"
    assert controller_variant(base, "oracle").controller.kind == "perfect"
    assert controller_variant(base, "offline").controller.kind == "offline"
    mpc = controller_variant(base, "seasonal_naive")
    assert (mpc.controller.kind, mpc.controller.forecaster) == ("mpc", "seasonal_naive_daily")
    both = controller_variant(base, "S3+fluid+perfect")
    assert both.fleet is not None and both.fleet.flexibility == "S3"
    assert both.site.fleet == both.fleet and both.site.fleet.levers.spatial
    assert both.serving.fidelity == "fluid" and both.controller.kind == "perfect"
    with pytest.raises(ConfigError, match="unknown label 'nope'; expected one of"):
        controller_variant(base, "nope")
    rcdc = load_scenario(example_path("rcdc_default"))
    with pytest.raises(ConfigError, match="needs a \\[fleet\\]"):
        controller_variant(rcdc, "S4")


def test_scenario_keeps_the_fleet_on_the_site() -> None:
    """``Scenario.site.fleet`` is always ``Scenario.fleet``, also after ``replace``."""
    from dataclasses import replace

    base = scenario_from_table(BASE, "base")
    assert isinstance(base, Scenario) and base.site.fleet is base.fleet
    bare = replace(base.site, fleet=None)
    again = replace(base, site=bare)
    assert again.site.fleet is base.fleet
    assert replace(base, fleet=None, site=replace(bare, campuses=tuple(
        replace(c, gpus=0) for c in bare.campuses))).site.pools == ()


def test_load_scenario_refuses_a_sweep_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a sweep file"):
        load_scenario(example_path("sweep_forecast_error"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(bad)
