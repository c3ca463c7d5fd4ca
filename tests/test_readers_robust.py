"""Reader defects of issue 18: cut-off rows, repeated header names (the quadratic hang)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from traces import datasets, validate
from traces.errors import TraceError, TraceRangeError
from traces.greendcc import read_standardized_prices

NOW = pd.Timestamp("2025-01-01", tz="UTC")
HEADER = "Datetime (UTC),Datetime (Local),Price (USD/MWh)"
ROWS = [
    "2020-06-01 00:00:00+00:00,2020-05-31 20:00:00-04:00,31.5",
    "2020-06-01 01:00:00+00:00,2020-05-31 21:00:00-04:00,29.0",
    "2020-06-01 02:00:00+00:00,2020-05-31 22:00:00-04:00,28.5",
]


def _refusal(folder: Path, lines: list[str]) -> tuple[Path, str]:
    """Write ``lines`` (no final newline) as a price file; the reader's one-line refusal."""
    path = folder / "prices.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(TraceError) as info:
        read_standardized_prices(path, now=NOW)
    return path, str(info.value)


def test_a_file_cut_off_mid_row_is_refused_not_loaded_with_nans(tmp_path: Path) -> None:
    """Cut after the local time: pandas would fill the price with NaN (a gap, accepted)."""
    path, message = _refusal(tmp_path, [HEADER, *ROWS[:2], ROWS[2].rsplit(",", 1)[0]])
    assert message == (f"{path}: line 4: 2 fields, expected 3 as in the header; the file ends "
                       "mid-row (cut off?)")


def test_a_short_row_inside_the_file_is_refused(tmp_path: Path) -> None:
    _, message = _refusal(tmp_path, [HEADER, ROWS[0], ROWS[1].rsplit(",", 1)[0], ROWS[2], ""])
    assert "line 3: 2 fields, expected 3 as in the header; the row is cut short" in message


def test_a_quoted_file_is_checked_too(tmp_path: Path) -> None:
    _, message = _refusal(tmp_path, [HEADER, *ROWS[:2], '"2020-06-01 02:00:00+00:00","2020-05'])
    assert "line 4: 2 fields, expected 3" in message


def _no_pandas(*args: object, **kwargs: object) -> None:
    raise AssertionError("pandas.read_csv must not see a header of repeated names")


def test_a_huge_header_of_repeated_names_is_refused_before_pandas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hang: pandas renames repeated names with a list search per name (quadratic).

    A 50 MB header line of repeated names ran > 300 s at 2.1 GB; here 8 MB (about
    500,000 names) must be refused from a linear scan, without pandas reading it.
    """
    path = tmp_path / "wide.csv"
    names = ",".join([HEADER, *["Price (USD/MWh)"] * 500_000])
    path.write_text(names + "\n" + ROWS[0] + "\n", encoding="utf-8")
    assert path.stat().st_size > 8_000_000
    monkeypatch.setattr(validate.pd, "read_csv", _no_pandas)
    with pytest.raises(TraceError) as info:
        read_standardized_prices(path, now=NOW)
    assert str(info.value) == (
        f"{path}: line 1: field 'Price (USD/MWh)': column name repeated in the header "
        "(columns 3 and 4); expected unique column names")


def test_too_many_distinct_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    names = ",".join([HEADER, *(f"c{i}" for i in range(validate.MAX_COLUMNS))])
    path.write_text(names + "\n", encoding="utf-8")
    with pytest.raises(TraceError, match="line 1: more than 10000 columns in the header"):
        read_standardized_prices(path, now=NOW)


def test_an_infinite_price_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inf.csv"
    path.write_text("\n".join([HEADER, ROWS[0], ROWS[1].replace("29.0", "inf"), ROWS[2]]) + "\n",
                    encoding="utf-8")
    with pytest.raises(TraceError, match="line 3: field 'Price \\(USD/MWh\\)': expected a "
                                         "finite number, got inf"):
        read_standardized_prices(path, now=NOW)


def test_a_folder_given_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="is a directory; expected a CSV file"):
        read_standardized_prices(tmp_path, now=NOW)


@pytest.mark.parametrize("load", [datasets.nyiso_rt_lmp, datasets.caiso_rt_lmp])
def test_a_year_outside_the_data_is_a_one_line_range_error(load: Any, tmp_path: Path) -> None:
    """Was a ValueError (a traceback through the CLI)."""
    with pytest.raises(TraceRangeError) as info:
        load(tmp_path, 2029)
    assert str(info.value).startswith(f"{tmp_path}: no ") and "for 2029; the data hold" in str(
        info.value)


def test_backtest_start_outside_the_series(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["backtest", "--series", "wind_cf", "--forecaster", "persistence", "--data",
                     str(shared_data), "--out", str(tmp_path / "out"), "--start", "2029-01-01"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mpc-dc: error: --start: 2029-01-01 00:00Z leaves no issue time in "
                          "series 'wind_cf'")
    assert not (tmp_path / "out").exists()
