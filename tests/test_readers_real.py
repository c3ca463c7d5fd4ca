"""Every real file the design uses is read; its real row counts, spans, gaps and values hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces import datasets
from traces.burstgpt import RowPolicy, read_burstgpt_hourly, read_burstgpt_requests
from traces.eia import read_eia_lmp
from traces.eia930 import NY_INSTALLED_WIND_MW_2022, read_eia930_fuel_mix
from traces.formats import read_any, sniff_format
from traces.google_power import read_google_pdu, read_google_pdus
from traces.greendcc import read_electricitymaps_carbon, read_standardized_prices
from traces.grid import STEP, Resample, intervals_per_local_day, to_grid
from traces.windpowerlib import capacity_factor, read_power_curves, read_weather

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def test_nyiso_2022(shared_data: Path) -> None:
    df, meta = read_eia_lmp(shared_data / "nyiso_lbmp/nyiso_lmp_rt_hr_zones_2022.csv")
    assert len(df) == meta.rows_read == meta.rows_kept == 8707
    assert meta.resolution == pd.Timedelta(hours=1)
    assert meta.missing_intervals == 53
    runs = sorted(g.n_intervals for g in meta.gaps)
    assert runs == [1] * 9 + [19, 25]
    long_gaps = {g.start: g.n_intervals for g in meta.gaps if g.n_intervals > 1}
    assert long_gaps == {ts("2022-07-08 23:00"): 25, ts("2022-08-12 22:00"): 19}
    assert df.index[0] == ts("2022-01-01 05:00")  # local midnight EST, UTC end 06:00 - 1 h
    assert df.index[-1] == ts("2023-01-01 04:00")
    assert df.index.name == "interval_start_utc"
    assert len(df.columns) == 33
    assert df["lmp_usd_per_mwh[A]"].iloc[0] == pytest.approx(24.76)
    assert df["lmp_usd_per_mwh[J]"].iloc[0] == pytest.approx(28.26)
    assert df["congestion_usd_per_mwh[A]"].iloc[0] == pytest.approx(-0.16)
    assert df["loss_usd_per_mwh[K]"].iloc[0] == pytest.approx(2.6)
    assert meta.extra["zones"]["J"] == "J - New York City"
    assert meta.extra["local_tz"] == "America/New_York"


def test_nyiso_2021(shared_data: Path) -> None:
    df, meta = read_eia_lmp(shared_data / "nyiso_lbmp/nyiso_lmp_rt_hr_zones_2021.csv")
    assert len(df) == 8759
    assert [(g.start, g.n_intervals) for g in meta.gaps] == [(ts("2021-12-02 18:00"), 1)]
    assert df["lmp_usd_per_mwh[A]"].iloc[0] == pytest.approx(8.37)
    assert df["lmp_usd_per_mwh[F]"].iloc[0] == pytest.approx(45.67)


@pytest.mark.parametrize(
    ("quarter", "rows", "missing", "first_start", "np15"),
    [
        (1, 8623, 13, "2021-01-01 08:00", 33.22903),
        (2, 8722, 14, "2021-04-01 07:00", 37.47696),
        (3, 8803, 29, "2021-07-01 07:00", 53.18429),
        (4, 8818, 18, "2021-10-01 07:00", 57.95567),
    ],
)
def test_caiso_quarters(
    shared_data: Path, quarter: int, rows: int, missing: int, first_start: str, np15: float
) -> None:
    path = shared_data / f"caiso_lmp/caiso_lmp_rt_15min_zones_2021Q{quarter}.csv"
    df, meta = read_eia_lmp(path)
    assert len(df) == rows
    assert meta.missing_intervals == missing
    assert meta.resolution == STEP
    assert df.index[0] == ts(first_start)
    assert df["lmp_usd_per_mwh[NP15]"].iloc[0] == pytest.approx(np15)
    assert set(meta.extra["zones"]) == {"NP15", "SP15", "ZP26"}
    assert {c.split("[")[0] for c in df.columns} == {
        "lmp_usd_per_mwh",
        "congestion_usd_per_mwh",
        "energy_usd_per_mwh",
        "loss_usd_per_mwh",
    }
    # LMP = energy + congestion + loss (CAISO convention, checked on the data).
    total = df["energy_usd_per_mwh[SP15]"] + df["congestion_usd_per_mwh[SP15]"]
    total = total + df["loss_usd_per_mwh[SP15]"]
    assert np.allclose(total, df["lmp_usd_per_mwh[SP15]"], atol=2e-3)


@pytest.mark.parametrize("year", [2021, 2022])
def test_nyiso_dst_days(shared_data: Path, year: int) -> None:
    df, _ = read_eia_lmp(shared_data / f"nyiso_lbmp/nyiso_lmp_rt_hr_zones_{year}.csv")
    grid = to_grid(df[["lmp_usd_per_mwh[J]"]], Resample.HOLD, source_freq=pd.Timedelta(hours=1))
    assert grid.index.is_unique
    assert pd.DatetimeIndex(grid.index).is_monotonic_increasing
    counts = intervals_per_local_day(pd.DatetimeIndex(grid.index), "America/New_York")
    spring, fall = {2021: ("2021-03-14", "2021-11-07"), 2022: ("2022-03-13", "2022-11-06")}[year]
    for day, expected in ((spring, 92), (fall, 100)):
        when = pd.Timestamp(day).date()
        assert counts[when] == expected
        for neighbour in (-1, 1):
            assert counts[(pd.Timestamp(day) + pd.Timedelta(days=neighbour)).date()] == 96
    # No UTC interval is duplicated or missing around the changes.
    for day in (spring, fall):
        local = pd.Timestamp(day, tz="America/New_York")
        window = grid.loc[local - pd.Timedelta(days=1) : local + pd.Timedelta(days=2)]
        steps = np.diff(pd.DatetimeIndex(window.index).as_unit("ns").asi8)
        assert (steps == STEP.value).all()
        assert not window.isna().any().any()


def test_greendcc_prices(shared_data: Path) -> None:
    ny, meta = read_standardized_prices(
        shared_data / "nyiso_lbmp/US-NY-NYIS_electricity_prices_2022.csv"
    )
    assert len(ny) == 8760 and meta.gaps == ()
    assert ny.index[0] == ts("2022-01-01 00:00") and ny.index[-1] == ts("2022-12-31 23:00")
    assert ny["price_usd_per_mwh"].iloc[0] == pytest.approx(30.95)
    ca, _ = read_standardized_prices(
        shared_data / "caiso_lmp/US-CAL-CISO_electricity_prices_2021.csv"
    )
    assert len(ca) == 8760
    assert ca["price_usd_per_mwh"].iloc[0] == pytest.approx(37.82164)


def test_electricitymaps(shared_data: Path) -> None:
    ca, meta = read_electricitymaps_carbon(shared_data / "carbon/US-CAL-CISO_2021_hourly.csv")
    assert len(ca) == 8760 and meta.gaps == ()
    assert int(ca["estimated"].sum()) == 5 == meta.extra["estimated_rows"]
    assert ca["estimated"].dtype == bool
    assert meta.extra["zone_id"] == "US-CAL-CISO"
    first = ca.iloc[0]
    assert first["carbon_gco2_per_kwh"] == pytest.approx(238.71)
    assert first["carbon_lca_gco2_per_kwh"] == pytest.approx(317.31)
    assert first["low_carbon_pct"] == pytest.approx(44.72)
    assert first["renewable_pct"] == pytest.approx(33.74)
    assert ca["carbon_gco2_per_kwh"].min() == pytest.approx(58.9, abs=0.05)
    assert ca["carbon_gco2_per_kwh"].max() == pytest.approx(327, abs=0.5)
    ny, ny_meta = read_electricitymaps_carbon(shared_data / "carbon/US-NY-NYIS_2022_hourly.csv")
    assert len(ny) == 8760 and ny_meta.extra["estimated_rows"] == 2
    assert ny["carbon_gco2_per_kwh"].iloc[0] == pytest.approx(207.16)


def test_ny_wind(shared_data: Path) -> None:
    df, meta = read_eia930_fuel_mix(
        shared_data / "wind/NYIS_NG_&_avgCI.csv", installed_wind_mw=NY_INSTALLED_WIND_MW_2022
    )
    assert len(df) == 8760 and meta.extra["blank_rows"] == 0
    assert df["wind_mw"].mean() == pytest.approx(544, abs=0.5)
    assert df["wind_mw"].max() == 1869 and df["wind_mw"].min() == 0
    assert df["wind_cf"].max() == pytest.approx(1869 / 2192)
    first = df.iloc[0]
    assert (first["wind_mw"], first["hydro_mw"], first["gas_mw"]) == (218, 3962, 6220)
    assert first["avg_ci_gco2_per_kwh"] == pytest.approx(251.7510934937124)


def test_ciso_fuel_mix_blank_rows_are_counted(shared_data: Path) -> None:
    df, meta = read_eia930_fuel_mix(shared_data / "carbon/CISO_NG_&_avgCI.csv")
    assert len(df) == meta.rows_kept == 8760
    assert meta.extra["blank_rows"] == 3
    assert list(meta.extra["blank_row_times"]) == [
        ts("2022-01-05 10:00"),
        ts("2022-05-17 18:00"),
        ts("2022-06-13 18:00"),
    ]
    assert int(df["wind_mw"].isna().sum()) == 3
    assert "wind_cf" not in df.columns


@pytest.mark.parametrize("pdu", [6, 7, 8, 9, 10])
def test_google_pdu(shared_data: Path, pdu: int) -> None:
    df, meta = read_google_pdu(shared_data / f"google_power/cella_pdu{pdu}.csv")
    assert len(df) == 8928 and meta.gaps == ()
    assert meta.resolution == pd.Timedelta(minutes=5)
    assert df.index[0] == ts("2019-05-01 07:00")  # 2019-05-01 00:00 PDT
    assert df.index[-1] == ts("2019-06-01 06:55")
    assert meta.extra["pdu"] == f"pdu{pdu}"
    first = {6: 0.659, 7: 0.663, 8: 0.664, 9: 0.715, 10: 0.699}[pdu]
    assert df["power_util"].iloc[0] == pytest.approx(first)


def test_google_pdus_mean(shared_data: Path) -> None:
    paths = [shared_data / f"google_power/cella_pdu{n}.csv" for n in range(6, 11)]
    df, meta = read_google_pdus(paths)
    assert len(df) == 8928 and (df["n_pdus"] == 5).all()
    assert df["power_util"].iloc[0] == pytest.approx((0.659 + 0.663 + 0.664 + 0.715 + 0.699) / 5)
    assert meta.rows_read == 5 * 8928


def test_burstgpt_hourly(shared_data: Path) -> None:
    df, meta = read_burstgpt_hourly(shared_data / "burstgpt/burstgpt_hourly.csv")
    assert len(df) == 1464 and meta.gaps == ()
    assert meta.extra["total_requests"] == 1_429_737
    assert df["requests_all_per_h"].sum() == 1_429_737
    assert df.index[0] == ts("2022-04-01 04:00")  # default origin: 2022-04-01 00:00 EDT
    assert tuple(df.iloc[1]) == (11, 0, 11)
    other, _ = read_burstgpt_hourly(shared_data / "burstgpt/burstgpt_hourly.csv", "2021-01-01")
    assert other.index[0] == ts("2021-01-01 00:00")


def test_burstgpt_first400(shared_data: Path) -> None:
    path = shared_data / "burstgpt/burstgpt_v1_first400.csv"
    df, meta = read_burstgpt_requests(path)
    assert len(df) == 400 and meta.dropped == {}
    assert meta.extra["version"] == "v1"
    assert meta.extra["zero_request_rows"] == 17
    assert df["arrival_s"].iloc[0] == 5 and df["arrival_s"].iloc[-1] == 37274
    assert (df["model"] == "ChatGPT").sum() == 320 and (df["model"] == "GPT-4").sum() == 80
    assert (df["log_type"] == "API log").sum() == 2
    assert df.index[0] == pd.Timedelta(seconds=5)
    kept, dropped_meta = read_burstgpt_requests(
        path, origin="2022-04-01 04:00", zero_request=RowPolicy.DROP, failed=RowPolicy.DROP
    )
    assert len(kept) == 383
    assert dropped_meta.dropped["zero_request_tokens"] == 17
    assert (
        dropped_meta.rows_read == 400 == dropped_meta.rows_kept + sum(dropped_meta.dropped.values())
    )
    assert kept.index[0] == ts("2022-04-01 04:00:05")
    assert kept["request_tokens"].median() == 353
    assert kept["response_tokens"].median() == 238


def test_windpowerlib(shared_data: Path) -> None:
    weather, meta = read_weather(shared_data / "wind/windpowerlib/weather.csv")
    assert len(weather) == 8760 and meta.gaps == ()
    assert weather.index[0] == ts("2009-12-31 23:00")  # 2010-01-01 00:00+01:00
    assert weather["wind_speed_m_per_s[10m]"].iloc[0] == pytest.approx(5.32697)
    assert weather["wind_speed_m_per_s[80m]"].iloc[0] == pytest.approx(7.80697)
    assert weather["temperature_k[2m]"].iloc[0] == pytest.approx(267.6)
    assert weather["pressure_pa[0m]"].iloc[0] == pytest.approx(98405.7)
    curves = read_power_curves(shared_data / "wind/windpowerlib/power_curves.csv")
    assert curves.at["E-101/3050", 4.0] == 155000.0
    cf = capacity_factor(np.array([0.0, 4.0, 30.0, 40.0]), "E-101/3050", curves)
    assert cf[0] == 0.0 and cf[1] == pytest.approx(155000.0 / 3000000.0)  # curve max 3 MW
    assert cf[3] == 0.0  # beyond the last curve point: cut out
    series = capacity_factor(weather["wind_speed_m_per_s[80m]"], "E-101/3050", curves)
    assert ((series >= 0) & (series <= 1)).all()


def test_read_any_dispatches_every_real_file(shared_data: Path) -> None:
    expected = {
        "nyiso_lbmp/nyiso_lmp_rt_hr_zones_2022.csv": "eia_lmp",
        "caiso_lmp/caiso_lmp_rt_15min_zones_2021Q1.csv": "eia_lmp",
        "nyiso_lbmp/US-NY-NYIS_electricity_prices_2022.csv": "greendcc_prices",
        "carbon/US-CAL-CISO_2021_hourly.csv": "electricitymaps_carbon",
        "wind/NYIS_NG_&_avgCI.csv": "eia930_fuel_mix",
        "burstgpt/burstgpt_hourly.csv": "burstgpt_hourly",
        "burstgpt/burstgpt_v1_first400.csv": "burstgpt_requests",
        "google_power/cella_pdu10.csv": "google_pdu",
        "wind/windpowerlib/weather.csv": "windpowerlib_weather",
        "wind/windpowerlib/power_curves.csv": "windpowerlib_power_curves",
    }
    for relative, name in expected.items():
        assert sniff_format(shared_data / relative) == name, relative
    df, meta = read_any(shared_data / "burstgpt/burstgpt_hourly.csv")
    assert len(df) == 1464 and meta.format == "burstgpt_hourly"


def test_datasets_on_grid(shared_data: Path) -> None:
    lmp, meta = datasets.nyiso_rt_lmp(shared_data, zones=["J"])
    assert list(lmp.columns) == ["lmp_usd_per_mwh[J]"]
    assert len(lmp) == 8760 * 4 and meta.missing_intervals == 53 * 4
    assert int(lmp.isna().sum().iloc[0]) == 53 * 4
    counts, _ = datasets.burstgpt_hourly_counts(shared_data)
    assert counts["requests_per_h"].sum() * 0.25 == pytest.approx(1_429_737)
    wind, _ = datasets.ny_wind_cf(shared_data)
    assert wind["wind_mw"].mean() == pytest.approx(544, abs=0.5)  # HOLD conserves MWh
    shape, _ = datasets.google_load_shape(shared_data)
    assert len(shape) == 31 * 96 and shape["load_shape"].mean() == pytest.approx(1.0)
    caiso, caiso_meta = datasets.caiso_rt_lmp(shared_data, zones=["NP15"])
    assert caiso_meta.rows_read == 8623 + 8722 + 8803 + 8818
    assert caiso_meta.missing_intervals == 13 + 14 + 29 + 18
    assert len(caiso) == 365 * 96
    carbon, _ = datasets.caiso_carbon(shared_data)
    assert int(carbon["estimated"].sum()) == 5 * 4
    da, _ = datasets.nyiso_da_lmp(shared_data)
    assert da["lmp_da_usd_per_mwh[F]"].iloc[0] == pytest.approx(30.95)
    ny, _ = datasets.ny_carbon(shared_data)
    assert len(ny) == 8760 * 4
