"""Bad input files give exactly one line naming file, line, field and what was expected.

The files under ``tests/data/bad/`` are made up, in the real formats, one per case
(named for the case) so that they can be reused as a corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from traces.burstgpt import read_burstgpt_hourly, read_burstgpt_requests
from traces.eia import read_eia_lmp
from traces.eia930 import read_eia930_fuel_mix
from traces.errors import TraceError
from traces.formats import read_any, sniff_format
from traces.google_power import read_google_pdu
from traces.greendcc import read_electricitymaps_carbon, read_standardized_prices
from traces.llm_power import read_llm_perf
from traces.windpowerlib import read_power_curves, read_weather

BAD = Path(__file__).parent / "data" / "bad"
NOW = pd.Timestamp("2025-01-01", tz="UTC")
UTC_END = "field 'UTC Timestamp (Interval Ending)'"
DST_HINT = "(a repeated daylight-saving hour must be given in UTC)"


def _lmp(path: Path) -> Any:
    return read_eia_lmp(path, now=NOW)


CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    (
        "lmp_missing_column",
        _lmp,
        f"line 4: {UTC_END}: missing column; expected an EIA wholesale LMP header; header "
        "starts ['Local Timestamp Eastern Time (Interval Beginning)', 'Hour Number', "
        "'J - New York City LMP']",
    ),
    (
        "lmp_unparseable_timestamp",
        _lmp,
        f"line 6: {UTC_END}: unparseable timestamp '2020-03-01 0X:00:00'; "
        "expected e.g. 2022-01-01 06:00:00",
    ),
    (
        "lmp_duplicated_timestamp",
        _lmp,
        f"line 7: {UTC_END}: duplicated timestamp 2020-03-01 07:00:00+00:00; expected "
        f"strictly increasing times {DST_HINT}",
    ),
    (
        "lmp_dst_duplicated_local_hour",
        _lmp,
        f"line 7: {UTC_END}: duplicated timestamp 2020-11-01 06:00:00+00:00; expected "
        f"strictly increasing times {DST_HINT}",
    ),
    (
        "lmp_unsorted",
        _lmp,
        f"line 7: {UTC_END}: timestamp 2020-03-01 07:00:00+00:00 is earlier than the row "
        "before (2020-03-01 08:00:00+00:00); expected rows sorted by time",
    ),
    (
        "lmp_nan_run_too_long",
        _lmp,
        "line 6: field 'J - New York City LMP': 6 consecutive missing values; at most 4 allowed",
    ),
    (
        "lmp_absurd_price",
        _lmp,
        "line 6: field 'J - New York City LMP': value 12500 is outside [-10000, 10000]; "
        "expected |price| <= 10,000 $/MWh",
    ),
    (
        "lmp_future_timestamp",
        _lmp,
        f"line 7: {UTC_END}: timestamp 2099-03-01 07:00:00+00:00 is in the future "
        "(after 2025-01-01 00:00Z)",
    ),
    (
        "lmp_local_time_disagrees",
        _lmp,
        "line 6: field 'Local Timestamp Eastern Time (Interval Beginning)': local interval "
        "beginning 2020-03-01 02:00:00 disagrees with 'UTC Timestamp (Interval Ending)' minus "
        "the resolution; expected 2020-03-01 01:00:00 (America/New_York)",
    ),
    (
        "lmp_header_only",
        _lmp,
        "line 5: header found but no data rows; expected at least one data row",
    ),
    ("empty", _lmp, "file is empty; expected a header line and data rows"),
    (
        "lmp_given_carbon_file",
        _lmp,
        "line 1: title line 'Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gC' is "
        "not an EIA wholesale LMP title; expected 3 title lines like 'NYISO Hourly Real-Time "
        "Locational Based Marginal Prices ...' then a header starting "
        "'UTC Timestamp (Interval Ending)'",
    ),
    (
        "fuel_mix_cf_above_one",
        lambda p: read_eia930_fuel_mix(p, installed_wind_mw=1000.0, now=NOW),
        "line 3: field 'WND': value 1.5 is outside [0, 1]; expected wind capacity factor in "
        "[0, 1] with 1000 MW installed",
    ),
    (
        "burstgpt_negative_tokens",
        read_burstgpt_requests,
        "line 3: field 'Request tokens': value -5 is outside [0, inf]; "
        "expected a non-negative token count",
    ),
    (
        "burstgpt_total_mismatch",
        read_burstgpt_requests,
        "line 3: field 'Total tokens': Total tokens 90 != Request tokens + Response tokens = 80; "
        "expected the sum",
    ),
    (
        "burstgpt_unsorted",
        read_burstgpt_requests,
        "line 4: field 'Timestamp': timestamp 7 is earlier than the row before (9); "
        "expected rows sorted by arrival time",
    ),
    (
        "burstgpt_hourly_all_mismatch",
        read_burstgpt_hourly,
        "line 3: field 'all': all = 10 but conversation + api = 9; "
        "expected all == conversation + api",
    ),
    (
        "prices_not_utf8",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 3: not UTF-8 text (byte 0xe9); expected a UTF-8 CSV file",
    ),
    (
        "google_nan_run_too_long",
        lambda p: read_google_pdu(p, now=NOW),
        "line 6: field 'measured_power_util': 4 consecutive missing values; at most 3 allowed",
    ),
    (
        "prices_cut_off_mid_row",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 5: 2 fields, expected 3 as in the header; the file ends mid-row (cut off?)",
    ),
    (
        "prices_short_row",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 3: 2 fields, expected 3 as in the header; the row is cut short (a missing field "
        "or separator)",
    ),
    (
        "prices_extra_field",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 3: 4 fields, expected 3 as in the header (an extra separator, or an unquoted "
        "comma inside a value?)",
    ),
    (
        "prices_infinite_value",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 4: field 'Price (USD/MWh)': expected a finite number, got inf",
    ),
    (
        "prices_value_beyond_float",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 3: field 'Price (USD/MWh)': expected a finite number, got inf",
    ),
    (
        "prices_utf16",
        lambda p: read_standardized_prices(p, now=NOW),
        "line 1: not UTF-8 text (byte 0xff); expected a UTF-8 CSV file",
    ),
    (
        "carbon_repeated_header",
        lambda p: read_electricitymaps_carbon(p, now=NOW),
        "line 1: field 'Carbon Intensity gCO\u2082eq/kWh (direct)': column name repeated in "
        "the header (columns 5 and 7); expected unique column names",
    ),
    (
        "burstgpt_fractional_tokens",
        read_burstgpt_requests,
        "line 3: field 'Request tokens': value 12.5 is not a whole number in [0, 1e+07]; "
        "expected a token count",
    ),
    (
        "burstgpt_hourly_fractional_hour",
        read_burstgpt_hourly,
        "line 3: field 'hour': value 1.5 is not a whole number in [0, 23]; expected an hour "
        "of day 0..23",
    ),
    (
        "google_time_beyond_clock",
        lambda p: read_google_pdu(p, now=NOW),
        "line 3: field 'time': expected integer microseconds since trace start in "
        "[0, 3.16e+14] (ten years), got 1e+300",
    ),
    (
        "fuel_mix_year_zero",
        lambda p: read_eia930_fuel_mix(p, now=NOW),
        "line 3: field 'timestamp': timestamp '0000-01-01 01:00:00+00:00' is outside "
        "1900..2200; expected e.g. 2022-01-01 06:00:00",
    ),
    (
        "weather_repeated_column",
        read_weather,
        "line 1: field 'temperature / 2': column name repeated in the header (columns 3 and "
        "6); expected unique column names",
    ),
    (
        "power_curves_cut_off",
        read_power_curves,
        "line 3: 4 fields, expected 6 as in the header; the file ends mid-row (cut off?)",
    ),
    (
        "llm_perf_repeated_header",
        read_llm_perf,
        "line 1: field 'Prefill (s)': column name repeated in the header (columns 3 and 5); "
        "expected unique column names",
    ),
    (
        "unknown_format",
        read_any,
        "line 1: unknown format (first line starts 'station,reading'); known formats: "
        "eia_lmp, greendcc_prices, electricitymaps_carbon, eia930_fuel_mix, burstgpt_requests, "
        "burstgpt_hourly, google_pdu, windpowerlib_weather, windpowerlib_power_curves, "
        "mlenergy_v3, mlenergy_v3_dir, mlenergy_v2, llm_perf",
    ),
]


@pytest.mark.parametrize(("case", "reader", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_file_gives_one_line(case: str, reader: Callable[[Path], Any], expected: str) -> None:
    path = BAD / f"{case}.csv"
    with pytest.raises(TraceError) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"{path}: {expected}"


def test_every_bad_file_is_used() -> None:
    assert {p.stem for p in BAD.glob("*.csv")} == {c[0] for c in CASES}


def test_wrong_format_for_carbon_reader() -> None:
    with pytest.raises(TraceError) as info:
        read_electricitymaps_carbon(BAD / "burstgpt_total_mismatch.csv")
    assert str(info.value) == (
        f"{BAD / 'burstgpt_total_mismatch.csv'}: line 1: field 'Datetime (UTC)': missing column; "
        "expected an Electricity Maps hourly carbon CSV; header starts "
        "['Timestamp', 'Model', 'Request tokens', 'Response tokens']"
    )


def test_unknown_format_names_no_reader() -> None:
    with pytest.raises(TraceError, match=r"unknown format"):
        sniff_format(BAD / "unknown_format.csv")


def test_fall_back_local_repeat_is_fine(tmp_path: Path) -> None:
    """The real EIA layout repeats local 01:00 on the fall-back night; UTC stays unique."""
    title = (
        "NYISO Hourly Real-Time Locational Based Marginal Prices ($/megawatt) for Zones\n"
        "Hourly real-time locational marginal prices for NYISO\nSource: EIA collected\n"
        "UTC Timestamp (Interval Ending),Local Timestamp Eastern Time (Interval Beginning),"
        "J - New York City LMP\n"
    )
    rows = (
        "2020-11-01 05:00:00,2020-11-01 00:00:00,20.0\n"
        "2020-11-01 06:00:00,2020-11-01 01:00:00,21.0\n"
        "2020-11-01 07:00:00,2020-11-01 01:00:00,22.0\n"
        "2020-11-01 08:00:00,2020-11-01 02:00:00,23.0\n"
    )
    path = tmp_path / "fall_back.csv"
    path.write_text(title + rows, encoding="utf-8")
    df, meta = read_eia_lmp(path, now=NOW)
    assert df.index.is_unique and len(df) == 4 and meta.gaps == ()
    assert df.index[1] == pd.Timestamp("2020-11-01 05:00", tz="UTC")


def test_blank_line_is_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "blank_line.csv"
    path.write_text(
        "Datetime (UTC),Datetime (Local),Price (USD/MWh)\n"
        "2020-06-01 00:00:00+00:00,2020-05-31 20:00:00-04:00,31.5\n"
        "\n"
        "2020-06-01 01:00:00+00:00,2020-05-31 21:00:00-04:00,29.0\n",
        encoding="utf-8",
    )
    with pytest.raises(TraceError) as info:
        read_standardized_prices(path, now=NOW)
    assert str(info.value) == (
        f"{path}: line 3: field 'Datetime (UTC)': empty cell (blank line?); "
        "expected e.g. 2022-01-01 06:00:00"
    )
