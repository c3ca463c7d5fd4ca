"""Readers of public LLM inference power/throughput benchmarks.

Three formats, none with a time index (each row is one measured serving
configuration), so the returned :class:`~traces.grid.TraceMetadata` carries
row counts, units and source files but no gaps or resolution:

* ML.ENERGY Leaderboard v3 model JSONs (vLLM on H100/B200, BF16/FP8/MXFP4,
  sweeps of ``max_num_seqs`` and GPU count): :func:`read_mlenergy_v3`,
  :func:`read_mlenergy_v3_dir`.
* ML.ENERGY Leaderboard v2 per-configuration JSONs (vLLM on A100-40GB/H100,
  BF16): :func:`read_mlenergy_v2`.
* Hugging Face LLM-Perf leaderboard, 1xA100 CSV (transformers, batch size 1,
  FP32/FP16/BF16 and BnB/GPTQ 8- and 4-bit): :func:`read_llm_perf`.

Every problem is a one-line :class:`~traces.errors.TraceError` naming the file,
the key (JSON) or line and column (CSV), and what was expected.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata
from traces.validate import check_numeric, check_range, read_csv_checked, read_text

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- ML.ENERGY v3

#: Canonical columns of :func:`read_mlenergy_v3`, in order.
V3_COLUMNS: tuple[str, ...] = (
    "model_id",
    "task",
    "weight_precision",
    "architecture",
    "total_params_b",
    "activated_params_b",
    "gpu_model",
    "num_gpus",
    "max_num_seqs",
    "avg_batch_size",
    "avg_power_w",
    "energy_per_token_j",
    "energy_per_request_j",
    "output_tokens_per_s",
    "itl_median_ms",
    "itl_p90_ms",
    "itl_p95_ms",
    "itl_p99_ms",
    "avg_output_len",
    "tp",
    "ep",
    "dp",
    "source",
    "config_index",
)

# JSON key in each configuration -> canonical column.
_V3_CONFIG_NUMBERS: dict[str, str] = {
    "num_gpus": "num_gpus",
    "max_num_seqs": "max_num_seqs",
    "avg_batch_size": "avg_batch_size",
    "avg_power_watts": "avg_power_w",
    "energy_per_token_joules": "energy_per_token_j",
    "energy_per_request_joules": "energy_per_request_j",
    "output_throughput_tokens_per_sec": "output_tokens_per_s",
    "median_itl_ms": "itl_median_ms",
    "p90_itl_ms": "itl_p90_ms",
    "p95_itl_ms": "itl_p95_ms",
    "p99_itl_ms": "itl_p99_ms",
    "avg_output_len": "avg_output_len",
}
_V3_PARALLEL: dict[str, str] = {
    "tensor_parallel": "tp",
    "expert_parallel": "ep",
    "data_parallel": "dp",
}
_V3_INTEGER_COLUMNS = ("num_gpus", "max_num_seqs", "tp", "ep", "dp")

V3_UNITS: Mapping[str, str] = {
    "total_params_b": "1e9 parameters",
    "activated_params_b": "1e9 parameters",
    "num_gpus": "count (all GPUs of the configuration)",
    "max_num_seqs": "requests (vLLM max batch size)",
    "avg_batch_size": "requests",
    "avg_power_w": "W (all GPUs of the configuration)",
    "energy_per_token_j": "J per output token",
    "energy_per_request_j": "J per request",
    "output_tokens_per_s": "output tokens/s (whole configuration)",
    "itl_median_ms": "ms (inter-token latency)",
    "itl_p90_ms": "ms",
    "itl_p95_ms": "ms",
    "itl_p99_ms": "ms",
    "avg_output_len": "tokens per request",
}


def _load_json(path: Path) -> Any:
    """Parse a JSON file read with :func:`read_text` (missing, empty, non-UTF-8 handled)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TraceError(path, f"malformed JSON ({err.msg})", line=err.lineno) from None


def _number(
    path: Path, mapping: Mapping[str, Any], key: str, where: str, *, non_negative: bool = True
) -> float:
    """Return ``mapping[key]`` as a finite float (JSON numbers only; booleans rejected)."""
    field = f"{where}.{key}" if where else key
    if key not in mapping:
        raise TraceError(path, "missing key; expected a number", field=field)
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(path, f"expected a number, got {value!r}", field=field)
    number = float(value)
    if not math.isfinite(number):
        raise TraceError(path, f"expected a finite number, got {value!r}", field=field)
    if non_negative and number < 0:
        raise TraceError(path, f"negative value {number:g}; expected >= 0", field=field)
    return number


def _string(path: Path, mapping: Mapping[str, Any], key: str, where: str = "") -> str:
    field = f"{where}.{key}" if where else key
    if key not in mapping:
        raise TraceError(path, "missing key; expected a string", field=field)
    value = mapping[key]
    if not isinstance(value, str) or not value.strip():
        raise TraceError(path, f"expected a non-empty string, got {value!r}", field=field)
    return value.strip()


def read_mlenergy_v3(path: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read one ML.ENERGY Leaderboard v3 model JSON (``<org>__<model>__<task>.json``).

    Parameters
    ----------
    path
        Model file, e.g. ``models/Qwen__Qwen3-8B__lm-arena-chat.json``.

    Returns
    -------
    frame : DataFrame
        One row per measured configuration, columns :data:`V3_COLUMNS`:
        model-level ``model_id``, ``task``, ``weight_precision`` (``bfloat16``,
        ``fp8``, ``mxfp4``), ``architecture``, ``total_params_b`` /
        ``activated_params_b`` [1e9 params]; per configuration ``gpu_model``,
        ``num_gpus``, ``max_num_seqs`` [requests], ``avg_batch_size``,
        ``avg_power_w`` [W, all GPUs], ``energy_per_token_j`` [J/token],
        ``energy_per_request_j`` [J], ``output_tokens_per_s`` [tokens/s],
        ``itl_median_ms``/``itl_p90_ms``/``itl_p95_ms``/``itl_p99_ms`` [ms],
        ``avg_output_len`` [tokens], ``tp``/``ep``/``dp`` (parallel degrees),
        ``source`` (file name) and ``config_index`` (position in
        ``configurations[]``, for provenance).
    metadata : TraceMetadata
        ``rows_read == rows_kept`` (every configuration is kept); ``extra``
        holds ``model_id``, ``task`` and ``duplicate_configs`` (configurations
        measured twice with the same GPU, GPU count, batch and parallelism;
        both are kept, they are separate measurements).

    Raises
    ------
    TraceError
        Missing key, non-numeric or negative value, empty or non-UTF-8 file,
        malformed JSON, no configurations.
    """
    file_path = Path(path)
    doc = _load_json(file_path)
    if not isinstance(doc, dict):
        raise TraceError(file_path, f"expected a JSON object, got {type(doc).__name__}")
    model_id = _string(file_path, doc, "model_id")
    task = _string(file_path, doc, "task")
    precision = _string(file_path, doc, "weight_precision")
    architecture = _string(file_path, doc, "architecture")
    total = _number(file_path, doc, "total_params_billions", "")
    active = _number(file_path, doc, "activated_params_billions", "")
    configs = doc.get("configurations")
    if not isinstance(configs, list):
        raise TraceError(
            file_path, "missing or not a list; expected a list", field="configurations"
        )
    if not configs:
        raise TraceError(
            file_path, "no configurations; expected at least one", field="configurations"
        )
    records: list[dict[str, Any]] = []
    for index, config in enumerate(configs):
        where = f"configurations[{index}]"
        if not isinstance(config, dict):
            raise TraceError(file_path, "expected a JSON object", field=where)
        record: dict[str, Any] = {
            "model_id": model_id,
            "task": task,
            "weight_precision": precision,
            "architecture": architecture,
            "total_params_b": total,
            "activated_params_b": active,
            "gpu_model": _string(file_path, config, "gpu_model", where),
        }
        for key, column in _V3_CONFIG_NUMBERS.items():
            record[column] = _number(file_path, config, key, where)
        parallel = config.get("parallelization")
        if not isinstance(parallel, dict):
            raise TraceError(
                file_path,
                "missing or not an object; expected TP/EP/DP degrees",
                field=f"{where}.parallelization",
            )
        for key, column in _V3_PARALLEL.items():
            record[column] = _number(file_path, parallel, key, f"{where}.parallelization")
        for column in _V3_INTEGER_COLUMNS:
            if record[column] != int(record[column]) or record[column] < 1:
                raise TraceError(
                    file_path,
                    f"expected a positive integer, got {record[column]:g}",
                    field=f"{where}.{column}",
                )
            record[column] = int(record[column])
        record["source"] = file_path.name
        record["config_index"] = index
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(V3_COLUMNS))
    key_columns = ["gpu_model", "num_gpus", "max_num_seqs", "tp", "ep", "dp"]
    duplicates = int(frame.duplicated(subset=key_columns).sum())
    metadata = TraceMetadata(
        source=file_path,
        format="mlenergy_v3",
        rows_read=len(configs),
        rows_kept=len(frame),
        units=dict(V3_UNITS),
        time_convention="none (one row per measured configuration)",
        extra={"model_id": model_id, "task": task, "duplicate_configs": duplicates},
    )
    return frame, metadata


def _v3_model_files(directory: Path) -> list[Path]:
    models = directory / "models" if (directory / "models").is_dir() else directory
    return sorted(p for p in models.glob("*.json") if p.name != "index.json")


def read_mlenergy_v3_dir(directory: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read every model JSON of an ML.ENERGY v3 data folder.

    Parameters
    ----------
    directory
        The v3 folder (holding ``models/``) or the ``models/`` folder itself;
        ``index.json`` is skipped.

    Returns
    -------
    frame : DataFrame
        All configurations of all models, columns :data:`V3_COLUMNS`.
    metadata : TraceMetadata
        Rows summed over files; ``extra["files"]`` lists the files read.

    Raises
    ------
    TraceError
        If the folder holds no model JSON, or any file is bad (see
        :func:`read_mlenergy_v3`).
    """
    root = Path(directory)
    if not root.is_dir():
        raise TraceError(root, "folder not found; expected the ML.ENERGY v3 data folder")
    files = _v3_model_files(root)
    if not files:
        raise TraceError(root, "no model JSON files found; expected models/*.json")
    frames: list[pd.DataFrame] = []
    rows_read = 0
    for file in files:
        frame, meta = read_mlenergy_v3(file)
        frames.append(frame)
        rows_read += meta.rows_read
    out = pd.concat(frames, ignore_index=True)
    metadata = TraceMetadata(
        source=root,
        format="mlenergy_v3",
        rows_read=rows_read,
        rows_kept=len(out),
        units=dict(V3_UNITS),
        time_convention="none (one row per measured configuration)",
        extra={"files": [f.name for f in files]},
    )
    return out, metadata


# --------------------------------------------------------------------------- ML.ENERGY v2

#: Canonical columns of :func:`read_mlenergy_v2`, in order.
V2_COLUMNS: tuple[str, ...] = (
    "model_id",
    "task",
    "weight_precision",
    "gpu",
    "gpu_model",
    "tp",
    "pp",
    "num_gpus",
    "max_num_seqs",
    "avg_batch_size",
    "energy_per_request_j",
    "avg_tpot_s",
    "output_tokens_per_s",
    "avg_output_len",
    "avg_power_w",
    "energy_per_token_j",
    "source",
)

_V2_NUMBERS: dict[str, str] = {
    "TP": "tp",
    "PP": "pp",
    "Energy/req (J)": "energy_per_request_j",
    "Avg TPOT (s)": "avg_tpot_s",
    "Token tput (tok/s)": "output_tokens_per_s",
    "Avg Output Tokens": "avg_output_len",
    "Avg BS (reqs)": "avg_batch_size",
    "Max BS (reqs)": "max_num_seqs",
}
_V2_FILE = re.compile(r"^bs\d+\+tp\d+\+pp\d+\.json$")
_GPU_SHORT = re.compile(r"(A100|H100|H200|B200|L40S|A10G)", re.IGNORECASE)


def _short_gpu(name: str) -> str:
    match = _GPU_SHORT.search(name)
    return match.group(1).upper() if match else name


def read_mlenergy_v2(directory: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read the ML.ENERGY Leaderboard v2 per-configuration JSONs under a folder.

    Files are ``<task>/<GPU>/<org>/<model>/bs<B>+tp<T>+pp<P>.json`` (searched
    recursively; ``models.json`` and ``schema.yaml`` are ignored). The v2 runs
    are all BF16 (leaderboard documentation; the files carry no precision key),
    so ``weight_precision`` is ``"bfloat16"``.

    Parameters
    ----------
    directory
        The v2 folder (or any folder above the configuration files).

    Returns
    -------
    frame : DataFrame
        Columns :data:`V2_COLUMNS`: ``model_id``, ``task`` (folder four levels
        up, ``chat``/``code``), ``gpu`` (as in the file) and ``gpu_model``
        (``A100``/``H100``), ``tp``, ``pp``, ``num_gpus`` = TP·PP,
        ``max_num_seqs``, ``avg_batch_size`` [requests],
        ``energy_per_request_j`` [J], ``avg_tpot_s`` [s/token],
        ``output_tokens_per_s`` [tokens/s], ``avg_output_len`` [tokens],
        derived ``avg_power_w`` = energy/request × token throughput / average
        output tokens [W, all GPUs] and ``energy_per_token_j`` = energy/request
        / average output tokens [J/token], and ``source`` (path relative to
        ``directory``).
    metadata : TraceMetadata

    Raises
    ------
    TraceError
        No configuration file found, missing key, non-numeric, negative or
        zero-length values, empty or non-UTF-8 file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TraceError(root, "folder not found; expected the ML.ENERGY v2 data folder")
    files = sorted(p for p in root.rglob("*.json") if _V2_FILE.match(p.name))
    if not files:
        raise TraceError(root, "no bs<B>+tp<T>+pp<P>.json files found below this folder")
    records: list[dict[str, Any]] = []
    for file in files:
        doc = _load_json(file)
        if not isinstance(doc, dict):
            raise TraceError(file, f"expected a JSON object, got {type(doc).__name__}")
        gpu = _string(file, doc, "GPU")
        record: dict[str, Any] = {
            "model_id": _string(file, doc, "Model"),
            "task": file.parents[3].name if len(file.parents) > 3 else "",
            "weight_precision": "bfloat16",
            "gpu": gpu,
            "gpu_model": _short_gpu(gpu),
        }
        for key, column in _V2_NUMBERS.items():
            record[column] = _number(file, doc, key, "")
        if record["avg_output_len"] <= 0:
            raise TraceError(
                file, "expected a positive number of output tokens", field="Avg Output Tokens"
            )
        for column in ("tp", "pp", "max_num_seqs"):
            record[column] = int(record[column])
        record["num_gpus"] = record["tp"] * record["pp"]
        per_token = record["energy_per_request_j"] / record["avg_output_len"]
        record["energy_per_token_j"] = per_token
        record["avg_power_w"] = per_token * record["output_tokens_per_s"]
        record["source"] = file.relative_to(root).as_posix()
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=list(V2_COLUMNS))
    units = {
        "energy_per_request_j": "J per request",
        "avg_tpot_s": "s per output token",
        "output_tokens_per_s": "output tokens/s",
        "avg_output_len": "tokens per request",
        "avg_power_w": "W (derived: energy/req x tok/s / output tokens)",
        "energy_per_token_j": "J per output token (derived)",
    }
    metadata = TraceMetadata(
        source=root,
        format="mlenergy_v2",
        rows_read=len(files),
        rows_kept=len(frame),
        units=units,
        time_convention="none (one row per measured configuration)",
    )
    return frame, metadata


# --------------------------------------------------------------------------- LLM-Perf

# Header (emoji stripped, spaces collapsed) -> canonical column.
_LLM_PERF_COLUMNS: dict[str, str] = {
    "Experiment": "experiment",
    "Model": "model",
    "Prefill (s)": "prefill_s",
    "Per Token (s)": "per_token_s",
    "Decode (tokens/s)": "decode_tokens_per_s",
    "Energy (tokens/kWh)": "energy_tokens_per_kwh",
    "Backend": "backend",
    "Precision": "precision",
    "Quantization": "quantization",
    "Attention": "attention",
    "Kernel": "kernel",
    "Architecture": "architecture",
    "End-to-End (s)": "e2e_s",
    "Open LLM Score (%)": "open_llm_score_pct",
    "Params (B)": "params_b",
    "Memory (MB)": "memory_mb",
}
_LLM_PERF_NUMERIC = (
    "Prefill (s)",
    "Per Token (s)",
    "Decode (tokens/s)",
    "Energy (tokens/kWh)",
    "End-to-End (s)",
    "Open LLM Score (%)",
    "Params (B)",
    "Memory (MB)",
)
_LLM_PERF_TEXT = (
    "Experiment",
    "Model",
    "Backend",
    "Precision",
    "Quantization",
    "Attention",
    "Kernel",
    "Architecture",
)

#: Canonical columns of :func:`read_llm_perf`, in order.
LLM_PERF_COLUMNS: tuple[str, ...] = (
    "experiment",
    "model",
    "prefill_s",
    "per_token_s",
    "decode_tokens_per_s",
    "energy_tokens_per_kwh",
    "energy_per_token_j",
    "backend",
    "precision",
    "quantization",
    "attention",
    "kernel",
    "architecture",
    "e2e_s",
    "open_llm_score_pct",
    "params_b",
    "memory_mb",
)

#: Joules in one kWh: J/token = ``J_PER_KWH`` / (tokens/kWh).
J_PER_KWH = 3.6e6


def _ascii_header(name: object) -> str:
    """``'Quantization 🗜️'`` -> ``'Quantization'`` (emoji and variation selectors dropped)."""
    kept = "".join(ch for ch in str(name) if ord(ch) < 128)
    return " ".join(kept.split())


def read_llm_perf(path: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read the Hugging Face LLM-Perf leaderboard 1xA100 CSV (emoji column headers).

    Scenario of that table: PyTorch/transformers, batch size 1, 256 prompt
    tokens, 64 new tokens, one A100 (80 GB: rows use up to 69 GB); energy from codecarbon/NVML.

    Parameters
    ----------
    path
        ``llm-perf-leaderboard_1xA100.csv``.

    Returns
    -------
    frame : DataFrame
        Columns :data:`LLM_PERF_COLUMNS`: ``experiment``, ``model``,
        ``prefill_s`` [s for 256 prompt tokens], ``per_token_s`` [s/token],
        ``decode_tokens_per_s`` [tokens/s], ``energy_tokens_per_kwh``
        [tokens/kWh], ``energy_per_token_j`` = 3.6e6 / tokens_per_kwh
        [J/token], ``backend``, ``precision`` (compute dtype: float32,
        float16, bfloat16), ``quantization`` (``none``, ``BnB.4bit``,
        ``BnB.8bit``, ``GPTQ.4bit``), ``attention`` (Eager/SDPA/FAv2),
        ``kernel``, ``architecture``, ``e2e_s`` [s], ``open_llm_score_pct``
        [%], ``params_b`` [1e9 params], ``memory_mb`` [MB]. Rows are kept as
        in the file (``openai-community/gpt2`` appears twice there).
    metadata : TraceMetadata

    Raises
    ------
    TraceError
        Missing column, non-numeric cell, negative or zero energy, empty
        text cell, empty or non-UTF-8 file.
    """
    file_path = Path(path)
    raw = read_csv_checked(file_path)
    raw.columns = pd.Index([_ascii_header(c) for c in raw.columns])
    missing = [name for name in _LLM_PERF_COLUMNS if name not in raw.columns]
    if missing:
        raise TraceError(
            file_path,
            f"missing column; header has {list(raw.columns)[:6]}...",
            line=1,
            field=missing[0],
        )
    first_line = 2
    out = pd.DataFrame(index=raw.index)
    for name in _LLM_PERF_TEXT:
        values = raw[name]
        blank = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if blank.any():
            pos = int(np.flatnonzero(blank)[0])
            raise TraceError(
                file_path, "empty cell; expected text", line=first_line + pos, field=name
            )
        out[_LLM_PERF_COLUMNS[name]] = values.astype(str).str.strip()
    for name in _LLM_PERF_NUMERIC:
        numbers = check_numeric(raw, name, file_path, first_line=first_line)
        missing_cells = numbers.isna().to_numpy()
        if missing_cells.any():
            pos = int(np.flatnonzero(missing_cells)[0])
            raise TraceError(
                file_path, "empty cell; expected a number", line=first_line + pos, field=name
            )
        check_range(
            numbers,
            file_path,
            name,
            first_line=first_line,
            low=0.0,
            what="a non-negative value (negative energy, time or size)",
        )
        out[_LLM_PERF_COLUMNS[name]] = numbers
    zero = (out["energy_tokens_per_kwh"] == 0).to_numpy()
    if zero.any():
        pos = int(np.flatnonzero(zero)[0])
        raise TraceError(
            file_path,
            "zero tokens per kWh; expected a positive energy efficiency",
            line=first_line + pos,
            field="Energy (tokens/kWh)",
        )
    out["energy_per_token_j"] = J_PER_KWH / out["energy_tokens_per_kwh"]
    out["quantization"] = out["quantization"].replace({"Unquantized": "none"})
    out = out[list(LLM_PERF_COLUMNS)].reset_index(drop=True)
    metadata = TraceMetadata(
        source=file_path,
        format="llm_perf_1xA100",
        rows_read=len(raw),
        rows_kept=len(out),
        units={
            "prefill_s": "s (256 prompt tokens, batch 1)",
            "per_token_s": "s per output token",
            "decode_tokens_per_s": "tokens/s",
            "energy_tokens_per_kwh": "tokens per kWh",
            "energy_per_token_j": "J per token (3.6e6 / tokens_per_kwh)",
            "e2e_s": "s (256 prompt + 64 new tokens)",
            "open_llm_score_pct": "%",
            "params_b": "1e9 parameters",
            "memory_mb": "MB",
        },
        time_convention="none (one row per benchmark configuration)",
        extra={"gpu": "A100 x1", "batch_size": 1, "prompt_tokens": 256, "new_tokens": 64},
    )
    return out, metadata
