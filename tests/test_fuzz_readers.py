"""Property tests: every CSV reader, fed mutated files through ``mpc-dc data check``.

Each reader gets a small valid file in its public layout with made-up values (never
copies of ../shared/data). Hypothesis mutates it: cuts it off mid-row, repeats or
renames header names, puts garbage, huge values, NaN and infinities in cells,
re-encodes it, swaps or duplicates timestamped rows, or flips random bytes. For
every example the command must end with exit code 0 or 2; with 2, exactly one
stderr line ``mpc-dc: error: FILE: ...`` and no traceback; nothing is written. Each
mutation class also says which outcome it must have (a cut-off row is refused
naming its line, a repeated header name naming the column, and so on).

The example counts add up to 600 per run (CI derandomizes them, see conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import Outcome, byte_edits, check_command, edited, scratch_folder

# ----------------------------------------------------------------------------- seed files


def _eia_lmp() -> str:
    lines = [
        "NYISO Hourly Real-Time Locational Based Marginal Prices ($/megawatt) for Zones",
        "Hourly real-time locational marginal prices for NYISO",
        "Source: EIA collected from NYISO",
        "UTC Timestamp (Interval Ending),Local Timestamp Eastern Time (Interval Beginning),"
        "J - New York City LMP,J - New York City (Congestion),J - New York City (Loss)",
    ]
    for h in range(10):  # March 2020, EST: local begin = UTC end - 6 h
        lines.append(f"2020-03-01 {h + 6:02d}:00:00,2020-03-01 {h:02d}:00:00,"
                     f"{20 + 1.5 * h:.2f},{-0.1 * h:.2f},{0.3 + 0.01 * h:.2f}")
    return "\n".join(lines) + "\n"


def _greendcc_prices() -> str:
    lines = ["Datetime (UTC),Datetime (Local),Price (USD/MWh)"]  # local = UTC - 4 h
    for h in range(10):
        local_day, local_h = ("2020-05-31", h + 20) if h < 4 else ("2020-06-01", h - 4)
        lines.append(f"2020-06-01 {h:02d}:00:00+00:00,{local_day} {local_h:02d}:00:00-04:00,"
                     f"{30 + h * 0.7:.2f}")
    return "\n".join(lines) + "\n"


def _carbon() -> str:
    lines = ["Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO\u2082eq/kWh (direct),"
             "Carbon Intensity gCO\u2082eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
             "Data Source,Data Estimated,Data Estimation Method"]
    for h in range(10):
        lines.append(f"2021-02-01 {h:02d}:00:00,USA,Somewhere,XX-ZZ,{200 + 3 * h:.2f},"
                     f"{260 + 3 * h:.2f},{40 + h:.2f},{30 + h / 2:.2f},example.org,false,")
    return "\n".join(lines) + "\n"


def _fuel_mix() -> str:
    lines = ["timestamp,WND,SUN,WAT,OIL,NG,COL,NUC,OTH,avg_CI"]
    for h in range(10):
        lines.append(f"2022-02-01 {h:02d}:00:00+00:00,{300 + 10 * h},0,{3900 + h},{600 + h},"
                     f"{5000 + 20 * h},0,{3300 + h},{180 + h},{240 + h * 0.5:.3f}")
    return "\n".join(lines) + "\n"


def _burstgpt_requests() -> str:
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    t = 5
    for i in range(10):
        t += 3 + i
        req, resp = 100 + 17 * i, 20 + 5 * i
        lines.append(f"{t},ChatGPT,{req},{resp},{req + resp},Conversation log")
    return "\n".join(lines) + "\n"


def _burstgpt_hourly() -> str:
    lines = ["day,hour,conversation,api,all"]
    for h in range(10):
        lines.append(f"0,{h},{30 + h},{h % 3},{30 + h + h % 3}")
    return "\n".join(lines) + "\n"


def _google_pdu() -> str:
    lines = ["index,time,pdu,measured_power_util"]
    for i in range(10):
        lines.append(f"{i},{600_000_000 + 300_000_000 * i},pdu0,{0.6 + 0.01 * i:.3f}")
    return "\n".join(lines) + "\n"


def _weather() -> str:
    lines = ["variable_name,pressure,temperature,wind_speed,roughness_length,temperature,"
             "wind_speed", "height,0,2,10,0,10,80"]
    for h in range(10):
        lines.append(f"2010-03-01 {h:02d}:00:00+01:00,{100000 + 10 * h:.1f},{270 + h / 10:.2f},"
                     f"{4 + h / 5:.3f},0.15,{269 + h / 10:.2f},{6 + h / 4:.3f}")
    return "\n".join(lines) + "\n"


def _power_curves() -> str:
    speeds = [f"{v / 2:.1f}" for v in range(0, 30)]
    lines = ["turbine_type," + ",".join(speeds)]
    for k in range(6):
        power = [0 if v < 6 else min(1000 * k + 100 * (v - 5) ** 2, 1000 * k + 2500)
                 for v in range(30)]
        lines.append(f"MADE{k}/{1000 * k + 2500}," + ",".join(str(p) for p in power))
    return "\n".join(lines) + "\n"


def _llm_perf() -> str:
    header = ("Experiment \U0001f9ea,Model \U0001f917,Prefill (s),Per Token (s),Decode (tokens/s),"
              "Energy (tokens/kWh),Backend \U0001f3ed,Precision \U0001f4e5,Quantization \U0001f5dc"
              "\ufe0f,Attention \U0001f441\ufe0f,Kernel \u269b\ufe0f,Architecture \U0001f3db\ufe0f,"
              "End-to-End (s),Open LLM Score (%),Params (B),Memory (MB)")
    lines = [header]
    for i in range(8):
        lines.append(f"exp-{i},org/model-{i},{0.1 + i / 100:.3f},{0.02 + i / 1000:.4f},"
                     f"{40 + i:.1f},{50000 + 1000 * i},pytorch,float16,Unquantized,SDPA,"
                     f"none,llama,{2.5 + i / 10:.2f},{40 + i:.1f},{1 + i},{3000 + 100 * i}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Layout:
    """A reader's seed file and which of its columns a mutation must be refused in.

    Attributes
    ----------
    text
        The valid file.
    header_lines
        Lines before the first data row (title and header lines).
    checked
        Columns (0-based) whose garbage or infinite cells the reader must refuse.
    required
        Columns (0-based) a reader cannot do without (renaming one is refused).
    timed
        Rows are timestamped and must be in time order.
    unique
        Timestamps must also be unique (requests may share an arrival second).
    """

    text: str
    header_lines: int
    checked: tuple[int, ...]
    required: tuple[int, ...]
    timed: bool
    unique: bool = True


LAYOUTS: dict[str, Layout] = {
    "eia_lmp": Layout(_eia_lmp(), 4, (0, 1, 2, 3, 4), (0,), True),
    "greendcc_prices": Layout(_greendcc_prices(), 1, (0, 1, 2), (0, 1, 2), True),
    "electricitymaps_carbon": Layout(_carbon(), 1, (0, 4, 5, 6, 7), (0, 4, 5, 6, 7, 9), True),
    "eia930_fuel_mix": Layout(_fuel_mix(), 1, tuple(range(10)), tuple(range(10)), True),
    "burstgpt_requests": Layout(_burstgpt_requests(), 1, (0, 2, 3, 4), (0, 2, 3, 4), True,
                                unique=False),
    "burstgpt_hourly": Layout(_burstgpt_hourly(), 1, (0, 1, 2, 3, 4), (0, 1, 2, 3, 4), True),
    "google_pdu": Layout(_google_pdu(), 1, (1, 3), (1, 3), True),
    "windpowerlib_weather": Layout(_weather(), 2, tuple(range(7)), (0,), True),
    "windpowerlib_power_curves": Layout(_power_curves(), 1, tuple(range(1, 31)), (0,), False),
    "llm_perf": Layout(_llm_perf(), 1, (2, 3, 4, 5, 12, 13, 14, 15), tuple(range(16)), False),
}
FORMATS = sorted(LAYOUTS)

# ----------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One scratch folder for the module."""
    yield from scratch_folder("mpc-dc-fuzz-")


def check_file(
    folder: Path, fmt: str, data: bytes, capsys: pytest.CaptureFixture[str]
) -> Outcome:
    """Write ``data``, run ``mpc-dc data check FILE --format fmt``; assert the invariants
    (tests/fuzzing.py)."""
    return check_command(folder, ".csv", data, lambda path: ["data", "check", path,
                                                             "--format", fmt], capsys)


def _rows(text: str) -> list[str]:
    return text.split("\n")[:-1]  # the seed files end with one newline


def _join(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


def _cells(row: str) -> list[str]:
    return row.split(",")


def _with_cell(fmt: str, data: st.DataObject,
               values: st.SearchStrategy[str]) -> tuple[int, str, str]:
    """A drawn value put in a drawn checked cell: (row index, value, the file's text)."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    k = data.draw(st.integers(layout.header_lines, len(rows) - 1), label="row")
    j = data.draw(st.sampled_from(layout.checked), label="column")
    value = data.draw(values, label="value")
    cells = _cells(rows[k])
    cells[j] = f'"{value}"' if "," in value else value
    rows[k] = ",".join(cells)
    return k, value, _join(rows)


FUZZ = settings(max_examples=75, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Eight properties x 75 examples = 600 per run."""

fmt_st = st.sampled_from(FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_seed_files_are_valid(fmt: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a mutation each seed file is read (so the refusals below are the mutation's)."""
    assert check_file(folder, fmt, LAYOUTS[fmt].text.encode("utf-8"), capsys).code == 0


# ----------------------------------------------------------------------------- properties


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_cut_off_mid_row_is_refused_naming_the_line(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file cut inside a data row, losing at least one separator: refused at that line."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    k = data.draw(st.integers(layout.header_lines, len(rows) - 1), label="row")
    row = rows[k]
    last_comma = row.rfind(",")
    cut = data.draw(st.integers(1, last_comma), label="cut")
    text = "\n".join(rows[:k]) + "\n" + row[:cut]
    outcome = check_file(folder, fmt, text.encode("utf-8"), capsys)
    assert outcome.code == 2
    assert f"line {k + 1}: " in outcome.message and "fields, expected" in outcome.message, outcome


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_repeated_header_name_is_refused_naming_it(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header name (for two header rows: a name/height pair) copied over another."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    first = layout.header_lines - (2 if fmt == "windpowerlib_weather" else 1)
    width = len(_cells(rows[first]))
    i, j = data.draw(st.lists(st.integers(0, width - 1), min_size=2, max_size=2,
                              unique=True), label="columns")
    header_rows = [first, first + 1] if fmt == "windpowerlib_weather" else [first]
    for r in header_rows:
        cells = _cells(rows[r])
        cells[j] = cells[i]
        rows[r] = ",".join(cells)
    outcome = check_file(folder, fmt, _join(rows).encode("utf-8"), capsys)
    assert outcome.code == 2
    assert "repeated in the header" in outcome.message, outcome
    assert f"columns {min(i, j) + 1} and {max(i, j) + 1}" in outcome.message, outcome


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_renamed_header(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header name changed: a required column renamed is refused; others may pass."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    first = layout.header_lines - (2 if fmt == "windpowerlib_weather" else 1)
    cells = _cells(rows[first])
    j = data.draw(st.integers(0, len(cells) - 1), label="column")
    suffix = data.draw(st.text(alphabet="xyzQ_", min_size=1, max_size=3), label="suffix")
    cells[j] = cells[j] + suffix
    rows[first] = ",".join(cells)
    outcome = check_file(folder, fmt, _join(rows).encode("utf-8"), capsys)
    if j in layout.required:
        assert outcome.code == 2, outcome


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_spaces_around_header_names(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spaces put around a header name: the file reads as the seed does (names are
    matched stripped; a reader once found "day " and crashed with KeyError: 'day')."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    first = layout.header_lines - (2 if fmt == "windpowerlib_weather" else 1)
    cells = _cells(rows[first])
    j = data.draw(st.integers(0, len(cells) - 1), label="column")
    before, after = data.draw(st.tuples(st.sampled_from(["", " ", "  "]),
                                        st.sampled_from([" ", "  "])), label="spaces")
    cells[j] = before + cells[j] + after
    rows[first] = ",".join(cells)
    outcome = check_file(folder, fmt, _join(rows).encode("utf-8"), capsys)
    assert outcome.code == 0, outcome


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_carriage_return_inside_the_header_is_refused(
    fmt: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare carriage return replacing the header's first character (found by the byte
    edits: csv.Error escaped as an internal error): one line naming the file's header."""
    rows = _rows(LAYOUTS[fmt].text)
    first = LAYOUTS[fmt].header_lines - (2 if fmt == "windpowerlib_weather" else 1)
    rows[first] = "\r" + rows[first][1:]
    outcome = check_file(folder, fmt, _join(rows).encode("utf-8"), capsys)
    assert outcome.code == 2, outcome


GARBAGE = st.one_of(
    st.sampled_from(["abc", "12,5", "1.2.3", "--", "0x1F", "\u00e9t\u00e9", "TRUE", "1e", "#"]),
    st.text(alphabet=st.characters(categories=["L"], max_codepoint=0x2FF),
            min_size=1, max_size=6),
)


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_garbage_cell_is_refused_naming_line_and_column(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A letters-only or malformed cell in a checked column: refused at its line."""
    k, value, text = _with_cell(fmt, data, GARBAGE)
    outcome = check_file(folder, fmt, text.encode("utf-8"), capsys)
    if value.strip().lower() in ("nan", "na", "n/a", "null", "none", "true", "false"):
        return  # read as missing or as a flag: not garbage to pandas
    assert outcome.code == 2, (value, outcome)
    assert f"line {k + 1}" in outcome.message, (value, outcome)


SPECIAL = st.sampled_from(["inf", "-inf", "Infinity", "1e400", "-1e400", "1e308", "-1e308",
                           "9" * 40, "nan", "NaN", "", "1e-320", "0", "-0", "1e18",
                           "123456789012345678901234567890"])


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_huge_values_nan_and_infinities(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Huge, NaN, empty and infinite cells: never a crash; an infinity is never accepted."""
    k, value, text = _with_cell(fmt, data, SPECIAL)
    outcome = check_file(folder, fmt, text.encode("utf-8"), capsys)
    if value.lower().lstrip("-") in ("inf", "infinity", "1e400"):
        assert outcome.code == 2, (value, outcome)
        assert f"line {k + 1}" in outcome.message, (value, outcome)


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_other_encodings(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """UTF-16/32 and Latin-1 with a non-ASCII character are refused; a UTF-8 BOM is fine."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    encoding = data.draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252",
                                          "utf-8-sig"]), label="encoding")
    k = data.draw(st.integers(layout.header_lines, len(rows) - 1), label="row")
    accent = data.draw(st.sampled_from("\u00e9\u00fc\u00e0\u00f1\u00df"), label="char")
    if encoding in ("latin-1", "cp1252"):
        # A text column (or a title line) takes the accented character.
        rows[k] = rows[k] + accent if fmt != "eia_lmp" else rows[k]
        rows[0] = rows[0] + accent if fmt == "eia_lmp" else rows[0]
    text = _join(rows)
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:  # emoji or subscripts in a header: saved as "?"
        raw = text.encode(encoding, errors="replace")
    outcome = check_file(folder, fmt, raw, capsys)
    if encoding == "utf-8-sig":
        return
    assert outcome.code == 2, (encoding, outcome)


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_reordered_or_repeated_rows(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two data rows swapped or one repeated: a timestamped file is refused at that line."""
    layout = LAYOUTS[fmt]
    rows = _rows(layout.text)
    k = data.draw(st.integers(layout.header_lines, len(rows) - 2), label="row")
    repeat = data.draw(st.booleans(), label="repeat")
    if repeat:
        rows.insert(k + 1, rows[k])
    else:
        rows[k], rows[k + 1] = rows[k + 1], rows[k]
    outcome = check_file(folder, fmt, _join(rows).encode("utf-8"), capsys)
    if layout.timed and (layout.unique or not repeat):
        assert outcome.code == 2, outcome
        assert f"line {k + 2}" in outcome.message, outcome


@FUZZ
@given(fmt=fmt_st, data=st.data())
def test_random_byte_edits(
    fmt: str, data: st.DataObject, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes deleted, inserted or overwritten anywhere: exit 0 or one line, never a crash."""
    raw = LAYOUTS[fmt].text.encode("utf-8")
    edits = data.draw(byte_edits(len(raw)), label="edits")
    check_file(folder, fmt, edited(raw, edits), capsys)



@pytest.mark.parametrize("height", ["", "ten", "1e999x"])
def test_weather_height_that_is_not_a_number_is_one_line(
    height: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A height cell that is empty or not a number is refused naming the variable (found by
    ``test_random_byte_edits``: a deleted byte left pandas' ``Unnamed: 1_level_1`` there,
    and ``float`` raised out of the reader)."""
    rows = _rows(LAYOUTS["windpowerlib_weather"].text)
    cells = _cells(rows[1])
    cells[1] = height
    rows[1] = ",".join(cells)
    outcome = check_file(folder, "windpowerlib_weather", _join(rows).encode(), capsys)
    assert outcome.code == 2
    assert "pressure" in outcome.message and "height" in outcome.message, outcome
