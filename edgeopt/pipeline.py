"""The pipeline: recipe → source artifact → variants → benchmarks → results.json and reports.

Every stage output is cached under the hash of (input artifact, stage, version,
options, samples), so a re-run rebuilds nothing and a killed run resumes.

Artifacts are built here and measured on each device asked for (this machine by
default): a device's CPU decides the target its INT8 artifacts are built for, and a
device that cannot be reached, or fails twice, is recorded with its fault while the
others' results are kept.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.report.html import render_html
from bench.report.markdown import render
from bench.results import results_document, write_atomic, write_results
from edgeopt.core.artifact import Artifact
from edgeopt.core.machine import fingerprint
from edgeopt.core.targets import Target
from edgeopt.device_measure import benchmark_remote
from edgeopt.devices import LOCAL_DEVICE, Device, device_target, probe, record
from edgeopt.measure import Measured, benchmark
from edgeopt.plan import Built, build_all
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import RunData, run_data
from edgeopt.store import Store


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    document: dict


def run(
    loaded: LoadedRecipe,
    output_dir: Path,
    verbose: bool = False,
    target: Target | None = None,
    devices: list[Device] | None = None,
) -> RunResult:
    """Build every variant of the recipe, benchmark each on its runtimes on every device
    (default: this machine), write the report. `target` overrides the recipe's."""
    started = time.perf_counter()
    store = Store(output_dir)
    data = run_data(loaded)
    asked = target or loaded.recipe.target
    rows, skipped, scenarios, records, steadiness = [], [], [], [], None
    builds: dict[Target, Built] = {}
    every: dict[str, Artifact] = {}  # by name in the results
    for device in devices or [LOCAL_DEVICE]:
        probed = probe(device)
        if device.remote is not None and probed.info is None:
            records.append(record(device, probed, None, None))
            continue
        chosen, reason = device_target(asked, device, probed.info)
        if chosen not in builds:
            here_auto = asked is Target.AUTO and device.remote is None  # logged as auto → this host
            builds[chosen] = build_all(loaded, store, data, asked if here_auto else chosen, verbose, reason)
        built = builds[chosen]
        named = _names(built.artifacts, chosen, every)
        measured = _measure(loaded, built.artifacts, data, device, probed)
        rows += [dataclasses.replace(r, device=device.name, variant=named[r.variant]) for r in measured.rows]
        skipped += [{**s, "variant": named[s["variant"]], "device": device.name} for s in measured.skipped]
        scenarios += [{**s, "variant": named[s["variant"]], "device": device.name} for s in measured.scenarios]
        steadiness = steadiness or measured.steadiness
        entry = record(device, probed, chosen, reason)
        entry |= measured.device
        entry["status"] = _status(probed.status, measured.device.get("status", "ok"))
        entry["faults"] = [*probed.faults, *measured.device.get("faults", [])]
        entry["artifacts"] = [named[name] for name in built.artifacts]
        entry["steadiness"] = measured.steadiness.to_json() if measured.steadiness else None
        records.append(entry)
    unbuilt = {name: reason for built in builds.values() for name, reason in built.unbuilt.items()}
    document = results_document(
        recipe=loaded.recipe.name,
        recipe_path=str(loaded.path),
        machine=fingerprint(),
        artifacts=every,
        rows=rows,
        skipped=[{"variant": name, "runtime": None, "reason": reason} for name, reason in unbuilt.items()] + skipped,
        scenarios=scenarios,
        steadiness=steadiness,
        max_accuracy_drop=loaded.recipe.bench.max_accuracy_drop,
        duration_s=time.perf_counter() - started,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        devices=records,
    )
    write_results(output_dir / "results.json", document)
    write_atomic(output_dir / "report.md", render(document))
    write_atomic(output_dir / "report.html", render_html(document))
    return RunResult(output_dir, document)


def _measure(loaded: LoadedRecipe, artifacts: dict[str, Artifact], data: RunData, device: Device, probed) -> Measured:
    if device.remote is None:
        return benchmark(loaded, artifacts, data.dataset)
    return benchmark_remote(loaded, artifacts, data.dataset, device, probed.info)


def _names(artifacts: dict[str, Artifact], target: Target, every: dict[str, Artifact]) -> dict[str, str]:
    """Each artifact's name in the results: its variant's, or `variant@target` where devices of
    two targets got two different artifacts under one variant (their INT8): never pooled."""
    named = {}
    for name, artifact in artifacts.items():
        same = name not in every or every[name].sha256 == artifact.sha256
        named[name] = name if same else f"{name}@{target}"
        every.setdefault(named[name], artifact)
    return named


def _status(probed: str, measured: str) -> str:
    """ok, retried (a fault, then success), or the fault that ended the device's run."""
    if measured not in ("ok", "retried"):
        return measured
    return "retried" if "retried" in (probed, measured) else "ok"
