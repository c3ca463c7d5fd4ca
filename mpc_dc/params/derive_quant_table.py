"""Derive the quantization-to-power table from the public LLM power data.

Run from the repository root::

    python -m mpc_dc.params.derive_quant_table --data ../shared/data \\
        --out mpc_dc/params/quant_power_table.csv \\
        --curves-out mpc_dc/params/serving_curves.csv

One row per (model family, precision, GPU). How each column is obtained is
written in ``docs/quant_power_table.md`` and, per row, in the ``provenance``
column. In short:

* **Operating point at the latency SLO.** Among the measured ML.ENERGY v3
  configurations of a model on the GPU, keep those whose p90 inter-token
  latency is at most the SLO (default 50 ms) and take the one with the most
  output tokens/s per GPU. Its GPU count is ``gpus_per_instance``, its
  ``max_num_seqs`` is ``max_batch``; throughput, power, energy per token and
  p90 ITL are the measured values of that configuration.
* **FP8 without an FP8 measurement of that model on the GPU** (the 8B and 32B
  Qwen3 models): the BF16 sweep of the model with every point scaled by the
  FP8/BF16 ratios measured on Qwen3-235B-A22B-Instruct-2507, H100x8 (median
  over batch sizes measured at both precisions), then the same SLO selection.
* **INT8 / INT4** (no vLLM measurement exists in the shared data): the BF16
  sweep scaled by the quantized/16-bit ratios of decode throughput and energy
  per token from HF LLM-Perf (A100, batch 1) for a size-matched proxy model,
  then the same SLO selection; if no scaled point meets the SLO the row is
  left out and the reason reported.
* **Idle power and prefill rate** come from the instance curve of the row
  (:mod:`mpc_dc.params.serving_fit`: the batch-occupancy power curve at zero
  occupancy, the prefill rate fitted on the throughput sweep), so the optimizer's
  figures and the simulator's physics agree; the curves are written beside the
  table (``serving_curves.csv``). Derived precisions scale the BF16 curve by the
  same ratios as their operating point.
* Quality delta and load time are assumptions, stated per row.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mpc_dc.params.serving_fit import (
    ARCHITECTURES,
    CURVE_COLUMNS,
    CurveFit,
    curve_row,
    fit_measured,
    kv_capacity_tokens,
)
from mpc_dc.sim.serving import BatchCurve
from traces.errors import TraceError
from traces.llm_power import read_llm_perf, read_mlenergy_v3

logger = logging.getLogger(__name__)

#: Default latency SLO on the p90 inter-token latency [ms].
DEFAULT_ITL_SLO_MS = 50.0

#: Assumed FP8/BF16 prefill speed-up [-]: FP8 GEMMs run at twice the BF16
#: peak, attention and non-GEMM work do not, so less than 2.
FP8_PREFILL_SPEEDUP = 1.5
#: Assumed per-instance weight read bandwidth from local NVMe [GB/s].
LOAD_BANDWIDTH_GB_PER_S = 2.0
#: Assumed fixed engine start time (process start, CUDA graphs, warm-up) [s].
ENGINE_START_S = 30.0
#: Bytes per weight by precision [B/parameter] (scales and zero points ignored).
BYTES_PER_PARAM: dict[str, float] = {"BF16": 2.0, "FP8": 1.0, "INT8": 1.0, "INT4": 0.5}
#: Assumed quality change vs BF16 [Open LLM score points]: the shared data hold
#: no per-precision quality measurement (see :func:`llm_perf_quality_is_per_model`).
ASSUMED_QUALITY_DELTA_PCT_POINTS: dict[str, float] = {
    "BF16": 0.0,
    "FP8": -0.3,
    "INT8": -0.5,
    "INT4": -1.5,
}
#: LLM-Perf quantization methods standing for each weight-only precision.
LLM_PERF_METHODS: dict[str, tuple[str, ...]] = {
    "INT8": ("BnB.8bit",),
    "INT4": ("BnB.4bit", "GPTQ.4bit"),
}
PRECISIONS: tuple[str, ...] = ("BF16", "FP8", "INT8", "INT4")

#: Columns of the table, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "model",
    "hf_model_id",
    "precision",
    "gpu",
    "gpus_per_instance",
    "max_batch",
    "itl_slo_p90_ms",
    "tokens_per_s_at_slo",
    "tokens_per_s_per_gpu",
    "active_power_w",
    "idle_power_w",
    "energy_per_token_j",
    "marginal_energy_per_token_j",
    "itl_p90_ms",
    "quality_delta_pct_points",
    "load_time_s",
    "prefill_tokens_per_s",
    "weight_gb",
    "basis",
    "provenance",
)

V3_MODELS = Path("llm_power") / "mlenergy_leaderboard_v3" / "models"
LLM_PERF_CSV = Path("llm_power") / "llm-perf-leaderboard_1xA100.csv"

# The FP8/BF16 pair all derived FP8 rows are scaled by.
FP8_PAIR_BF16 = "Qwen__Qwen3-235B-A22B-Instruct-2507__lm-arena-chat.json"
FP8_PAIR_FP8 = "Qwen__Qwen3-235B-A22B-Instruct-2507-FP8__lm-arena-chat.json"
FP8_PAIR_GPUS = 8


@dataclass(frozen=True)
class FamilySpec:
    """One model family of the table.

    Parameters
    ----------
    model
        Short name used in the table, e.g. ``"qwen3-8b"``.
    bf16_file
        ML.ENERGY v3 model file of the BF16 weights.
    fp8_file
        ML.ENERGY v3 file of the FP8 weights, or ``None`` (FP8 then derived).
    llm_perf_proxy
        LLM-Perf model whose quantized/16-bit ratios stand in for INT8/INT4.
    proxy_reason
        Why that proxy (for the provenance column).
    """

    model: str
    bf16_file: str
    fp8_file: str | None
    llm_perf_proxy: str
    proxy_reason: str


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        model="qwen3-8b",
        bf16_file="Qwen__Qwen3-8B__lm-arena-chat.json",
        fp8_file=None,
        llm_perf_proxy="Qwen/Qwen1.5-7B",
        proxy_reason="closest-size dense Qwen model with 16-bit and quantized rows",
    ),
    FamilySpec(
        model="qwen3-32b",
        bf16_file="Qwen__Qwen3-32B__lm-arena-chat.json",
        fp8_file=None,
        llm_perf_proxy="Qwen/Qwen1.5-32B",
        proxy_reason="same-size dense Qwen model with 16-bit and quantized rows",
    ),
    FamilySpec(
        model="qwen3-235b-a22b",
        bf16_file="Qwen__Qwen3-235B-A22B-Instruct-2507__lm-arena-chat.json",
        fp8_file="Qwen__Qwen3-235B-A22B-Instruct-2507-FP8__lm-arena-chat.json",
        llm_perf_proxy="Qwen/Qwen1.5-32B",
        proxy_reason=(
            "largest Qwen model with a 16-bit baseline row (Qwen1.5-110B has only 4-bit "
            "rows); MoE with 22B active parameters"
        ),
    ),
)

GPU = "H100"


@dataclass(frozen=True)
class Ratio:
    """Multiplicative change of a lower precision relative to 16-bit weights.

    Parameters
    ----------
    throughput
        Decode tokens/s ratio [-]; inter-token latency scales by its inverse.
    energy
        Energy per token ratio [-].
    prefill
        Prefill tokens/s ratio [-] (NaN when not measured).
    n_pairs
        Number of matched measurement pairs the medians were taken over.
    source
        How the ratio was measured (for the provenance column).
    """

    throughput: float
    energy: float
    prefill: float
    n_pairs: int
    source: str


# --------------------------------------------------------------------------- operating points


def best_at_slo(
    configs: pd.DataFrame,
    itl_slo_ms: float,
    *,
    gpu: str = GPU,
    num_gpus: int | None = None,
) -> pd.Series | None:
    """The configuration with the most output tokens/s per GPU at p90 ITL <= SLO.

    Parameters
    ----------
    configs : DataFrame
        Rows of :func:`traces.llm_power.read_mlenergy_v3` (or a scaled sweep).
    itl_slo_ms : float [ms]
        Latency SLO on the p90 inter-token latency (inclusive).
    gpu
        GPU model to consider.
    num_gpus
        Restrict to this GPU count; all counts when ``None``.

    Returns
    -------
    Series or None
        The chosen row (ties broken by lower energy per token), ``None`` when
        no configuration meets the SLO.
    """
    mask = (configs["gpu_model"] == gpu) & (configs["itl_p90_ms"] <= itl_slo_ms)
    if num_gpus is not None:
        mask &= configs["num_gpus"] == num_gpus
    feasible = configs[mask]
    if feasible.empty:
        return None
    per_gpu = feasible["output_tokens_per_s"] / feasible["num_gpus"]
    order = pd.DataFrame(
        {"per_gpu": -per_gpu, "energy": feasible["energy_per_token_j"]}, index=feasible.index
    ).sort_values(["per_gpu", "energy"], kind="stable")
    return feasible.loc[order.index[0]]


def tokens_per_gpu_at_slo(
    configs: pd.DataFrame, itl_slo_ms: float, *, gpu: str = GPU, num_gpus: int | None = None
) -> float:
    """Best output tokens/s per GPU with p90 ITL <= ``itl_slo_ms`` [tokens/s/GPU] (0 if none)."""
    row = best_at_slo(configs, itl_slo_ms, gpu=gpu, num_gpus=num_gpus)
    return 0.0 if row is None else float(row["output_tokens_per_s"] / row["num_gpus"])


def scale_sweep(sweep: pd.DataFrame, ratio: Ratio) -> pd.DataFrame:
    """Apply a precision ratio to every point of a measured sweep.

    Throughput is multiplied by ``ratio.throughput``, inter-token latencies
    divided by it (same batch, slower or faster steps), energy per token
    multiplied by ``ratio.energy`` and power recomputed as energy/token ×
    tokens/s [W].
    """
    out = sweep.copy()
    out["output_tokens_per_s"] = sweep["output_tokens_per_s"] * ratio.throughput
    for column in ("itl_median_ms", "itl_p90_ms", "itl_p95_ms", "itl_p99_ms"):
        out[column] = sweep[column] / ratio.throughput
    out["energy_per_token_j"] = sweep["energy_per_token_j"] * ratio.energy
    out["avg_power_w"] = out["energy_per_token_j"] * out["output_tokens_per_s"]
    return out


# --------------------------------------------------------------------------- ratios


def fp8_ratio(bf16: pd.DataFrame, fp8: pd.DataFrame, *, num_gpus: int = FP8_PAIR_GPUS) -> Ratio:
    """FP8/BF16 ratios: medians over batch sizes measured at both precisions.

    Parameters
    ----------
    bf16, fp8 : DataFrame
        v3 configurations of the same model at the two precisions.
    num_gpus
        GPU count compared (same on both sides), on :data:`GPU`.
    """
    keys = ["max_num_seqs"]
    left = bf16[(bf16["gpu_model"] == GPU) & (bf16["num_gpus"] == num_gpus)]
    right = fp8[(fp8["gpu_model"] == GPU) & (fp8["num_gpus"] == num_gpus)]
    pairs = left.merge(right, on=keys, suffixes=("_bf16", "_fp8"))
    if pairs.empty:
        raise ValueError(f"no batch size measured at both precisions on {GPU}x{num_gpus}")
    throughput = pairs["output_tokens_per_s_fp8"] / pairs["output_tokens_per_s_bf16"]
    energy = pairs["energy_per_token_j_fp8"] / pairs["energy_per_token_j_bf16"]
    batches = ",".join(str(b) for b in pairs["max_num_seqs"])
    return Ratio(
        throughput=float(throughput.median()),
        energy=float(energy.median()),
        prefill=float("nan"),
        n_pairs=len(pairs),
        source=(
            f"ML.ENERGY v3 {FP8_PAIR_FP8} vs {FP8_PAIR_BF16} on {GPU}x{num_gpus}, medians "
            f"over max_num_seqs {batches}"
        ),
    )


def llm_perf_ratio(perf: pd.DataFrame, model: str, method: str) -> Ratio:
    """Quantized/16-bit ratios of one LLM-Perf model (A100, batch 1).

    Each ``method`` row (e.g. ``BnB.8bit``) is paired with the unquantized
    16-bit row of the same model and attention implementation (float16
    preferred, bfloat16 when the model has no float16 row); the ratios are
    medians over the pairs.

    Parameters
    ----------
    perf : DataFrame
        Output of :func:`traces.llm_power.read_llm_perf`.
    model
        LLM-Perf model id, e.g. ``"Qwen/Qwen1.5-7B"``.
    method
        Quantization label, e.g. ``"BnB.4bit"``.

    Raises
    ------
    ValueError
        If the model has no 16-bit baseline or no matching rows.
    """
    rows = perf[perf["model"] == model]
    base = rows[(rows["quantization"] == "none") & (rows["precision"] == "float16")]
    base_dtype = "float16"
    if base.empty:
        base = rows[(rows["quantization"] == "none") & (rows["precision"] == "bfloat16")]
        base_dtype = "bfloat16"
    if base.empty:
        raise ValueError(f"LLM-Perf has no unquantized 16-bit row for {model}")
    quant = rows[rows["quantization"] == method]
    pairs = quant.merge(base, on="attention", suffixes=("_q", "_b"))
    if pairs.empty:
        raise ValueError(f"LLM-Perf has no {method} row of {model} matching a 16-bit row")
    throughput = pairs["decode_tokens_per_s_q"] / pairs["decode_tokens_per_s_b"]
    energy = pairs["energy_per_token_j_q"] / pairs["energy_per_token_j_b"]
    prefill = pairs["prefill_s_b"] / pairs["prefill_s_q"]
    return Ratio(
        throughput=float(throughput.median()),
        energy=float(energy.median()),
        prefill=float(prefill.median()),
        n_pairs=len(pairs),
        source=(
            f"HF LLM-Perf 1xA100 batch 1: {model} {method} vs unquantized {base_dtype}, medians "
            f"over {len(pairs)} pairs matched on attention implementation"
        ),
    )


def llm_perf_quality_is_per_model(perf: pd.DataFrame, models: Sequence[str]) -> bool:
    """True when each of ``models`` has one Open LLM score across all its LLM-Perf rows.

    Then the score is a per-model attribute joined into the table, not a
    measurement of each quantized variant, and cannot give a quality delta.
    (Not asked of every model: ``openai-community/gpt2`` appears twice with
    two scores in the file.)
    """
    rows = perf[perf["model"].isin(list(models))]
    return bool((rows.groupby("model")["open_llm_score_pct"].nunique() == 1).all())


# --------------------------------------------------------------------------- table rows


def _fmt_point(point: pd.Series) -> str:
    return (
        f"{point['gpu_model']}x{int(point['num_gpus'])} max_num_seqs={int(point['max_num_seqs'])} "
        f"TP{int(point['tp'])}/EP{int(point['ep'])}/DP{int(point['dp'])}"
    )


def _row(
    spec: FamilySpec,
    hf_model_id: str,
    precision: str,
    point: pd.Series,
    *,
    itl_slo_ms: float,
    total_params_b: float,
    basis: str,
    point_text: str,
    curve: BatchCurve,
    curve_text: str,
) -> dict[str, object]:
    num_gpus = int(point["num_gpus"])
    throughput = float(point["output_tokens_per_s"])
    active = float(point["avg_power_w"])
    idle = curve.power_idle_w
    weight_gb = total_params_b * BYTES_PER_PARAM[precision]
    load_s = ENGINE_START_S + weight_gb / LOAD_BANDWIDTH_GB_PER_S
    quality = ASSUMED_QUALITY_DELTA_PCT_POINTS[precision]
    provenance = "; ".join(
        [
            point_text,
            f"idle derived: P(0) of the batch-occupancy power curve of the instance ({curve_text})",
            "prefill derived: the instance curve's prefill rate",
            "marginal energy/token derived: (active - idle) / tokens_per_s",
            (
                "quality: reference precision (0 by definition)"
                if precision == "BF16"
                else f"quality assumed {quality:+g} points: no per-precision quality data "
                "(LLM-Perf Open LLM score is per model, equal for all its quantized rows)"
            ),
            f"load assumed: {ENGINE_START_S:g} s engine start + {weight_gb:g} GB "
            f"({total_params_b:g}B params x {BYTES_PER_PARAM[precision]:g} B) / "
            f"{LOAD_BANDWIDTH_GB_PER_S:g} GB/s NVMe",
        ]
    )
    return {
        "model": spec.model,
        "hf_model_id": hf_model_id,
        "precision": precision,
        "gpu": GPU,
        "gpus_per_instance": num_gpus,
        "max_batch": int(point["max_num_seqs"]),
        "itl_slo_p90_ms": itl_slo_ms,
        "tokens_per_s_at_slo": throughput,
        "tokens_per_s_per_gpu": throughput / num_gpus,
        "active_power_w": active,
        "idle_power_w": idle,
        "energy_per_token_j": float(point["energy_per_token_j"]),
        "marginal_energy_per_token_j": (active - idle) / throughput,
        "itl_p90_ms": float(point["itl_p90_ms"]),
        "quality_delta_pct_points": quality,
        "load_time_s": load_s,
        "prefill_tokens_per_s": curve.prefill_tokens_per_s,
        "weight_gb": weight_gb,
        "basis": basis,
        "provenance": provenance,
    }


def _scaled_curve(base: BatchCurve, ratio: Ratio, prefill: float, model: str,
                  precision: str, gpus: int) -> BatchCurve:
    """The BF16 curve of ``model`` scaled to ``precision`` (ratios of its operating point),
    with the KV capacity of that precision's weights."""
    curve = base.scaled(ratio.throughput, ratio.energy, prefill)
    kv = kv_capacity_tokens(ARCHITECTURES[model], gpus, BYTES_PER_PARAM[precision])
    return BatchCurve(**{**curve.__dict__, "kv_capacity_tokens": kv})


def derive_family(
    spec: FamilySpec,
    models_dir: Path,
    perf: pd.DataFrame,
    fp8: Ratio,
    fits: dict[tuple[str, str], CurveFit],
    *,
    itl_slo_ms: float = DEFAULT_ITL_SLO_MS,
) -> tuple[list[dict[str, object]], list[str], list[dict[str, object]]]:
    """Rows of one family, the reasons for rows left out, and the rows' curves.

    Parameters
    ----------
    spec
        The family.
    models_dir
        ML.ENERGY v3 ``models`` folder.
    perf
        LLM-Perf rows.
    fp8
        FP8/BF16 ratio used when the family has no FP8 measurement.
    fits
        Fitted curves of the measured sweeps (:func:`fit_measured`).
    itl_slo_ms : float [ms]
        Latency SLO on p90 ITL.
    """
    bf16, _ = read_mlenergy_v3(models_dir / spec.bf16_file)
    model_id = str(bf16["model_id"].iloc[0])
    total_b = float(bf16["total_params_b"].iloc[0])
    rows: list[dict[str, object]] = []
    curves: list[dict[str, object]] = []
    skipped: list[str] = []
    slo_text = f"best output tokens/s per GPU over {GPU} configs with p90 ITL <= {itl_slo_ms:g} ms"

    point = best_at_slo(bf16, itl_slo_ms)
    if point is None:
        skipped.append(f"{spec.model} BF16: no measured {GPU} configuration meets the SLO")
        return rows, skipped, curves
    base_gpus = int(point["num_gpus"])
    base = fits[(spec.model, "BF16")].curve
    fitted_text = (f"fitted on ML.ENERGY v3 {{file}} {GPU}x{{gpus}} sweep, "
                   "mpc_dc.params.serving_fit")

    def add(row: dict[str, object] | str, curve: BatchCurve, text: str) -> None:
        if isinstance(row, str):
            skipped.append(row)
            return
        rows.append(row)
        curves.append(curve_row(spec.model, str(row["precision"]), GPU,
                                int(str(row["gpus_per_instance"])), curve, str(row["basis"]),
                                text))

    text = fitted_text.format(file=spec.bf16_file, gpus=base_gpus)
    add(_row(spec, model_id, "BF16", point, itl_slo_ms=itl_slo_ms,
             total_params_b=total_b, basis="measured",
             point_text=(f"operating point measured: ML.ENERGY v3 {spec.bf16_file} "
                         f"configurations[{int(point['config_index'])}] ({_fmt_point(point)}), "
                         f"{slo_text}"),
             curve=base, curve_text=text), base, text)
    base_sweep = bf16[(bf16["gpu_model"] == GPU) & (bf16["num_gpus"] == base_gpus)]

    if spec.fp8_file is not None:
        fp8_configs, _ = read_mlenergy_v3(models_dir / spec.fp8_file)
        fp8_point = best_at_slo(fp8_configs, itl_slo_ms)
        if fp8_point is None:
            skipped.append(f"{spec.model} FP8: no measured {GPU} configuration meets the SLO")
        else:
            curve = fits[(spec.model, "FP8")].curve
            text = fitted_text.format(file=spec.fp8_file, gpus=int(fp8_point["num_gpus"]))
            add(_row(spec, str(fp8_configs["model_id"].iloc[0]), "FP8", fp8_point,
                     itl_slo_ms=itl_slo_ms, total_params_b=total_b,
                     basis="measured",
                     point_text=(f"operating point measured: ML.ENERGY v3 {spec.fp8_file} "
                                 f"configurations[{int(fp8_point['config_index'])}] "
                                 f"({_fmt_point(fp8_point)}), {slo_text}"),
                     curve=curve, curve_text=text), curve, text)
    else:
        curve = _scaled_curve(base, fp8, FP8_PREFILL_SPEEDUP, spec.model, "FP8", base_gpus)
        text = (f"BF16 curve scaled by the FP8/BF16 ratios, prefill x {FP8_PREFILL_SPEEDUP:g} "
                "assumed")
        add(_derived_row(spec, model_id, "FP8", base_sweep, fp8, itl_slo_ms=itl_slo_ms,
                         total_b=total_b, curve=curve, curve_text=text), curve, text)

    for precision, methods in LLM_PERF_METHODS.items():
        ratios = [llm_perf_ratio(perf, spec.llm_perf_proxy, m) for m in methods]
        # An operator deploys the faster 4-bit kernel: keep the best measured method.
        ratio = max(ratios, key=lambda r: (r.throughput, -r.energy))
        curve = _scaled_curve(base, ratio, ratio.prefill, spec.model, precision, base_gpus)
        text = (f"BF16 curve scaled by the LLM-Perf ratios (prefill x {ratio.prefill:.3f})")
        add(_derived_row(spec, model_id, precision, base_sweep, ratio, itl_slo_ms=itl_slo_ms,
                         total_b=total_b, curve=curve, curve_text=text,
                         proxy_reason=spec.proxy_reason), curve, text)
    return rows, skipped, curves


def _derived_row(
    spec: FamilySpec,
    model_id: str,
    precision: str,
    base_sweep: pd.DataFrame,
    ratio: Ratio,
    *,
    itl_slo_ms: float,
    total_b: float,
    curve: BatchCurve,
    curve_text: str,
    proxy_reason: str = "",
) -> dict[str, object] | str:
    """A row from the BF16 sweep scaled by ``ratio``, or the reason it is left out."""
    scaled = scale_sweep(base_sweep, ratio)
    point = best_at_slo(scaled, itl_slo_ms)
    gpus = int(base_sweep["num_gpus"].iloc[0])
    if point is None:
        fastest = float(scaled["itl_p90_ms"].min())
        return (
            f"{spec.model} {precision}: left out; with throughput x{ratio.throughput:.3f} "
            f"({ratio.source}) the lowest p90 ITL of the {GPU}x{gpus} sweep is "
            f"{fastest:.1f} ms > SLO {itl_slo_ms:g} ms"
        )
    proxy = f" (proxy: {proxy_reason})" if proxy_reason else ""
    text = (
        f"operating point derived: ML.ENERGY v3 {spec.bf16_file} BF16 {GPU}x{gpus} sweep with "
        f"tokens/s x{ratio.throughput:.4f}, ITL / {ratio.throughput:.4f}, J/token "
        f"x{ratio.energy:.4f} from {ratio.source}{proxy}; then best tokens/s per GPU with "
        f"p90 ITL <= {itl_slo_ms:g} ms (BF16 configurations[{int(point['config_index'])}] "
        f"scaled, {_fmt_point(point)}); GPUs per instance kept from BF16 (no measurement of "
        f"fewer GPUs at {precision})"
    )
    return _row(spec, model_id, precision, point, itl_slo_ms=itl_slo_ms,
                total_params_b=total_b, basis="derived", point_text=text, curve=curve,
                curve_text=curve_text)


def derive_table(
    data_dir: str | Path, *, itl_slo_ms: float = DEFAULT_ITL_SLO_MS
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """Derive the whole table and the instance curves from ``data_dir``.

    Parameters
    ----------
    data_dir
        Folder holding ``llm_power/`` (the shared ``data`` folder).
    itl_slo_ms : float [ms]
        Latency SLO on the p90 inter-token latency.

    Returns
    -------
    table : DataFrame
        Columns :data:`TABLE_COLUMNS`, one row per (model, precision, GPU).
    skipped : list of str
        Rows left out, each with its reason.
    curves : DataFrame
        Columns :data:`~mpc_dc.params.serving_fit.CURVE_COLUMNS`, one per table row.

    Raises
    ------
    TraceError
        On a bad input file.
    """
    root = Path(data_dir)
    models_dir = root / V3_MODELS
    perf, _ = read_llm_perf(root / LLM_PERF_CSV)
    proxies = sorted({spec.llm_perf_proxy for spec in FAMILIES})
    if not llm_perf_quality_is_per_model(perf, proxies):
        logger.warning("LLM-Perf Open LLM scores differ within a proxy model; quality assumed")
    pair_bf16, _ = read_mlenergy_v3(models_dir / FP8_PAIR_BF16)
    pair_fp8, _ = read_mlenergy_v3(models_dir / FP8_PAIR_FP8)
    fp8 = fp8_ratio(pair_bf16, pair_fp8)
    fits = fit_measured(root)
    rows: list[dict[str, object]] = []
    curves: list[dict[str, object]] = []
    skipped: list[str] = []
    for spec in FAMILIES:
        family_rows, family_skipped, family_curves = derive_family(
            spec, models_dir, perf, fp8, fits, itl_slo_ms=itl_slo_ms
        )
        rows.extend(family_rows)
        skipped.extend(family_skipped)
        curves.extend(family_curves)
    table = pd.DataFrame.from_records(rows, columns=list(TABLE_COLUMNS))
    curve_frame = pd.DataFrame.from_records(curves, columns=list(CURVE_COLUMNS))
    # Families in FAMILIES order (small to large), precisions in PRECISIONS order.
    rank = {
        (s.model, p): i for i, (s, p) in enumerate((s, p) for s in FAMILIES for p in PRECISIONS)
    }
    keys = [rank[(m, p)] for m, p in zip(table["model"], table["precision"], strict=True)]
    order = np.argsort(keys, kind="stable")
    return (table.iloc[order].reset_index(drop=True), skipped,
            curve_frame.iloc[order].reset_index(drop=True))


def write_table(table: pd.DataFrame, out: str | Path) -> None:
    """Write the table as CSV atomically (temp file in the same folder, then rename)."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            table.to_csv(handle, index=False, float_format="%.6g", lineterminator="\n")
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: derive the table and write it; prints rows and skipped ones."""
    parser = argparse.ArgumentParser(
        prog="python -m mpc_dc.params.derive_quant_table", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        help="shared data folder holding llm_power/ (default ../shared/data)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("mpc_dc/params/quant_power_table.csv"), help="CSV to write"
    )
    parser.add_argument(
        "--curves-out", type=Path, default=Path("mpc_dc/params/serving_curves.csv"),
        help="CSV of the instance curves to write",
    )
    parser.add_argument(
        "--itl-slo-ms",
        type=float,
        default=DEFAULT_ITL_SLO_MS,
        help="latency SLO on the p90 inter-token latency [ms] (default 50)",
    )
    args = parser.parse_args(argv)
    try:
        table, skipped, curves = derive_table(args.data, itl_slo_ms=args.itl_slo_ms)
    except TraceError as err:
        print(err, file=sys.stderr)
        return 2
    write_table(table, args.out)
    write_table(curves, args.curves_out)
    shown = table.drop(columns=["provenance", "hf_model_id"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for reason in skipped:
        print("skipped:", reason)
    print(f"wrote {len(table)} rows to {args.out} and their curves to {args.curves_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
