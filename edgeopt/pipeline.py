"""The pipeline: recipe → source artifact → variants → benchmarks → results.json and reports.

Every stage output is cached under the hash of (input artifact, stage, version,
options, samples), so a re-run rebuilds nothing and a killed run resumes. With a Ray
executor the builds and the device measurements run as tasks on a cluster instead
(edgeopt/ray_builds.py, ray_devices.py); the keys and the files are the same.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.report.html import render_html
from bench.report.markdown import render
from bench.results import results_document, write_atomic, write_results
from edgeopt.core.targets import Target
from edgeopt.executor import LOCAL, DeviceRun, TaskFailure, local_job, run_here
from edgeopt.plan import Built, build_all
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import run_data
from edgeopt.store import Store


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    document: dict
    failed: dict[str, TaskFailure] = field(default_factory=dict)  # variant → why its build failed (Ray)


def run(
    loaded: LoadedRecipe,
    output_dir: Path,
    verbose: bool = False,
    target: Target | None = None,
    ray: str | None = None,
) -> RunResult:
    """Build every variant of the recipe, benchmark each on its runtimes, write the report.
    `target` overrides the recipe's; `ray` (a Ray address) its executor."""
    started = time.perf_counter()
    address = ray or (loaded.recipe.executor.ray if loaded.recipe.executor else None)
    asked = target or loaded.recipe.target
    if address is None:
        store = Store(output_dir)
        data = run_data(loaded)
        built = build_all(loaded, store, data, asked, verbose)
        (measured,) = run_here([local_job(loaded, built.artifacts, data.dataset)])
        executor = {"kind": "local"}
    else:
        built, measured, executor = _on_ray(address, loaded, output_dir, asked, verbose)
    unbuilt = [{"variant": name, "runtime": None, "reason": reason} for name, reason in built.unbuilt.items()]
    failed = [
        {"variant": name, "runtime": None, "reason": f"build failed: {failure.line}"}
        for name, failure in built.failed.items()
    ]
    document = results_document(
        recipe=loaded.recipe.name,
        recipe_path=str(loaded.path),
        machine=measured.machine,
        executor=executor,
        artifacts=built.artifacts,
        rows=measured.measured.rows,
        skipped=unbuilt + failed + measured.measured.skipped,
        scenarios=measured.measured.scenarios,
        steadiness=measured.measured.steadiness,
        max_accuracy_drop=loaded.recipe.bench.max_accuracy_drop,
        duration_s=time.perf_counter() - started,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_results(output_dir / "results.json", document)
    write_atomic(output_dir / "report.md", render(document))
    write_atomic(output_dir / "report.html", render_html(document))
    return RunResult(output_dir, document, built.failed)


def _on_ray(
    address: str, loaded: LoadedRecipe, output_dir: Path, asked: Target, verbose: bool
) -> tuple[Built, DeviceRun, dict]:
    """Builds and the local device's measurement as tasks on the cluster at `address`. Tasks
    run in other folders (and maybe on other machines): every path they get is absolute."""
    from edgeopt.ray_builds import build_on_ray
    from edgeopt.ray_cluster import connect
    from edgeopt.ray_devices import run_on_ray

    loaded = dataclasses.replace(loaded, path=loaded.path.resolve())
    with connect(address, [LOCAL], verbose) as cluster:
        store = Store(output_dir.resolve())
        data = run_data(loaded)
        built = build_on_ray(loaded, store, data, asked, verbose)
        if "model" in built.failed:
            built.failed["model"].reraise("model")
        (measured,) = run_on_ray([local_job(loaded, built.artifacts, data.dataset)])
    return built, measured, cluster.to_json()
