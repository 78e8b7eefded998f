"""The pipeline: recipe → source artifact → variants → benchmarks → results.json and reports.

Every stage output is cached under the hash of (input artifact, stage, version,
options, samples), so a re-run rebuilds nothing and a killed run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.report.html import render_html
from bench.report.markdown import render
from bench.results import results_document, write_atomic, write_results
from edgeopt.core.machine import fingerprint
from edgeopt.core.targets import Target
from edgeopt.measure import benchmark
from edgeopt.plan import build_all
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import run_data
from edgeopt.store import Store


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    document: dict


def run(loaded: LoadedRecipe, output_dir: Path, verbose: bool = False, target: Target | None = None) -> RunResult:
    """Build every variant of the recipe, benchmark each on its runtimes, write the report.
    `target` overrides the recipe's."""
    started = time.perf_counter()
    store = Store(output_dir)
    data = run_data(loaded)
    built = build_all(loaded, store, data, target or loaded.recipe.target, verbose)
    measured = benchmark(loaded, built.artifacts, data.dataset)
    unbuilt = [{"variant": name, "runtime": None, "reason": reason} for name, reason in built.unbuilt.items()]
    document = results_document(
        recipe=loaded.recipe.name,
        recipe_path=str(loaded.path),
        machine=fingerprint(),
        artifacts=built.artifacts,
        rows=measured.rows,
        skipped=unbuilt + measured.skipped,
        scenarios=measured.scenarios,
        steadiness=measured.steadiness,
        max_accuracy_drop=loaded.recipe.bench.max_accuracy_drop,
        duration_s=time.perf_counter() - started,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_results(output_dir / "results.json", document)
    write_atomic(output_dir / "report.md", render(document))
    write_atomic(output_dir / "report.html", render_html(document))
    return RunResult(output_dir, document)
