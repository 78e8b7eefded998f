"""Measurements each in a process of its own (bench/worker.py), in interleaved rounds.

One worker process per (artifact, runtime, threads) loads its session once and waits.
Then, batch size by batch size, every worker warms up in turn, untimed, and `rounds`
rounds each time every worker for a slice of the minimum count and duration, in the
plan's order rotated by the round: slow drift on a shared machine (a neighbour's load,
clock changes) lands on every artifact alike rather than on whichever ran last. Rounds
should be short beside the machine's slow and fast spells (on a shared VM they last a
fraction of a second), so that every artifact sees the same mix of them. A measurement
pools its rounds' samples; its spread, how far the pooled medians of its even and its odd
rounds lie apart, flags measurements that would not repeat. A probe process times a fixed
workload in every round as well (bench/steadiness.py): how steady the machine itself ran.

`collect` gathers the workers' raw answers and `pool` turns them into measurements, so a
device over SSH runs `collect` there (bench/device_session.py) and its answers are pooled
here by the same code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.latency import LatencySettings, LatencyStats, even_odd_spread
from bench.lines import LineReader, LineTimeout
from bench.steadiness import Steadiness
from edgeopt.core.errors import DataError

# a worker's answer: samples of one round, or a device's outputs over its test split
MAX_ANSWER_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Job:
    variant: str
    runtime: str
    threads: int
    artifact_dir: Path
    batches: tuple[int, ...]


@dataclass(frozen=True)
class ServerSettings:
    load: float  # fraction of the single-stream capacity (1 / p50 at batch 1)
    requests: int
    concurrency: int


@dataclass(frozen=True)
class Measured:
    """One job × batch, pooled over its rounds."""

    latency: LatencyStats
    round_p50_ms: tuple[float, ...]
    spread: float  # the even rounds' pooled median against the odd rounds', relative
    load_s: float  # cold start: the fresh process loading the artifact
    baseline_rss_mb: float  # the process before it loaded the artifact
    peak_rss_mb: float
    warmup_runs: int
    harness_overhead: float | None
    device_latency: LatencyStats | None = None  # GPU: the enqueue alone, between CUDA events


@dataclass(frozen=True)
class ServerMeasured:
    rate_per_s: float
    latency: LatencyStats


# below this batch-1 latency a Python-threaded server measures its own request dispatch
# (tens of microseconds per request), not the model
SERVER_MIN_MS = 0.5


class WorkerHung(RuntimeError):
    """A worker gave no answer within its deadline (it was killed)."""


class WorkerExited(RuntimeError):
    """A worker ended without answering (it crashed, or was killed)."""


class WorkerProcess:
    """A `python -m bench.worker` process, asked one request at a time. With `timeout_s`
    an answer that does not come in time kills the worker and raises WorkerHung."""

    def __init__(self, name: str, timeout_s: float | None = None):
        self.name = name
        self.timeout_s = timeout_s
        # a file, not a pipe: a full pipe would stall the worker; closed by close()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
        )
        self._answers = LineReader(self._process.stdout, MAX_ANSWER_BYTES)

    def ask(self, verb: str, request: dict) -> dict:
        try:
            self._process.stdin.write((json.dumps({verb: request}) + "\n").encode())
            line = self._answers.readline(self.timeout_s)
        except BrokenPipeError:
            line = b""
        except LineTimeout as err:
            self.close()
            raise WorkerHung(f"benchmark worker for {self.name}: {verb}: {err}; it was stopped") from err
        if not line:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.close()
            self._stderr.seek(0)
            tail = (self._stderr.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise WorkerExited(f"benchmark worker for {self.name} exited {self._process.returncode}: {tail}")
        answer = json.loads(line)
        if "error" in answer:
            raise (DataError if answer["bad_input"] else RuntimeError)(f"{self.name}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._answers.close()
        self._stderr.close()


class Worker(WorkerProcess):
    """A worker holding one job's session."""

    def __init__(self, job: Job, feeds: Path, settings: LatencySettings, timeout_s: float | None = None):
        super().__init__(f"{job.variant} on {job.runtime}, {job.threads} threads", timeout_s)
        self.job = job
        request = {
            "artifact_dir": str(job.artifact_dir),
            "runtime": job.runtime,
            "threads": job.threads,
            "feeds": str(feeds),
            "settings": dataclasses.asdict(settings),
        }
        self.loaded = self.ask("load", request)


@dataclass(frozen=True)
class Benchmark:
    measured: dict[tuple[Job, int], Measured]
    served: dict[Job, ServerMeasured]
    steadiness: Steadiness | None  # the machine's own speed over the same rounds; None without jobs


@dataclass(frozen=True)
class Collected:
    """The workers' raw answers, before pooling: what a device sends back."""

    rounds: dict[tuple[Job, int], list[dict]]  # each round's "time" answer
    processes: dict[Job, dict]  # "load" and "finish" answers merged: load_s, baseline and peak RSS
    overheads: dict[tuple[Job, int], float] = field(default_factory=dict)
    served: dict[Job, tuple[float, list[int]]] = field(default_factory=dict)  # arrival rate, latencies
    steady: list[list[int]] = field(default_factory=list)  # the probe's slices
    predictions: dict[Job, list[dict]] = field(default_factory=dict)  # the "predict" answer's outputs


def run_isolated(
    jobs: list[Job],
    feeds: Path,
    settings: LatencySettings,
    rounds: int,
    overhead: bool,
    server: ServerSettings | None,
    on_done=None,
) -> Benchmark:
    return pool(collect(jobs, feeds, settings, rounds, overhead, server, on_done))


def collect(
    jobs: list[Job],
    feeds: Path,
    settings: LatencySettings,
    rounds: int,
    overhead: bool,
    server: ServerSettings | None,
    on_done=None,
    timeout_s: float | None = None,
    predict: dict[Job, tuple[Path, int]] | None = None,
) -> Collected:
    """Every job's rounds, interleaved; `on_done()` after each round. `timeout_s` bounds
    each answer; `predict` asks a job's worker for its outputs over a test .npz at a
    batch size, after the timing."""
    if rounds < 2:
        raise ValueError("rounds: 2 at least, to tell how far a measurement repeats")
    if not 1 <= settings.processes <= rounds:
        raise ValueError(f"processes: 1 to rounds ({rounds}), so that each one times a round")
    spawned: list[Worker] = []
    probe: WorkerProcess | None = None
    try:
        for job in jobs:  # one at a time: the load time is a cold start, not a contended one
            for _ in range(settings.processes):
                spawned.append(Worker(job, feeds, settings, timeout_s))
        probe = WorkerProcess("the steadiness probe", timeout_s)
        shares = {job: [w for w in spawned if w.job == job] for job in jobs}
        samples, steady = _rounds(shares, probe, settings, rounds, on_done)
        workers = [share[0] for share in shares.values()]  # the first process of each job does the rest
        # at each job's smallest batch: its fastest call, where the harness's fixed cost per
        # call weighs most (slower calls' ratios are 1 give or take the machine's noise)
        overheads = {
            (w.job, min(w.job.batches)): w.ask("overhead", {"batch": min(w.job.batches)})["ratio"]
            for w in workers
            if overhead
        }
        served = {w.job: _serve(w, samples[(w.job, 1)], server) for w in workers if server and 1 in w.job.batches}
        predictions = {}
        for worker in workers:
            if worker.job in (predict or {}):
                test, size = predict[worker.job]
                predictions[worker.job] = worker.ask("predict", {"test": str(test), "batch_size": size})["outputs"]
        processes = {
            job: _process([{**w.loaded, **w.ask("finish", {})} for w in share]) for job, share in shares.items()
        }
    finally:
        for process in [*spawned, probe]:
            if process is not None:
                process.close()
    return Collected(
        samples, processes, overheads, {j: r for j, r in served.items() if r is not None}, steady, predictions
    )


def _rounds(shares: dict[Job, list[Worker]], probe: WorkerProcess, settings: LatencySettings, rounds: int, on_done):
    """Round r of a job is timed by its process r mod N: a process's own bias (its memory
    layout) lands on 1/N of the rounds, and on even and odd rounds alike only where N is
    odd, so with N = 2 the spread between even and odd rounds shows it."""
    samples: dict[tuple[Job, int], list[dict]] = {}
    steady: list[list[int]] = []
    per_round = {"min_runs": math.ceil(settings.min_runs / rounds), "min_duration_s": settings.min_duration_s / rounds}
    for batch in sorted({b for job in shares for b in job.batches}):
        # every process warms up until stable in a turn of its own before the timed rounds:
        # timed right after its warm-up, a process's first round ran 3 to 11% slower than its
        # later ones (every job of recipes/bench.yaml), enough to move a pooled median by 4%
        warmed = {
            worker: worker.ask("warm", {"batch": batch})["warmup_runs"]
            for share in shares.values()
            for worker in share
            if batch in worker.job.batches
        }
        for round_index in range(rounds):
            # the probe takes its turn among the workers, so it sees the machine as they do
            turns = [*(share[round_index % len(share)] for share in shares.values()), probe]
            shift = round_index % len(turns)
            for worker in turns[shift:] + turns[:shift]:
                if worker is probe:
                    steady.append(probe.ask("steady", per_round)["samples_ns"])
                elif batch in worker.job.batches:
                    answer = worker.ask("time", {"batch": batch, **per_round})
                    answer["warmup_runs"] += warmed.pop(worker, 0)  # its warm-up, counted with its first round
                    samples.setdefault((worker.job, batch), []).append(answer)
            if on_done is not None:
                on_done()
    return samples, steady


def _process(answers: list[dict]) -> dict:
    """A job's processes in one record: the median cold start and baseline, the highest peak."""
    return {
        "load_s": float(np.median([a["load_s"] for a in answers])),
        "baseline_rss_bytes": int(np.median([a["baseline_rss_bytes"] for a in answers])),
        "peak_rss_bytes": max(a["peak_rss_bytes"] for a in answers),
    }


def rounds_total(jobs: list[Job], rounds: int) -> int:
    """How many times `collect` calls on_done."""
    return len({b for job in jobs for b in job.batches}) * rounds


def pool(collected: Collected) -> Benchmark:
    measured = {
        key: _pool(key[1], answers, collected.processes[key[0]], collected.overheads.get(key))
        for key, answers in collected.rounds.items()
    }
    served = {
        job: ServerMeasured(rate, LatencyStats.from_samples(1, np.asarray(latencies)))
        for job, (rate, latencies) in collected.served.items()
    }
    steady = [np.asarray(s) for s in collected.steady]
    return Benchmark(measured, served, Steadiness.from_slices(steady) if steady else None)


def _serve(worker: Worker, timed: list[dict], server: ServerSettings) -> tuple[float, list[int]] | None:
    p50_ms = float(np.median(np.concatenate([t["samples_ns"] for t in timed]))) / 1e6
    if p50_ms < SERVER_MIN_MS:
        return None
    rate = server.load * 1000.0 / p50_ms
    answer = worker.ask("serve", {"rate_per_s": rate, "requests": server.requests, "concurrency": server.concurrency})
    return rate, answer["samples_ns"]


def _pool(batch: int, rounds: list[dict], process: dict, overhead: float | None) -> Measured:
    medians = tuple(float(np.median(r["samples_ns"])) / 1e6 for r in rounds)
    return Measured(
        latency=LatencyStats.from_rounds(batch, [np.asarray(r["samples_ns"]) for r in rounds]),
        round_p50_ms=medians,
        spread=even_odd_spread([np.asarray(r["samples_ns"]) for r in rounds]),
        load_s=process["load_s"],
        baseline_rss_mb=process["baseline_rss_bytes"] / 2**20,
        peak_rss_mb=process["peak_rss_bytes"] / 2**20,
        warmup_runs=sum(r["warmup_runs"] for r in rounds),
        harness_overhead=overhead,
        device_latency=LatencyStats.from_rounds(batch, [np.asarray(r["device_samples_ns"]) for r in rounds])
        if all("device_samples_ns" in r for r in rounds)
        else None,
    )
