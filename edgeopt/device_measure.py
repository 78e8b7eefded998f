"""The measurement plan of a run on a device over SSH: the same plan as on this machine
(edgeopt/measure.py), with the device's runtimes, timed and run there, scored here.

`benchmark_remote(loaded, artifacts, dataset, device, info) -> Measured` is the whole of one
device's measurement: its inputs are data, its output rows and skips, so it can run as a
task of its own. The artifacts, the timed samples and the test inputs go to the device;
its outputs over the test split come back and are scored here against the source model's
outputs on this machine, so agreement means the same thing on every device.
"""

from __future__ import annotations

import logging

from bench.accuracy import score
from bench.device_replies import Info
from bench.harness_archive import harness_archive
from bench.isolated import pool
from bench.remote import RemoteOutcome, RemoteRun, measure_remote
from edgeopt import log as progress_log
from edgeopt.core.artifact import Artifact
from edgeopt.core.data import Dataset
from edgeopt.devices import Device
from edgeopt.measure import (
    Measured,
    accuracy_batch_size,
    feed_arrays,
    latency_settings,
    make_jobs,
    plan_pairs,
    predict_here,
    server_settings,
    to_measured,
)
from edgeopt.recipe import LoadedRecipe
from runtimes import RUNTIMES, probe
from runtimes.base import Availability

log = logging.getLogger(__name__)


def benchmark_remote(
    loaded: LoadedRecipe, artifacts: dict[str, Artifact], dataset: Dataset, device: Device, info: Info
) -> Measured:
    """Every artifact on every runtime the device has, as `benchmark` plans them here, at the
    device's own thread counts; a device that failed twice gives no rows, a skip per pair
    with its status, and its faults in `Measured.device`."""
    settings = loaded.recipe.bench
    if device.threads:
        settings = settings.model_copy(update={"threads": list(device.threads)})
    plan, skipped = plan_pairs(loaded, artifacts, _availability(device, info))
    jobs = make_jobs(plan, artifacts, settings, skipped)
    if not jobs:
        return Measured([], skipped, [], None, {"status": "ok", "faults": []})
    predict = {}
    for name, runtime_id in plan:  # outputs from each pair's widest job, the thread count accuracy uses here
        job = max((j for j in jobs if (j.variant, j.runtime) == (name, runtime_id)), key=lambda j: j.threads)
        predict[job] = accuracy_batch_size(artifacts[name], settings)
    run = RemoteRun(
        jobs=jobs,
        artifacts={artifacts[name].directory: artifacts[name] for name, _ in plan},
        feeds=feed_arrays(dataset.test, settings),
        settings=latency_settings(settings),
        rounds=settings.rounds,
        overhead=settings.harness_overhead,
        server=server_settings(settings),
        test=dataset.test.inputs,
        predict=predict,
    )
    log.info("bench on %s (%s): %d isolated processes × %d interleaved rounds", device.name, device.where, len(jobs) * settings.processes, settings.rounds)  # fmt: skip
    total = len({b for job in jobs for b in job.batches}) * settings.rounds
    with progress_log.progress(f"benchmarking on {device.name}", total) as advance:
        outcome = measure_remote(device.remote, run, lambda done, of: advance())
    record = {
        "status": outcome.status,
        "faults": list(outcome.faults),
        "shipped_artifacts": outcome.shipped,
        "code_sha256": harness_archive().sha256,  # the measuring code it ran: this edgeopt's, byte for byte
    }
    if outcome.collected is None:
        for name, runtime_id in plan:
            reason = f"not measured: {outcome.faults[-1]}"
            skipped.append({"variant": name, "runtime": runtime_id, "status": outcome.status, "reason": reason})
        return Measured([], skipped, [], None, record)
    accuracy = _accuracy(loaded, artifacts, dataset, outcome, settings)
    measured = to_measured(pool(outcome.collected), jobs, artifacts, accuracy, settings, skipped)
    return Measured(measured.rows, measured.skipped, measured.scenarios, measured.steadiness, record)


def _availability(device: Device, info: Info):
    """The device's runtimes, as a local probe would say (those of formats measured on the
    host only say so: bench/device_info.py)."""
    runtimes = info.runtimes or {}

    def availability(runtime_id: str) -> Availability:
        found = runtimes.get(runtime_id)
        if found is None:
            return Availability(False, f"on device {device.name}: its edgeopt does not know {runtime_id}")
        return Availability(found.ok, f"on device {device.name}: {found.reason}")

    return availability


def _accuracy(loaded, artifacts, dataset: Dataset, outcome: RemoteOutcome, settings) -> dict:
    """The device's outputs scored against the source model's here (the first artifact
    this machine can run, in the recipe's order, as in a local run)."""
    test = dataset.test
    reference = None
    for name in ["model", *loaded.recipe.variants]:
        artifact = artifacts.get(name)
        usable = [
            r
            for r in loaded.recipe.runtimes
            if artifact is not None and RUNTIMES[r].runs(artifact.format) and r not in artifact.not_for
        ]
        runtime_id = next((r for r in usable if probe(r).ok), None)
        if runtime_id is not None:
            reference = predict_here(artifact, runtime_id, test, settings)
            break
    return {
        (job.variant, job.runtime): score(outputs, test.labels, reference, test.queries)
        for job, outputs in outcome.predictions.items()
    }
