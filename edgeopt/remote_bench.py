"""`edgeopt bench ARTIFACT... --device NAME`: ONNX files or artifacts timed on a device over
SSH with seeded random inputs, in the isolated, interleaved harness there."""

from __future__ import annotations

from pathlib import Path

from bench.isolated import Job, pool
from bench.latency import LatencySettings
from bench.remote import RemoteRun, measure_remote
from bench.ssh import DeviceFault
from edgeopt.commands import open_artifact, random_feeds
from edgeopt.core.errors import RecipeError, RuntimeUnavailable
from edgeopt.devices import Device, probe
from runtimes import RUNTIMES

ROUNDS = 4


def bench_on_device(
    device: Device,
    paths: list[Path],
    runtime_ids: list[str],
    batches: list[int],
    threads: list[int],
    dims: dict[str, int],
    min_duration_s: float,
) -> list[tuple]:
    """(artifact, runtime, threads, LatencyStats) per measurement, as `edgeopt bench` prints them."""
    for value, flag in [(b, "--batch") for b in batches] + [(t, "--threads") for t in threads]:
        if value < 1:
            raise RecipeError(f"{flag} {value}: must be a positive number")
    unknown = [r for r in runtime_ids if r not in RUNTIMES]
    if unknown:
        raise RuntimeUnavailable(f"runtime '{unknown[0]}' is not one of {', '.join(RUNTIMES)}")
    artifacts = {path: open_artifact(path) for path in paths}
    probed = probe(device)
    if probed.info is None:
        raise DeviceFault(probed.faults[-1], probed.status, False)
    available = probed.info.runtimes or {}
    groups: dict[tuple, list[Job]] = {}
    for path, artifact in artifacts.items():
        usable = [r for r in runtime_ids if RUNTIMES[r].runs(artifact.format)]
        if not usable:
            raise RuntimeUnavailable(
                f"{path}: none of {', '.join(runtime_ids)} runs a {artifact.format} artifact there"
            )
        missing = [r for r in usable if not (r in available and available[r].ok)]
        if missing:
            reason = available[missing[0]].reason if missing[0] in available else "unknown there"
            raise RuntimeUnavailable(f"device {device.name}: {missing[0]}: {reason}")
        fixed = artifact.io.inputs[0].shape[0]
        sizes = tuple(b for b in batches if not isinstance(fixed, int) or b == fixed) or (fixed,)
        groups.setdefault(artifact.io.inputs, [])
        groups[artifact.io.inputs] += [Job(path.name, r, t, path, sizes) for r in usable for t in threads]
    rows = []
    for inputs, jobs in groups.items():
        feeds = {}
        for batch in {b for job in jobs for b in job.batches}:
            batch_dim = inputs[0].shape[0]
            sizes = {**dims, **({batch_dim: batch} if isinstance(batch_dim, str) else {})}
            feeds |= {f"b{batch}__{name}": array for name, array in random_feeds(inputs, sizes).items()}
        run = RemoteRun(jobs, {job.artifact_dir: artifacts[job.artifact_dir] for job in jobs}, feeds, LatencySettings(min_duration_s=min_duration_s), ROUNDS)  # fmt: skip
        outcome = measure_remote(device.remote, run)
        if outcome.collected is None:
            raise DeviceFault(outcome.faults[-1], outcome.status, False)
        measured = pool(outcome.collected).measured
        rows += [(job.variant, job.runtime, job.threads, stats.latency) for (job, _), stats in measured.items()]
    return rows
