"""The quantization-to-power table: package data, validation, and re-derivation from raw data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.params.derive_quant_table import (
    FP8_PAIR_BF16,
    FP8_PAIR_FP8,
    V3_MODELS,
    derive_table,
    tokens_per_gpu_at_slo,
)
from mpc_dc.params.quant_table import COLUMNS, default_table_path, load_quant_table
from traces.errors import TraceError
from traces.llm_power import read_mlenergy_v3

# --------------------------------------------------------------------------- package data


def test_table_loads_without_shared_data() -> None:
    table = load_quant_table()
    assert default_table_path().is_file()
    assert len(table) >= 9
    assert len(table.models) >= 3
    precisions = {r.precision for r in table}
    assert {"BF16", "FP8"} <= precisions
    assert precisions & {"INT8", "INT4"}
    for model in table.models:
        assert table.precisions(model)[0] == "BF16"


def test_every_row_has_provenance_for_each_figure() -> None:
    for row in load_quant_table():
        text = row.provenance
        assert row.basis in text.split(":")[0]  # "operating point measured|derived: ..."
        for part in ("idle derived", "marginal energy/token", "prefill", "quality", "load assumed"):
            assert part in text, f"{row.model} {row.precision}: no '{part}' in provenance"
        if row.basis == "measured":
            assert ".json configurations[" in text


def test_row_figures_are_consistent() -> None:
    for row in load_quant_table():
        assert row.itl_p90_ms <= row.itl_slo_p90_ms
        assert row.power_w(row.tokens_per_s_at_slo) == pytest.approx(row.active_power_w, rel=1e-3)
        assert row.power_w(0.0) == pytest.approx(row.idle_power_w)
        assert 0 <= row.idle_power_w <= row.active_power_w
        with pytest.raises(ValueError, match="outside"):
            row.power_w(row.tokens_per_s_at_slo * 1.5)


def test_lookup() -> None:
    table = load_quant_table()
    row = table.get("qwen3-235b-a22b", "FP8")
    assert (row.gpu, row.gpus_per_instance) == ("H100", 8)
    assert table.get("qwen3-235b-a22b", "FP8", gpu="H100") == row
    assert row.quality_loss_pct_points == -row.quality_delta_pct_points
    with pytest.raises(KeyError, match="available precisions"):
        table.get("qwen3-235b-a22b", "INT3")
    with pytest.raises(KeyError, match="no model"):
        table.get("gpt-5", "BF16")
    assert list(table.to_frame().columns) == list(COLUMNS)


def test_lower_precision_is_not_a_fixed_saving() -> None:
    """What the data say: the change in J/token depends on model and precision."""
    table = load_quant_table()
    changes = []
    for model in table.models:
        base = table.get(model, "BF16").energy_per_token_j
        changes += [
            table.get(model, p).energy_per_token_j / base for p in table.precisions(model)[1:]
        ]
    assert min(changes) < 1.0 < max(changes)


# --------------------------------------------------------------------------- validation


def _mutated(tmp_path: Path, column: str, value: object, row: int = 0) -> Path:
    frame = pd.read_csv(default_table_path())
    values = frame[column].astype(object).tolist()
    values[row] = value
    frame[column] = values
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("energy_per_token_j", "lots", "line 2: field 'energy_per_token_j': expected a number"),
        ("provenance", "", "line 2: field 'provenance': empty cell"),
        ("precision", "FP4", "line 2: field 'precision': unknown precision"),
        ("idle_power_w", -1.0, "field 'idle_power_w': expected a non-negative"),
        ("active_power_w", 1000.0, "field 'active_power_w': 1000 W differs"),
        ("gpus_per_instance", 1.5, "field 'gpus_per_instance': expected a positive integer"),
        ("itl_p90_ms", 500.0, "field 'itl_p90_ms'"),
    ],
)
def test_bad_table_is_one_line(tmp_path: Path, column: str, value: object, expected: str) -> None:
    with pytest.raises(TraceError) as err:
        load_quant_table(_mutated(tmp_path, column, value))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_and_missing_column(tmp_path: Path) -> None:
    frame = pd.read_csv(default_table_path())
    path = tmp_path / "dup.csv"
    pd.concat([frame, frame.iloc[[0]]]).to_csv(path, index=False)
    with pytest.raises(TraceError, match=f"line {len(frame) + 2}: field 'precision': duplicated"):
        load_quant_table(path)
    frame.drop(columns=["load_time_s"]).to_csv(path, index=False)
    with pytest.raises(TraceError, match="field 'load_time_s': missing column"):
        load_quant_table(path)


# --------------------------------------------------------------------------- from the raw data


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("slo_ms", "bf16_x8", "fp8_x4", "fp8_x8"),
    [(50.0, 328, 316, 355), (60.0, 434, 574, 540)],
)
def test_design_figures_qwen235_h100(
    shared_data: Path, slo_ms: float, bf16_x8: int, fp8_x4: int, fp8_x8: int
) -> None:
    """DESIGN.md §3: best tokens/s per GPU with p90 ITL <= SLO, Qwen3-235B on H100."""
    bf16, _ = read_mlenergy_v3(shared_data / V3_MODELS / FP8_PAIR_BF16)
    fp8, _ = read_mlenergy_v3(shared_data / V3_MODELS / FP8_PAIR_FP8)
    assert round(tokens_per_gpu_at_slo(bf16, slo_ms, num_gpus=8)) == bf16_x8
    assert round(tokens_per_gpu_at_slo(fp8, slo_ms, num_gpus=4)) == fp8_x4
    assert round(tokens_per_gpu_at_slo(fp8, slo_ms, num_gpus=8)) == fp8_x8


@pytest.fixture(scope="module")
def derived(shared_data: Path) -> pd.DataFrame:
    table, _, _ = derive_table(shared_data)
    return table


def _pick(table: pd.DataFrame, model: str, precision: str) -> pd.Series:
    found = table[(table["model"] == model) & (table["precision"] == precision)]
    assert len(found) == 1
    return found.iloc[0]


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("model", "precision"),
    [("qwen3-235b-a22b", "BF16"), ("qwen3-235b-a22b", "FP8"), ("qwen3-8b", "INT4")],
)
def test_committed_rows_rederive(derived: pd.DataFrame, model: str, precision: str) -> None:
    committed = load_quant_table().get(model, precision)
    row = _pick(derived, model, precision)
    for name in COLUMNS:
        expected = getattr(committed, name)
        if isinstance(expected, str):
            assert row[name] == expected, name
        else:
            assert row[name] == pytest.approx(expected, rel=1e-5), name


@pytest.mark.shared_data
def test_committed_table_matches_derivation(derived: pd.DataFrame) -> None:
    committed = load_quant_table().to_frame()
    assert list(zip(derived["model"], derived["precision"], strict=True)) == list(
        zip(committed["model"], committed["precision"], strict=True)
    )


@pytest.mark.shared_data
def test_measured_rows_are_the_design_operating_points(derived: pd.DataFrame) -> None:
    bf16 = _pick(derived, "qwen3-235b-a22b", "BF16")
    fp8 = _pick(derived, "qwen3-235b-a22b", "FP8")
    assert (bf16["gpus_per_instance"], bf16["max_batch"]) == (8, 128)
    assert round(bf16["tokens_per_s_per_gpu"]) == 328
    assert (fp8["gpus_per_instance"], fp8["max_batch"]) == (8, 128)
    assert round(fp8["tokens_per_s_per_gpu"]) == 355
    assert bf16["basis"] == fp8["basis"] == "measured"
