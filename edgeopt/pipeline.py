"""The pipeline: recipe → source artifact → variants → benchmarks → results.json and reports.

Every stage output is cached under the hash of (input artifact, stage, version,
options, samples), so a re-run rebuilds nothing and a killed run resumes.

Artifacts are built here and measured on each device asked for (this machine by
default): a device's CPU decides the target its INT8 artifacts are built for, and a
device that cannot be reached, or fails twice, is recorded with its fault while the
others' results are kept. With a Ray executor the builds and the device measurements
run as tasks on a cluster instead (edgeopt/ray_builds.py, ray_devices.py): the keys and
the files are the same, and each device is measured by one task at a time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from edgeopt.executor import DeviceJob, DeviceRun, TaskFailure, run_here
from edgeopt.measure import benchmark
from edgeopt.plan import Built, build_all
from edgeopt.recipe import LoadedRecipe
from edgeopt.sources import RunData, run_data
from edgeopt.store import Store


@dataclass(frozen=True)
class RunResult:
    output_dir: Path
    document: dict
    failed: dict[str, TaskFailure] = field(default_factory=dict)  # variant → why its build failed (Ray)


@dataclass
class _Run:
    """What a run gathers, device by device, for results.json."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)  # by name in the results
    builds: dict[Target, Built] = field(default_factory=dict)
    rows: list = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    scenarios: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    steadiness: object = None
    machine: dict | None = None


def run(
    loaded: LoadedRecipe,
    output_dir: Path,
    verbose: bool = False,
    target: Target | None = None,
    devices: list[Device] | None = None,
    ray: str | None = None,
) -> RunResult:
    """Build every variant of the recipe, benchmark each on its runtimes on every device
    (default: this machine), write the report. `target` overrides the recipe's; `ray` (a
    Ray address) its executor."""
    started = time.perf_counter()
    address = ray or (loaded.recipe.executor.ray if loaded.recipe.executor else None)
    asked = target or loaded.recipe.target
    devices = devices or [LOCAL_DEVICE]
    if address is None:
        gathered = _gather(loaded, Store(output_dir), asked, devices, build_all, run_here, verbose)
        executor = {"kind": "local"}
    else:
        gathered, executor = _on_ray(address, loaded, output_dir, asked, devices, verbose)
    failed = {name: failure for built in gathered.builds.values() for name, failure in built.failed.items()}
    unbuilt = {name: reason for built in gathered.builds.values() for name, reason in built.unbuilt.items()}
    document = results_document(
        recipe=loaded.recipe.name,
        recipe_path=str(loaded.path),
        machine=gathered.machine or fingerprint(),
        executor=executor,
        artifacts=gathered.artifacts,
        rows=gathered.rows,
        skipped=[{"variant": name, "runtime": None, "reason": reason} for name, reason in unbuilt.items()]
        + [{"variant": name, "runtime": None, "reason": f"build failed: {f.line}"} for name, f in failed.items()]
        + gathered.skipped,
        scenarios=gathered.scenarios,
        steadiness=gathered.steadiness,
        max_accuracy_drop=loaded.recipe.bench.max_accuracy_drop,
        duration_s=time.perf_counter() - started,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        devices=gathered.records,
    )
    write_results(output_dir / "results.json", document)
    write_atomic(output_dir / "report.md", render(document))
    write_atomic(output_dir / "report.html", render_html(document))
    return RunResult(output_dir, document, failed)


def _gather(
    loaded: LoadedRecipe,
    store: Store,
    asked: Target,
    devices: list[Device],
    build: Callable[..., Built],
    measure: Callable[[list[DeviceJob]], list[DeviceRun]],
    verbose: bool,
) -> _Run:
    """Probe each device, build for each device's target (once per target), then measure
    every reachable device: `build` and `measure` run here or on a cluster."""
    data = run_data(loaded)
    gathered, reached = _Run(), []
    for device in devices:
        probed = probe(device)
        if device.remote is not None and probed.info is None:
            gathered.records.append(record(device, probed, None, None))
            continue
        chosen, reason = device_target(asked, device, probed.info)
        if chosen not in gathered.builds:
            here_auto = asked is Target.AUTO and device.remote is None  # logged as auto → this host
            gathered.builds[chosen] = build(loaded, store, data, asked if here_auto else chosen, verbose, reason)
            if "model" in gathered.builds[chosen].failed:
                gathered.builds[chosen].failed["model"].reraise("model")
        reached.append((device, probed, chosen, reason))
    jobs = [
        _job(loaded, gathered.builds[chosen].artifacts, data, device, probed) for device, probed, chosen, _ in reached
    ]
    for (device, probed, chosen, reason), measured in zip(reached, measure(jobs), strict=True):
        _collect(gathered, device, probed, chosen, reason, measured)
    return gathered


def _job(loaded: LoadedRecipe, artifacts: dict[str, Artifact], data: RunData, device: Device, probed) -> DeviceJob:
    if device.remote is None:
        return DeviceJob(device.name, benchmark, (loaded, artifacts, data.dataset))
    return DeviceJob(device.name, benchmark_remote, (loaded, artifacts, data.dataset, device, probed.info))


def _collect(gathered: _Run, device: Device, probed, chosen: Target, reason: str, run: DeviceRun) -> None:
    """One device's rows, skips and scenarios under its name, and its record."""
    built, measured = gathered.builds[chosen], run.measured
    named = _names(built.artifacts, chosen, gathered.artifacts)
    gathered.rows += [dataclasses.replace(r, device=device.name, variant=named[r.variant]) for r in measured.rows]
    gathered.skipped += [{**s, "variant": named[s["variant"]], "device": device.name} for s in measured.skipped]
    gathered.scenarios += [{**s, "variant": named[s["variant"]], "device": device.name} for s in measured.scenarios]
    gathered.steadiness = gathered.steadiness or measured.steadiness
    if device.remote is None:
        gathered.machine = run.machine
    entry = record(device, probed, chosen, reason)
    entry |= measured.device
    entry["status"] = _status(probed.status, measured.device.get("status", "ok"))
    entry["faults"] = [*probed.faults, *measured.device.get("faults", [])]
    entry["artifacts"] = [named[name] for name in built.artifacts]
    entry["steadiness"] = measured.steadiness.to_json() if measured.steadiness else None
    entry["measured_on"] = run.measured_on
    gathered.records.append(entry)


def _on_ray(
    address: str, loaded: LoadedRecipe, output_dir: Path, asked: Target, devices: list[Device], verbose: bool
) -> tuple[_Run, dict]:
    """Builds and each device's measurement as tasks on the cluster at `address`. Tasks run
    in other folders (and maybe on other machines): every path they get is absolute."""
    from edgeopt.ray_builds import build_on_ray
    from edgeopt.ray_cluster import connect
    from edgeopt.ray_devices import run_on_ray

    loaded = dataclasses.replace(loaded, path=loaded.path.resolve())
    with connect(address, [device.name for device in devices], verbose) as cluster:
        gathered = _gather(loaded, Store(output_dir.resolve()), asked, devices, build_on_ray, run_on_ray, verbose)
    return gathered, cluster.to_json()


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
