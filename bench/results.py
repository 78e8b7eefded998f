"""results.json: what a run measured, on which machine, for which artifacts (schema versioned)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.accuracy import Accuracy
from bench.latency import LatencyStats
from bench.recommend import recommend
from bench.steadiness import Steadiness
from edgeopt.core.errors import output_error

# 2: latency.p50_ci_ms; 3: isolated interleaved rounds, memory, scenarios, recommendations;
# 4: rows' device_latency (GPU), skipped entries with runtime null for variants not built;
# 5: summary.machine_steadiness; latency.p50_ci_ms from resampling rounds where there are rounds;
# 6: machine.arch/target/target_reason, artifacts' target (the machine an INT8 artifact was built for);
# 7: rows' and skipped entries' device, devices (each one's fingerprint, target, status and faults);
#    recommendations per target (device, runtime, threads) and scenario: the pick, the runner-up and
#    the source model's plain export on that target as the baseline, each with accuracy, size, memory;
#    executor (local, or the Ray cluster), rows' measured_on, artifacts' facts.built_on
SCHEMA_VERSION = 7


@dataclass(frozen=True)
class Row:
    """One measurement: an artifact on a runtime at a batch size and thread count."""

    variant: str
    runtime: str
    precision: str
    batch: int
    threads: int
    load_s: float  # cold start: a fresh process loading the artifact
    latency: LatencyStats  # samples of every round pooled
    accuracy: Accuracy
    round_p50_ms: tuple[float, ...]  # each interleaved round's median
    spread: float  # the pooled medians of the even and the odd rounds, relative difference
    stable: bool  # spread within the recipe's stability threshold
    baseline_rss_mb: float  # the measuring process before it loaded the artifact
    peak_rss_mb: float
    warmup_runs: int
    harness_overhead: float | None  # harness median over a bare loop's, where measured
    device_latency: LatencyStats | None = None  # GPU sessions: the enqueue alone, between CUDA events
    device: str = "local"  # the machine that measured it: this one, or a device over SSH
    measured_on: str | None = None  # the host (and Ray node) that ran the measurement


def speedups(rows: list[Row], baseline_variant: str) -> list[float | None]:
    """Each row's p50 speedup over the baseline variant on the same device at the same batch
    and threads (its first runtime), measured in the same run."""
    baseline: dict[tuple[str, int, int], float] = {}
    for row in rows:
        if row.variant == baseline_variant:
            baseline.setdefault((row.device, row.batch, row.threads), row.latency.p50_ms)
    keys = [(r.device, r.batch, r.threads) for r in rows]
    return [baseline[k] / r.latency.p50_ms if k in baseline else None for k, r in zip(keys, rows, strict=True)]


def results_document(
    *,
    recipe: str,
    recipe_path: str,
    machine: dict,
    artifacts: dict,
    executor: dict | None = None,
    rows: list[Row],
    skipped: list[dict],
    scenarios: list[dict],
    steadiness: Steadiness | None,
    max_accuracy_drop: float,
    duration_s: float,
    created: str,
    devices: list[dict] | None = None,
) -> dict:
    """`devices`: each measuring machine's record (name, fingerprint, target, status,
    faults); by default this machine alone."""
    ratios = speedups(rows, "model")
    row_dicts = [
        {**dataclasses.asdict(row), "speedup_vs_model": ratio} for row, ratio in zip(rows, ratios, strict=True)
    ]
    artifact_records = {name: artifact.to_json() for name, artifact in artifacts.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "recipe": recipe,
        "recipe_path": recipe_path,
        "created": created,
        "duration_s": round(duration_s, 3),
        "machine": machine,
        "devices": devices
        if devices is not None
        else [{"name": "local", "kind": "local", "fingerprint": machine, "status": "ok", "faults": []}],
        "executor": executor or {"kind": "local"},
        "artifacts": artifact_records,
        "rows": row_dicts,
        "skipped": skipped,
        "scenarios": scenarios,
        "max_accuracy_drop": max_accuracy_drop,
        "recommendations": recommend(row_dicts, artifact_records, max_accuracy_drop),
        "summary": summary(rows, {name: artifact.sha256 for name, artifact in artifacts.items()}, steadiness),
    }


def summary(rows: list[Row], shas: dict[str, str], steadiness: Steadiness | None = None) -> dict:
    """What says whether the numbers can be trusted: the spread between rounds, the same
    artifact measured twice under two names, the harness's overhead, and how steady the
    machine itself ran."""
    overheads = [r for r in rows if r.harness_overhead is not None]
    # the harness costs a fixed time per call, so the fastest call shows it best; on slow
    # calls the ratio is 1 give or take the machine's noise between adjacent chunks
    fastest = min(overheads, key=lambda r: r.latency.p50_ms, default=None)
    spreads = sorted(r.spread for r in rows)
    first: dict[tuple, Row] = {}
    twins = []
    for row in rows:
        key = (row.device, shas[row.variant], row.runtime, row.batch, row.threads)
        if key in first:
            twin = first[key]
            twins.append(
                {
                    "variants": [twin.variant, row.variant],
                    "device": row.device,
                    "runtime": row.runtime,
                    "batch": row.batch,
                    "threads": row.threads,
                    "difference": abs(row.latency.p50_ms / twin.latency.p50_ms - 1.0),
                }
            )
        else:
            first[key] = row
    return {
        "measurements": len(rows),
        "max_spread": spreads[-1] if spreads else None,
        "median_spread": spreads[len(spreads) // 2] if spreads else None,
        "unstable": [_name(r) for r in rows if not r.stable],
        "measured_twice": twins,
        "max_twice_difference": max((t["difference"] for t in twins), default=None),
        "harness_overhead_fastest": fastest.harness_overhead if fastest else None,
        "harness_overhead_fastest_at": f"{_name(fastest)}, p50 {fastest.latency.p50_ms:.3f} ms" if fastest else None,
        "median_harness_overhead": float(np.median([r.harness_overhead for r in overheads])) if overheads else None,
        "max_harness_overhead": max((r.harness_overhead for r in overheads), default=None),
        "machine_steadiness": steadiness.to_json() if steadiness else None,
    }


def _name(row: Row) -> str:
    where = "" if row.device == "local" else f" on {row.device}"
    return f"{row.variant} {row.runtime} batch {row.batch} × {row.threads}{where}"


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(path, err) from err


def write_results(path: Path, document: dict) -> None:
    write_atomic(path, json.dumps(document, indent=2) + "\n")
