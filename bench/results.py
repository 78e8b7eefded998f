"""results.json: what a run measured, on which machine, for which artifacts (schema versioned)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bench.accuracy import Accuracy
from bench.latency import LatencyStats
from edgeopt.errors import output_error

SCHEMA_VERSION = 2  # 2: latency.p50_ci_ms


@dataclass(frozen=True)
class Row:
    """One measurement: an artifact on a runtime at a batch size and thread count."""

    variant: str
    runtime: str
    precision: str
    batch: int
    threads: int
    load_s: float
    latency: LatencyStats
    accuracy: Accuracy


def speedups(rows: list[Row], baseline_variant: str) -> list[float | None]:
    """Each row's p50 speedup over the baseline variant at the same batch and threads
    (its first runtime), measured in the same run."""
    baseline: dict[tuple[int, int], float] = {}
    for row in rows:
        if row.variant == baseline_variant:
            baseline.setdefault((row.batch, row.threads), row.latency.p50_ms)
    return [
        baseline[(r.batch, r.threads)] / r.latency.p50_ms if (r.batch, r.threads) in baseline else None for r in rows
    ]


def results_document(
    *,
    recipe: str,
    recipe_path: str,
    machine: dict,
    artifacts: dict,
    rows: list[Row],
    skipped: list[dict],
    duration_s: float,
    created: str,
) -> dict:
    ratios = speedups(rows, "model")
    return {
        "schema_version": SCHEMA_VERSION,
        "recipe": recipe,
        "recipe_path": recipe_path,
        "created": created,
        "duration_s": round(duration_s, 3),
        "machine": machine,
        "artifacts": {name: artifact.to_json() for name, artifact in artifacts.items()},
        "rows": [
            {**dataclasses.asdict(row), "speedup_vs_model": ratio} for row, ratio in zip(rows, ratios, strict=True)
        ],
        "skipped": skipped,
    }


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(path, err) from err


def write_results(path: Path, document: dict) -> None:
    write_atomic(path, json.dumps(document, indent=2) + "\n")
