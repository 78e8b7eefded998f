"""A results document the size of the MiniLM run (recipes/minilm.yaml: 19 variants, torch-cpu
and ort-cpu, 1 and 2 threads, batches 1 and 8), built by the real results code
(results_document over real Artifact, Row, LatencyStats and Accuracy records) from seeded
latency samples, so its shape is what a run writes. A whole MiniLM run takes 11 minutes;
the report's layout only needs its numbers' shape and spread. Torch artifacts run on
torch-cpu, ONNX ones on ort-cpu, and one extra ONNX variant makes twenty."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bench.accuracy import Accuracy
from bench.latency import LatencyStats
from bench.results import Row, results_document
from edgeopt.core.artifact import IO, Artifact, Format, Precision, TensorSpec
from edgeopt.core.machine import fingerprint

# name: (stage, parent, precision, p50 ms at batch 1 and 1 thread on ort-cpu, overlap@10, size MB)
VARIANTS = {
    "model": ("load_model", None, "fp32", 14.0, 1.000, 90.9),
    "onnx": ("export_onnx", "model", "fp32", 9.1, 1.000, 90.9),
    "onnx-dynamo": ("export_onnx", "model", "fp32", 10.4, 1.000, 90.9),
    "simplified": ("simplify", "onnx", "fp32", 9.0, 1.000, 90.8),
    "optimized": ("optimize_transformer", "onnx", "fp32", 7.9, 0.999, 90.8),
    "optimized-cpu": ("optimize_transformer", "onnx", "fp32", 7.2, 0.996, 90.8),
    "fp16": ("convert_fp16", "simplified", "fp16", 12.6, 0.998, 45.5),
    "int8-static": ("quantize_int8", "simplified", "int8-qdq", 6.1, 0.412, 23.1),
    "int8-static-matmul": ("quantize_int8", "optimized", "int8-qdq", 5.6, 0.733, 23.3),
    "int8-dynamic": ("quantize_dynamic", "optimized", "int8-dynamic", 4.4, 0.951, 23.0),
    "int8-per-channel": ("quantize_dynamic", "optimized", "int8-dynamic", 4.5, 0.962, 23.2),
    "smoothed": ("smooth_activations", "model", "fp32", 14.1, 1.000, 90.9),
    "onnx-smoothed": ("export_onnx", "smoothed", "fp32", 9.2, 1.000, 90.9),
    "int8-cpu": ("quantize_dynamic", "optimized-cpu", "int8-dynamic", 3.9, 0.958, 23.2),
    "ffn-pruned": ("prune_ffn", "model", "fp32", 12.9, 0.981, 84.5),
    "onnx-pruned": ("export_onnx", "ffn-pruned", "fp32", 8.6, 0.981, 84.5),
    "optimized-pruned": ("optimize_transformer", "onnx-pruned", "fp32", 6.6, 0.978, 84.4),
    "int8-speed": ("quantize_dynamic", "optimized-pruned", "int8-dynamic", 3.5, 0.941, 21.6),
    "int8-quality": ("quantize_dynamic", "onnx-smoothed", "int8-dynamic", 4.8, 0.987, 25.0),
    "int8-speed-static": ("quantize_int8", "optimized-pruned", "int8-qdq", 4.1, 0.902, 21.7),
}
RUNTIMES = {"torch-cpu": (Format.TORCH, 1.45), "ort-cpu": (Format.ONNX, 1.0)}  # format run, slowdown
THREADS = {1: 1.0, 2: 0.58}
BATCHES = (1, 8)


def _artifacts() -> dict[str, Artifact]:
    io = IO(
        tuple(TensorSpec(name, ("batch", "sequence"), "int64") for name in ("input_ids", "attention_mask")),
        (TensorSpec("sentence_embedding", ("batch", 384), "float32"),),
    )
    shas = {name: hashlib.sha256(name.encode()).hexdigest() for name in VARIANTS}
    artifacts = {}
    for name, (stage, parent, precision, _, _, size_mb) in VARIANTS.items():
        torch = stage in ("load_model", "smooth_activations", "prune_ffn")
        artifacts[name] = Artifact(
            path=Path(name) / ("model.pt" if torch else "model.onnx"),
            format=Format.TORCH if torch else Format.ONNX,
            precision=Precision(precision),
            stage=stage,
            options={},
            parent=shas[parent] if parent else None,
            io=io,
            sha256=shas[name],
            facts={"size_bytes": int(size_mb * 1e6), "parameters": 22_713_216},
        )
    return artifacts


def _latency(rng: np.random.Generator, batch: int, p50_ms: float) -> LatencyStats:
    """Three rounds of lognormal samples around p50_ms with a small slow tail."""
    sigma = 0.05 + 0.05 * rng.random()
    rounds = []
    for _ in range(3):
        samples = p50_ms * np.exp(rng.normal(0.0, sigma, 120)) * np.where(rng.random(120) < 0.03, 1.5, 1.0)
        rounds.append((samples * 1e6).astype(np.int64))
    return LatencyStats.from_rounds(batch, rounds)


def _row(rng, name: str, runtime: str, threads: int, batch: int) -> Row:
    _, _, precision, p50, overlap, size_mb = VARIANTS[name]
    slowdown = RUNTIMES[runtime][1] * THREADS[threads] * batch**0.62
    latency = _latency(rng, batch, p50 * slowdown * (1 + 0.03 * rng.random()))
    cosine = 1.0 if overlap == 1.0 else 1 - (1 - overlap) / 8
    rounds = tuple(float(latency.p50_ms * (1 + 0.01 * rng.normal())) for _ in range(3))
    return Row(
        variant=name,
        runtime=runtime,
        precision=precision,
        batch=batch,
        threads=threads,
        load_s=0.2 + 0.004 * size_mb,
        latency=latency,
        accuracy=Accuracy(400, None, None, cosine, cosine - 0.02, 0.01 * (1 - cosine), overlap),
        round_p50_ms=rounds,
        spread=float(0.02 * rng.random()),
        stable=True,
        baseline_rss_mb=310.0,
        peak_rss_mb=310.0 + 2.2 * size_mb + (180 if runtime == "torch-cpu" else 60),
        warmup_runs=2,
        harness_overhead=None,
    )


def document(seed: int = 22) -> dict:
    """results.json's dict: 20 variants, 2 runtimes × 2 thread counts × 2 batch sizes (80 rows)."""
    rng = np.random.default_rng(seed)
    artifacts = _artifacts()
    rows = [
        _row(rng, name, runtime, threads, batch)
        for runtime, (runs, _) in RUNTIMES.items()
        for threads in THREADS
        for name, artifact in artifacts.items()
        if artifact.format == runs
        for batch in BATCHES
    ]
    return results_document(
        recipe="minilm-sized",
        recipe_path="recipes/minilm.yaml",
        machine=fingerprint(),
        artifacts=artifacts,
        rows=rows,
        skipped=[],
        scenarios=[],
        steadiness=None,
        max_accuracy_drop=0.1,
        duration_s=660.0,
        created="2026-01-01T00:00:00+00:00",
    )
