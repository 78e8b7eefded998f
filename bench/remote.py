"""One device's whole measurement over SSH: `measure_remote(device, run) -> RemoteOutcome`.

Connect, ship what the device's cache lacks (the measuring code, the artifacts, the
samples; each checked by sha256 on arrival), run the same isolated, interleaved harness
there and bring back its raw answers, validated, to be pooled here like a local run's. A
fault (no connection, a silent device, a crashed worker, a dropped link) discards that
attempt's rounds, which would bias the comparison, and the device is tried once more;
what is left is a recorded fault, never a partial result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.device_client import DeviceClient, RemoteDevice
from bench.device_replies import Info, decode_outputs, one_line, to_collected
from bench.isolated import Collected, Job, ServerSettings
from bench.latency import LatencySettings
from bench.remote_session import run_session
from bench.shipping import Entry, arrays_entry, artifact_entry
from bench.ssh import DeviceFault
from edgeopt.core.artifact import Artifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteRun:
    """One device's measurement: the jobs (their artifact_dir names the artifact here: a key
    of `artifacts`), the samples they are timed on (b<batch>__<input>), and the jobs whose
    outputs over `test` come back."""

    jobs: list[Job]
    artifacts: dict[Path, Artifact]
    feeds: dict[str, np.ndarray]
    settings: LatencySettings
    rounds: int
    overhead: bool = False
    server: ServerSettings | None = None
    test: dict[str, np.ndarray] | None = None
    predict: dict[Job, int] = field(default_factory=dict)  # job → batch size


@dataclass(frozen=True)
class RemoteOutcome:
    collected: Collected | None  # None: the device failed twice, or for good
    predictions: dict[Job, dict[str, np.ndarray]]
    status: str  # ok, retried (ok at the second attempt), or the fault's status
    faults: tuple[str, ...]  # one line per fault, in order
    shipped: int = 0  # artifacts sent this run (the rest were in the device's cache)


@dataclass(frozen=True)
class Probed:
    info: Info | None  # None: the device could not be reached or used
    status: str  # ok, retried, or the fault's status
    faults: tuple[str, ...]


def probe_remote(device: RemoteDevice, attempts: int = 2) -> Probed:
    """What the device is and can run (its cache gets the measuring code on the way)."""
    faults: list[str] = []
    for attempt in range(1, attempts + 1):
        client = DeviceClient(device)
        try:
            info = client.info()
            if info.missing:
                raise DeviceFault(
                    f"device {device.target.name}: its Python {one_line(info.python)} {one_line(info.version)} lacks "
                    f"{', '.join(map(one_line, info.missing))}; it needs Python 3.11+ with numpy, psutil and a "
                    "runtime (onnxruntime); set python: to one that has them",
                    "setup",
                    False,
                )
            return Probed(info, "retried" if faults else "ok", tuple(faults))
        except DeviceFault as fault:
            faults.append(str(fault))
            again = fault.retry and attempt < attempts
            log.warning("%s%s", fault, "; trying it again" if again else "")
            if not again:
                return Probed(None, fault.status, tuple(faults))
        finally:
            client.close()
    raise AssertionError("attempts must be 1 or more")


def measure_remote(
    device: RemoteDevice, run: RemoteRun, on_progress: Callable[[int, int], None] | None = None, attempts: int = 2
) -> RemoteOutcome:
    faults: list[str] = []
    status = "failed"
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(device, run, on_progress, faults)
        except DeviceFault as fault:
            faults.append(str(fault))
            status = fault.status
            again = fault.retry and attempt < attempts
            log.warning("%s%s", fault, "; its rounds are discarded, trying it again" if again else "")
            if not again:
                break
    return RemoteOutcome(None, {}, status, tuple(faults))


def _attempt(device: RemoteDevice, run: RemoteRun, on_progress, faults: list[str]) -> RemoteOutcome:
    client = DeviceClient(device)
    try:
        entries = {directory: artifact_entry(artifact) for directory, artifact in run.artifacts.items()}
        feeds = arrays_entry("feeds.npz", run.feeds)
        test = arrays_entry("test.npz", run.test) if run.test is not None else None
        sent = client.prepare([*entries.values(), feeds, *([test] if test else [])])
        started = time.perf_counter()
        result = run_session(client, _request(device, run, entries, feeds, test), len(run.jobs), on_progress)
        log.debug("device %s: session took %.1f s", device.target.name, time.perf_counter() - started)
    finally:
        client.close()
    collected = to_collected(result, run.jobs, run.rounds, device.target.name)
    predictions = {job: decode_outputs(outputs, device.target.name) for job, outputs in collected.predictions.items()}
    shipped = sum(1 for entry in sent if entry in entries.values())
    return RemoteOutcome(collected, predictions, "retried" if faults else "ok", tuple(faults), shipped)


def _request(
    device: RemoteDevice, run: RemoteRun, entries: dict[Path, Entry], feeds: Entry, test: Entry | None
) -> dict:
    """The session's {"measure": ...}: jobs name their artifact by its entry in the cache."""
    jobs = [
        {
            "variant": job.variant,
            "runtime": job.runtime,
            "threads": job.threads,
            "artifact": entries[job.artifact_dir].id,
            "batches": list(job.batches),
        }
        for job in run.jobs
    ]
    predict = [
        {"job": run.jobs.index(job), "test": [test.id, "test.npz"], "batch_size": size}
        for job, size in run.predict.items()
        if test is not None
    ]
    return {
        "jobs": jobs,
        "feeds": [feeds.id, "feeds.npz"],
        "settings": dataclasses.asdict(run.settings),
        "rounds": run.rounds,
        "overhead": run.overhead,
        "server": None if run.server is None else dataclasses.asdict(run.server),
        "round_timeout_s": device.round_timeout_s,
        "predict": predict,
    }
