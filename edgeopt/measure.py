"""The measurement plan of a run on this machine: which artifact runs on which runtime, its
accuracy on the held-out test split, and its latency in isolated, interleaved worker
processes. A device over SSH plans the same way (edgeopt/device_measure.py).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.accuracy import predict, score
from bench.isolated import SERVER_MIN_MS, Benchmark, Job, ServerSettings, run_isolated
from bench.latency import LatencySettings
from bench.results import Row
from bench.steadiness import Steadiness
from edgeopt import log as progress_log
from edgeopt.core.artifact import Artifact
from edgeopt.core.data import Dataset, Split
from edgeopt.core.errors import RuntimeUnavailable
from edgeopt.recipe import BenchSettings, LoadedRecipe
from runtimes import RUNTIMES, load, probe
from runtimes.base import Availability, SessionOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    rows: list[Row]
    skipped: list[dict]  # {"variant", "runtime", "reason"}: what was not measured, and why
    scenarios: list[dict]
    steadiness: Steadiness | None
    device: dict = field(default_factory=dict)  # how the device's measurement went: status, faults


def benchmark(loaded: LoadedRecipe, artifacts: dict[str, Artifact], dataset: Dataset) -> Measured:
    """Every artifact on every runtime of the recipe that runs its format, measured in the
    order the recipe lists them (the accuracy reference, `model`, first)."""
    settings = loaded.recipe.bench
    plan, skipped = plan_pairs(loaded, artifacts, probe)
    accuracy = _accuracy(plan, artifacts, dataset, settings, skipped)
    # a session that did not start on its runtime (a GPU provider that fell over) is not measured
    jobs = make_jobs([pair for pair in plan if pair in accuracy], artifacts, settings, skipped)
    server = server_settings(settings)
    timed = _time(jobs, dataset.test, settings, server)
    return to_measured(timed, jobs, artifacts, accuracy, settings, skipped)


def to_measured(timed: Benchmark, jobs: list[Job], artifacts: dict, accuracy: dict, settings, skipped) -> Measured:
    """A benchmark's rows in the recipe's order, its server scenarios, and what was skipped."""
    rows = [
        make_row(job, batch, measurement, artifacts[job.variant], accuracy[(job.variant, job.runtime)], settings)
        for (job, batch), measurement in timed.measured.items()
    ]
    rows.sort(key=lambda r: (r.batch, r.threads, list(artifacts).index(r.variant), r.runtime))
    server = server_settings(settings)
    for job in jobs:
        if server and 1 in job.batches and job not in timed.served:
            reason = f"server scenario, {job.threads} threads: batch-1 latency under {SERVER_MIN_MS} ms, too short to tell the model from the request dispatch"
            skipped.append({"variant": job.variant, "runtime": job.runtime, "reason": reason})
    scenarios = [_scenario(job, served, server) for job, served in timed.served.items()]
    return Measured(rows, skipped, scenarios, timed.steadiness)


def server_settings(settings: BenchSettings) -> ServerSettings | None:
    return ServerSettings(**settings.server.model_dump()) if settings.server else None


def plan_pairs(
    loaded: LoadedRecipe, artifacts: dict[str, Artifact], availability: Callable[[str], Availability]
) -> tuple[list[tuple[str, str]], list[dict]]:
    """(variant, runtime) pairs to measure, and what is skipped with its reason;
    `availability(runtime)` says whether the measuring machine has the runtime."""
    plan, skipped, warned = [], [], set()
    for name in ["model", *loaded.recipe.variants]:
        artifact = artifacts.get(name)
        if artifact is None:  # not built on this machine
            continue
        variant = loaded.recipe.variants.get(name)
        chosen = loaded.recipe.runtimes if variant is None or variant.runtimes is None else variant.runtimes
        for runtime_id in loaded.recipe.runtimes:
            if runtime_id not in chosen or not RUNTIMES[runtime_id].runs(artifact.format):
                continue
            if runtime_id in artifact.not_for:
                skipped.append({"variant": name, "runtime": runtime_id, "reason": artifact.not_for[runtime_id]})
                continue
            usable = availability(runtime_id)
            if not usable.ok:
                skipped.append({"variant": name, "runtime": runtime_id, "reason": usable.reason})
                if runtime_id not in warned:
                    log.warning("not measured on %s: %s", runtime_id, usable.reason)
                    warned.add(runtime_id)
                continue
            plan.append((name, runtime_id))
    return plan, skipped


def make_jobs(plan, artifacts: dict[str, Artifact], settings: BenchSettings, skipped: list[dict]) -> list[Job]:
    """One worker per artifact × runtime × thread count, timing the batches its model takes."""
    jobs = []
    for name, runtime_id in plan:
        fixed = artifacts[name].io.inputs[0].shape[0]
        batches = tuple(b for b in settings.batch_sizes if not isinstance(fixed, int) or b == fixed)
        for batch in sorted(set(settings.batch_sizes) - set(batches)):
            reason = f"batch {batch}: the model's batch dim is fixed at {fixed}"
            skipped.append({"variant": name, "runtime": runtime_id, "reason": reason})
        # a GPU runtime's speed does not follow the CPU thread count: one setting is enough
        thread_counts = settings.threads if RUNTIMES[runtime_id].device == "cpu" else [max(settings.threads)]
        jobs += [Job(name, runtime_id, threads, artifacts[name].directory, batches) for threads in thread_counts]
    return jobs


def _time(jobs: list[Job], test: Split, settings: BenchSettings, server: ServerSettings | None) -> Benchmark:
    log.info("bench: %d isolated processes × %d interleaved rounds", len(jobs) * settings.processes, settings.rounds)
    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-") as scratch:
        feeds = Path(scratch) / "feeds.npz"
        np.savez(feeds, **feed_arrays(test, settings))
        batches = len(set(settings.batch_sizes))
        with progress_log.progress("benchmarking", batches * settings.rounds) as advance:
            return run_isolated(
                jobs, feeds, latency_settings(settings), settings.rounds, settings.harness_overhead, server, advance
            )


def latency_settings(settings: BenchSettings) -> LatencySettings:
    return LatencySettings(
        settings.warmup_runs, settings.min_runs, settings.min_duration_s, processes=settings.processes
    )


# batches timed per batch size, taken in turn: spread over the held-out split, so a model
# whose cost follows its input is timed on the data's mix (text: short and long passages)
TIMED_BATCHES = 8


def feed_arrays(test: Split, settings: BenchSettings) -> dict[str, np.ndarray]:
    """What every round times: b<batch>__<input>, TIMED_BATCHES batches of held-out samples
    one after another, the i-th starting i/TIMED_BATCHES of the way through the split."""
    return {f"b{b}__{k}": v for b in settings.batch_sizes for k, v in _batches(test, b).items()}


def make_row(job: Job, batch: int, measurement, artifact: Artifact, accuracy, settings: BenchSettings) -> Row:
    return Row(
        variant=job.variant,
        runtime=job.runtime,
        precision=RUNTIMES[job.runtime].row_precision(artifact.precision),
        batch=batch,
        threads=job.threads,
        load_s=measurement.load_s,
        latency=measurement.latency,
        accuracy=accuracy,
        round_p50_ms=measurement.round_p50_ms,
        spread=measurement.spread,
        stable=measurement.spread <= settings.stability_threshold,
        baseline_rss_mb=measurement.baseline_rss_mb,
        peak_rss_mb=measurement.peak_rss_mb,
        warmup_runs=measurement.warmup_runs,
        harness_overhead=measurement.harness_overhead,
        device_latency=measurement.device_latency,
    )


def _scenario(job: Job, served, server: ServerSettings) -> dict:
    return {
        "scenario": "server",
        "variant": job.variant,
        "runtime": job.runtime,
        "threads": job.threads,
        "load": server.load,
        "concurrency": server.concurrency,
        "rate_per_s": served.rate_per_s,
        "requests": served.latency.runs,
        "p50_ms": served.latency.p50_ms,
        "p90_ms": served.latency.p90_ms,
        "p99_ms": served.latency.p99_ms,
    }


def _accuracy(plan, artifacts: dict[str, Artifact], dataset: Dataset, settings: BenchSettings, skipped) -> dict:
    """Each artifact × runtime on the whole test split; agreement against the first one.
    A session its runtime cannot start is left out, with its reason in `skipped`. The same
    file under another name (a twin) is scored once."""
    results = {}
    reference = None
    done: dict[tuple[str, str], dict] = {}
    started = time.perf_counter()
    with progress_log.progress("scoring accuracy", len(plan)) as advance:
        for name, runtime_id in plan:
            twin = (artifacts[name].sha256 or name, runtime_id)
            try:
                outputs = done.get(twin) or predict_here(artifacts[name], runtime_id, dataset.test, settings)
            except RuntimeUnavailable as err:
                reason = str(err).removeprefix(f"{runtime_id}: ")
                skipped.append({"variant": name, "runtime": runtime_id, "reason": reason})
                log.warning("%s not measured on %s: %s", name, runtime_id, reason)
                continue
            finally:
                advance()
            done[twin] = outputs
            if reference is None:
                reference = outputs
            results[(name, runtime_id)] = score(outputs, dataset.test.labels, reference, dataset.test.queries)
    samples = len(next(iter(dataset.test.inputs.values()))) if dataset.test.inputs else 0
    log.info("accuracy: %d pairs on %d samples in %.0f s", len(done), samples, time.perf_counter() - started)
    return results


def accuracy_batch_size(artifact: Artifact, settings: BenchSettings) -> int:
    fixed = artifact.io.inputs[0].shape[0]
    return fixed if isinstance(fixed, int) else settings.accuracy_batch_size


def predict_here(artifact: Artifact, runtime_id: str, test: Split, settings: BenchSettings) -> dict:
    with load(runtime_id, artifact, SessionOptions(threads=max(settings.threads))) as session:
        return predict(session, test, accuracy_batch_size(artifact, settings))


def _batches(split: Split, size: int) -> dict:
    """TIMED_BATCHES runs of `size` consecutive samples, spread evenly over the split
    (wrapping round a split smaller than a batch)."""
    starts = np.arange(TIMED_BATCHES) * len(split) // TIMED_BATCHES
    index = (starts[:, None] + np.arange(size)).ravel() % len(split)
    return {name: np.ascontiguousarray(array[index]) for name, array in split.inputs.items()}
