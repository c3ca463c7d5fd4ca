"""Readers of the LLM power benchmarks: real files and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from traces.errors import TraceError
from traces.llm_power import (
    LLM_PERF_COLUMNS,
    V2_COLUMNS,
    V3_COLUMNS,
    read_llm_perf,
    read_mlenergy_v2,
    read_mlenergy_v3,
    read_mlenergy_v3_dir,
)

V3 = Path("llm_power") / "mlenergy_leaderboard_v3"
V2 = Path("llm_power") / "mlenergy_leaderboard_v2"
PERF = Path("llm_power") / "llm-perf-leaderboard_1xA100.csv"
QWEN235 = "Qwen__Qwen3-235B-A22B-Instruct-2507__lm-arena-chat.json"
QWEN235_FP8 = "Qwen__Qwen3-235B-A22B-Instruct-2507-FP8__lm-arena-chat.json"


def _one_line(err: pytest.ExceptionInfo[TraceError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------- real files


@pytest.mark.shared_data
def test_v3_known_values_qwen235_h100x8(shared_data: Path) -> None:
    """PROVENANCE example: BF16 vs FP8, bs=256 on H100x8."""
    bf16, meta = read_mlenergy_v3(shared_data / V3 / "models" / QWEN235)
    fp8, _ = read_mlenergy_v3(shared_data / V3 / "models" / QWEN235_FP8)
    assert list(bf16.columns) == list(V3_COLUMNS)
    assert meta.rows_read == meta.rows_kept == len(bf16) == 31
    assert bf16["model_id"].iloc[0] == "Qwen/Qwen3-235B-A22B-Instruct-2507"
    assert bf16["weight_precision"].iloc[0] == "bfloat16"
    assert fp8["weight_precision"].iloc[0] == "fp8"
    assert bf16["total_params_b"].iloc[0] == 235.0
    assert bf16["activated_params_b"].iloc[0] == 22.0

    def at(frame: pd.DataFrame, batch: int) -> pd.Series:
        sel = frame[
            (frame["gpu_model"] == "H100")
            & (frame["num_gpus"] == 8)
            & (frame["max_num_seqs"] == batch)
        ]
        assert len(sel) == 1
        return sel.iloc[0]

    b = at(bf16, 256)
    assert b["avg_power_w"] == pytest.approx(4038, abs=0.5)
    assert b["energy_per_token_j"] == pytest.approx(1.093, abs=5e-4)
    assert b["output_tokens_per_s"] == pytest.approx(3696, abs=0.5)
    assert (b["tp"], b["ep"], b["dp"]) == (1, 8, 1)
    f = at(fp8, 256)
    assert f["avg_power_w"] == pytest.approx(4107, abs=0.5)
    assert f["energy_per_token_j"] == pytest.approx(0.950, abs=5e-4)
    assert f["output_tokens_per_s"] == pytest.approx(4322, abs=0.5)
    assert at(fp8, 512)["energy_per_token_j"] == pytest.approx(0.741, abs=5e-4)
    # Energy per token is power over throughput (measured independently).
    ratio = bf16["avg_power_w"] / bf16["output_tokens_per_s"] / bf16["energy_per_token_j"]
    assert ratio.between(0.95, 1.05).all()


@pytest.mark.shared_data
def test_v3_dir_reads_all_models(shared_data: Path) -> None:
    frame, meta = read_mlenergy_v3_dir(shared_data / V3)
    assert len(meta.extra["files"]) == 33
    assert meta.rows_read == meta.rows_kept == len(frame) == 565
    assert set(frame["weight_precision"]) == {"bfloat16", "fp8", "mxfp4"}
    assert set(frame["gpu_model"]) == {"H100", "B200"}
    assert frame[list(V3_COLUMNS[7:22])].ge(0).all().all()


@pytest.mark.shared_data
def test_v2_reads_all_configs(shared_data: Path) -> None:
    frame, meta = read_mlenergy_v2(shared_data / V2)
    assert list(frame.columns) == list(V2_COLUMNS)
    assert meta.rows_read == meta.rows_kept == len(frame) == 314
    assert set(frame["gpu_model"]) == {"A100", "H100"}
    assert set(frame["task"]) == {"chat", "code"}
    assert (frame["num_gpus"] == frame["tp"] * frame["pp"]).all()
    # Derived average power must be physical: positive and below 700 W per GPU.
    per_gpu = frame["avg_power_w"] / frame["num_gpus"]
    assert per_gpu.between(30, 700).all()
    name = "H100 80GB HBM3/google/codegemma-7b/bs128+tp1+pp1.json"
    row = frame[frame["source"].str.endswith(name)].iloc[0]
    assert row["avg_power_w"] == pytest.approx(
        16.6576732692658 * 1607.8592277116104 / 84.60060975609755
    )


@pytest.mark.shared_data
def test_llm_perf_rows_and_units(shared_data: Path) -> None:
    frame, meta = read_llm_perf(shared_data / PERF)
    assert list(frame.columns) == list(LLM_PERF_COLUMNS)
    assert meta.rows_read == meta.rows_kept == len(frame) == 287
    counts = frame.groupby(["precision", "quantization"]).size().to_dict()
    assert counts[("float16", "GPTQ.4bit")] == 89
    assert counts[("float16", "BnB.4bit")] == 53
    assert counts[("float16", "BnB.8bit")] == 50
    assert counts[("float16", "none")] == 39
    assert counts[("bfloat16", "none")] == 38
    assert counts[("float32", "none")] == 18
    first = frame.iloc[0]
    assert first["experiment"] == "4bit-gptq-exllama-v2-eager"
    assert first["model"] == "Qwen/Qwen1.5-110B"
    assert first["energy_per_token_j"] == pytest.approx(3.6e6 / 2661.495)
    assert first["attention"] == "Eager"
    assert first["kernel"] == "GPTQ.ExllamaV2"
    assert first["memory_mb"] == pytest.approx(65311.037)


# --------------------------------------------------------------------------- bad input

_CONFIG = {
    "avg_batch_size": 8.0,
    "avg_output_len": 800.0,
    "avg_power_watts": 500.0,
    "energy_per_request_joules": 400.0,
    "energy_per_token_joules": 0.5,
    "gpu_model": "H100",
    "max_num_seqs": 8,
    "median_itl_ms": 10.0,
    "num_gpus": 1,
    "output_throughput_tokens_per_sec": 1000.0,
    "p90_itl_ms": 11.0,
    "p95_itl_ms": 12.0,
    "p99_itl_ms": 13.0,
    "parallelization": {"data_parallel": 1, "expert_parallel": 1, "tensor_parallel": 1},
}


def _v3_doc(**config_changes: object) -> dict[str, object]:
    config = {**_CONFIG, **config_changes}
    return {
        "activated_params_billions": 8.0,
        "architecture": "Dense Transformer",
        "configurations": [_CONFIG, config],
        "model_id": "made/up-8b",
        "task": "lm-arena-chat",
        "total_params_billions": 8.0,
        "weight_precision": "bfloat16",
    }


def _write(tmp_path: Path, doc: object, name: str = "made__up__chat.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_v3_synthetic_ok(tmp_path: Path) -> None:
    frame, meta = read_mlenergy_v3(_write(tmp_path, _v3_doc()))
    assert len(frame) == 2
    assert meta.extra["duplicate_configs"] == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"avg_power_watts": "lots"}, "configurations[1].avg_power_watts': expected a number"),
        ({"energy_per_token_joules": -0.1}, "energy_per_token_joules': negative value"),
        ({"num_gpus": 1.5}, "configurations[1].num_gpus': expected a positive integer"),
        ({"p90_itl_ms": True}, "p90_itl_ms': expected a number"),
    ],
)
def test_v3_bad_values(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    with pytest.raises(TraceError) as err:
        read_mlenergy_v3(_write(tmp_path, _v3_doc(**change)))
    assert expected in _one_line(err)


def test_v3_missing_key(tmp_path: Path) -> None:
    doc = _v3_doc()
    config = dict(_CONFIG)
    del config["output_throughput_tokens_per_sec"]
    doc["configurations"] = [config]
    with pytest.raises(TraceError) as err:
        read_mlenergy_v3(_write(tmp_path, doc))
    assert "configurations[0].output_throughput_tokens_per_sec': missing key" in _one_line(err)
    del doc["model_id"]
    with pytest.raises(TraceError, match="field 'model_id': missing key"):
        read_mlenergy_v3(_write(tmp_path, doc))


def test_v3_empty_malformed_and_non_utf8(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("   \n", encoding="utf-8")
    with pytest.raises(TraceError, match="empty"):
        read_mlenergy_v3(empty)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_id": "x",\n  "task": }', encoding="utf-8")
    with pytest.raises(TraceError) as err:
        read_mlenergy_v3(broken)
    assert "line 2" in _one_line(err) and "malformed JSON" in str(err.value)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"model_id": "caf\xe9"}')
    with pytest.raises(TraceError, match="not UTF-8"):
        read_mlenergy_v3(latin)
    doc = _v3_doc()
    doc["configurations"] = []
    with pytest.raises(TraceError, match="no configurations"):
        read_mlenergy_v3(_write(tmp_path, doc))


def test_v3_dir_without_models(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no model JSON files"):
        read_mlenergy_v3_dir(tmp_path)


def _v2_tree(tmp_path: Path, **changes: object) -> Path:
    folder = tmp_path / "chat" / "H100 80GB HBM3" / "made" / "up-8b"
    folder.mkdir(parents=True)
    doc = {
        "Model": "made/up-8b",
        "GPU": "NVIDIA H100 80GB HBM3",
        "TP": 1,
        "PP": 1,
        "Energy/req (J)": 100.0,
        "Avg TPOT (s)": 0.05,
        "Token tput (tok/s)": 2000.0,
        "Avg Output Tokens": 250.0,
        "Avg BS (reqs)": 100.0,
        "Max BS (reqs)": 128,
        **changes,
    }
    _write(folder, doc, "bs128+tp1+pp1.json")
    return tmp_path


def test_v2_synthetic_power(tmp_path: Path) -> None:
    frame, _ = read_mlenergy_v2(_v2_tree(tmp_path))
    row = frame.iloc[0]
    assert row["avg_power_w"] == pytest.approx(100.0 * 2000.0 / 250.0)
    assert row["energy_per_token_j"] == pytest.approx(0.4)
    assert (row["task"], row["gpu_model"]) == ("chat", "H100")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Energy/req (J)": -1.0}, "field 'Energy/req (J)': negative value"),
        ({"Token tput (tok/s)": "fast"}, "field 'Token tput (tok/s)': expected a number"),
        ({"Avg Output Tokens": 0.0}, "field 'Avg Output Tokens': expected a positive"),
    ],
)
def test_v2_bad_values(tmp_path: Path, change: dict[str, object], expected: str) -> None:
    with pytest.raises(TraceError) as err:
        read_mlenergy_v2(_v2_tree(tmp_path, **change))
    assert expected in _one_line(err)


def test_v2_no_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"no bs<B>\+tp<T>\+pp<P>.json files"):
        read_mlenergy_v2(tmp_path)


_PERF_HEADER = (
    "Experiment 🧪,Model 🤗,Prefill (s),Per Token (s),Decode (tokens/s),Energy (tokens/kWh),"
    "Backend 🏭,Precision 📥,Quantization 🗜️,Attention 👁️,Kernel ⚛️,Architecture 🏛️,"
    "End-to-End (s),Open LLM Score (%),Params (B),Memory (MB)"
)
_PERF_ROW = (
    "float16-sdpa,made/up-7b,0.03,0.025,40.0,250000.0,pytorch,float16,Unquantized,SDPA,"
    "No Kernel,MadeUpForCausalLM,1.63,15.0,7,16000.0"
)


def _perf(tmp_path: Path, *rows: str, header: str = _PERF_HEADER) -> Path:
    path = tmp_path / "perf.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_llm_perf_synthetic(tmp_path: Path) -> None:
    frame, _ = read_llm_perf(_perf(tmp_path, _PERF_ROW))
    assert frame["quantization"].iloc[0] == "none"
    assert frame["energy_per_token_j"].iloc[0] == pytest.approx(14.4)


def test_llm_perf_bad_inputs(tmp_path: Path) -> None:
    bad_energy = _PERF_ROW.replace("250000.0", "-5")
    with pytest.raises(TraceError) as err:
        read_llm_perf(_perf(tmp_path, _PERF_ROW, bad_energy))
    assert "line 3: field 'Energy (tokens/kWh)'" in _one_line(err)
    zero = _PERF_ROW.replace("250000.0", "0")
    with pytest.raises(TraceError, match="zero tokens per kWh"):
        read_llm_perf(_perf(tmp_path, zero))
    text = _PERF_ROW.replace(",40.0,", ",fast,")
    with pytest.raises(TraceError) as err:
        read_llm_perf(_perf(tmp_path, text))
    assert "line 2: field 'Decode (tokens/s)': expected a number, got 'fast'" in _one_line(err)
    no_energy = _PERF_HEADER.replace("Energy (tokens/kWh)", "Joules")
    with pytest.raises(TraceError, match="field 'Energy \\(tokens/kWh\\)': missing column"):
        read_llm_perf(_perf(tmp_path, _PERF_ROW, header=no_energy))
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(TraceError, match="empty"):
        read_llm_perf(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(_PERF_HEADER.encode() + b"\ncaf\xe9\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        read_llm_perf(latin)
    with pytest.raises(TraceError, match="no data rows"):
        read_llm_perf(_perf(tmp_path))
