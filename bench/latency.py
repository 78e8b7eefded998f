"""The latency harness: warm-up until stable, then timed runs until a minimum count and
duration; the server scenario; and the harness's own overhead.

The harness owns the clock: perf_counter_ns around `run` + `sync` (end to end, copies
included), and on GPU sessions also CUDA events around a launch queued behind a held
stream (device time: the GPU alone); sessions never time themselves.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from runtimes.base import DeviceTimed, Session

QUANTILES = tuple(range(0, 101, 5))  # percentiles kept for distribution plots
WARMUP_WINDOW_S = 0.02  # long enough for a stable median of microsecond calls
# before each later round, after the other processes ran: calls for this long at least (one
# at least; no longer than the round itself), until caches are refilled and the thread pool
# is awake. On this project's 2-core AVX2 machine, after another model ran, a 12-40 ms call
# stayed 1.3-1.9x slow for its first 2-3 calls (40-90 ms); a 100-200 ms call was steady
# from the second
REWARM_RUNS = 1
REWARM_S = 0.1
# the harness-overhead pairs: chunks this long at least, so each chunk's median is steady
OVERHEAD_CHUNK_S = 0.005
OVERHEAD_CHUNK_RUNS = 3
# the inputs a measurement times: several batches taken in turn, call after call, so a model
# whose cost follows its input (a text model trimmed to the real tokens) is timed on the
# data's mix, not on one batch
Feeds = Sequence[dict[str, np.ndarray]]

# device timing: how long queueing one launch behind a held stream may take before the
# watchdog lets the stream go (a launch is queued in well under a millisecond)
GATE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class LatencySettings:
    warmup_runs: int = 10
    min_runs: int = 20
    min_duration_s: float = 1.0
    # warm-up goes on a window at a time until two windows' medians agree within this
    # fraction, or for at most max_warmup_s
    warmup_tolerance: float = 0.05
    max_warmup_s: float = 2.0
    # fresh worker processes per measurement, taking its rounds in turn (bench/isolated.py)
    processes: int = 1


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_per_s: float
    p50_ci_ms: tuple[float, float]  # 95% confidence interval of the median (over rounds, where there are rounds)
    quantiles_ms: tuple[float, ...]  # at the QUANTILES percentiles

    @classmethod
    def from_rounds(cls, batch: int, rounds_ns: list[np.ndarray]) -> LatencyStats:
        """Every round's samples pooled; the median's interval from resampling rounds."""
        stats = cls.from_samples(batch, np.concatenate(rounds_ns))
        low, high = pooled_median_interval(rounds_ns)
        return dataclasses.replace(stats, p50_ci_ms=(low / 1e6, high / 1e6))

    @classmethod
    def from_samples(cls, batch: int, samples_ns: np.ndarray) -> LatencyStats:
        ms = np.asarray(samples_ns).astype(np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            batch=batch,
            runs=len(ms),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
            min_ms=float(ms.min()),
            throughput_per_s=float(batch * 1000.0 / ms.mean()),
            p50_ci_ms=median_interval(ms),
            quantiles_ms=tuple(float(q) for q in np.percentile(ms, QUANTILES)),
        )


def median_interval(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics
    n/2 ∓ z·√n/2 (the binomial count of samples below the median), which assumes
    nothing about the shape of latency distributions (skewed, with outliers)."""
    ordered = np.sort(samples)
    n = len(ordered)
    half_width = z * np.sqrt(n) / 2
    low = max(int(np.floor(n / 2 - half_width)), 0)
    high = min(int(np.ceil(n / 2 + half_width)), n - 1)
    return float(ordered[low]), float(ordered[high])


def pooled_median_interval(rounds: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A 95% confidence interval of the median of several rounds' samples pooled, from
    resampling whole rounds (a cluster bootstrap, percentile interval).

    Calls timed in one round share the machine's spell of the moment (on a shared VM its
    speed swings by up to 2× for tenths of a second), so they are not independent draws:
    order statistics over all of them give an interval far narrower than how far the
    median moves from one run to the next. Resampling rounds keeps each round's calls
    together. Resampled medians are read off a grid of the pooled samples' quantiles at
    0.1% steps of rank, so that every resample costs one matrix product."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(rounds)
    grid = np.quantile(pooled, np.linspace(0.0, 1.0, 1001))
    # float, not int: numpy's integer matrix product does not use BLAS and is 20× slower
    at_or_below = np.stack([np.searchsorted(np.sort(r), grid, side="right") for r in rounds]).astype(np.float64)
    sizes = np.array([len(r) for r in rounds], np.float64)
    picks = rng.multinomial(len(rounds), np.full(len(rounds), 1.0 / len(rounds)), size=resamples).astype(np.float64)
    counts = picks @ at_or_below
    medians = grid[np.argmax(counts >= (picks @ sizes)[:, None] / 2, axis=1)]
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def even_odd_spread(rounds: list[np.ndarray]) -> float:
    """How far the pooled medians of the even and the odd rounds lie apart, relative: how
    far a measurement would move if it were taken again (each half is one such take)."""
    even, odd = (float(np.median(np.concatenate(rounds[half::2]))) for half in (0, 1))
    return abs(odd / even - 1.0)


def warm_up(session: Session, feeds: Feeds, settings: LatencySettings) -> int:
    """Untimed runs, a window at a time (warmup_runs calls and WARMUP_WINDOW_S at least),
    until two windows' medians agree: returns how many runs it took."""
    if settings.warmup_runs == 0:
        return 0
    deadline = time.perf_counter_ns() + int(settings.max_warmup_s * 1e9)
    previous = None
    runs = 0
    while True:  # a window takes every batch once at least
        took = time_calls(session, feeds, max(settings.warmup_runs, len(feeds)), WARMUP_WINDOW_S, runs)
        runs += len(took)
        median = float(np.median(took))
        if previous is not None and abs(median - previous) <= settings.warmup_tolerance * previous:
            return runs
        if time.perf_counter_ns() > deadline:
            return runs
        previous = median


def time_calls(session: Session, feeds: Feeds, min_runs: int, min_duration_s: float, first: int = 0) -> np.ndarray:
    """Nanoseconds per call, until both the count and the duration are reached; the calls
    take the batches in turn, from batch `first` (a caller timing in rounds goes on where
    the last round stopped, so every batch weighs alike)."""
    min_duration_ns = int(min_duration_s * 1e9)
    samples: list[int] = []
    clock = time.perf_counter_ns
    started = clock()
    while len(samples) < min_runs or clock() - started < min_duration_ns:
        batch = feeds[(first + len(samples)) % len(feeds)]
        begin = clock()
        session.run(batch)
        session.sync()
        samples.append(clock() - begin)
    return np.asarray(samples)


class DeviceTimingUnavailable(RuntimeError):
    """The device could not be timed apart from the host (the stream could not be held)."""


def time_device_calls(session: DeviceTimed, feeds: Feeds, min_runs: int, min_duration_s: float) -> np.ndarray:
    """Nanoseconds of device time per call: CUDA events recorded on the session's stream
    around the enqueue, inputs already on the device and outputs left there.

    An event is stamped when the GPU reaches it, that is once all earlier work on the
    stream is done. On an idle stream the start event is reached at once, and the GPU
    then waits while the host pushes the kernels: the interval would hold the host's
    enqueue, all of it for a small model. So the stream is held at a gate while start,
    the launch and stop are queued, and let go only then: the interval is the GPU running
    work already queued. A watchdog lets go of the gate if queueing stalls (a launch queue
    too deep to hold, a synchronizing call inside the launch), so nothing hangs; the
    measurement then stops with DeviceTimingUnavailable. Where there are several batches,
    each is copied to the device before its launch, outside the interval."""
    for batch in feeds:  # the first launch after a shape change does set-up work: not timed
        session.prepare(batch)
        session.enqueue()
        session.sync()
    min_duration_ns = int(min_duration_s * 1e9)
    samples: list[int] = []
    clock = time.perf_counter_ns
    started = clock()
    while len(samples) < min_runs or clock() - started < min_duration_ns:
        if len(feeds) > 1:  # one batch stays on the device from the set-up launch
            session.prepare(feeds[len(samples) % len(feeds)])
        try:
            session.hold()
        except RuntimeError as err:
            raise DeviceTimingUnavailable(str(err)) from err
        watchdog = threading.Timer(GATE_TIMEOUT_S, session.release)
        watchdog.start()
        try:
            start = session.record()
            session.enqueue()
            stop = session.record()
            held = not start.done()
        finally:
            watchdog.cancel()
            session.release()  # never leave the stream held, whatever raised
        stop.wait()
        if not held:
            raise DeviceTimingUnavailable(
                f"the stream ran before the gate opened (it did not hold, or queueing took over {GATE_TIMEOUT_S} s)"
            )
        samples.append(round(stop.ms_since(start) * 1e6))
    return np.asarray(samples)


def measure_latency(session: Session, feeds: Feeds, settings: LatencySettings) -> LatencyStats:
    """Time `session.run` on the batches in turn, one call at a time; batch is read off the feeds."""
    warm_up(session, feeds, settings)
    samples = time_calls(session, feeds, settings.min_runs, settings.min_duration_s)
    return LatencyStats.from_samples(len(next(iter(feeds[0].values()))), samples)


def harness_overhead(session: Session, feeds: Feeds, pairs: int = 40) -> float:
    """The harness's median over a bare timed loop's median, on the same session in
    this process: the median, over `pairs` back-to-back pairs of short chunks (which of
    the two goes first alternates), of each pair's ratio, so drift on the machine (slower
    and faster spells lasting a fraction of a second) cancels within a pair instead of
    landing on one side."""
    chunk = len(time_calls(session, feeds, OVERHEAD_CHUNK_RUNS, OVERHEAD_CHUNK_S))
    ratios = []
    for index in range(pairs):
        if index % 2:
            bare = bare_calls(session, feeds, chunk)
            harness = time_calls(session, feeds, chunk, 0.0)
        else:
            harness = time_calls(session, feeds, chunk, 0.0)
            bare = bare_calls(session, feeds, chunk)
        ratios.append(np.median(harness) / np.median(bare))
    return float(np.median(ratios))


def bare_calls(session: Session, feeds: Feeds, runs: int) -> np.ndarray:
    """The least a timed loop can do: nanoseconds per `run`, nothing else (the batches
    taken in turn, as the harness does)."""
    clock = time.perf_counter_ns
    run = session.run
    count = len(feeds)
    samples = np.empty(runs, np.int64)
    for index in range(runs):
        batch = feeds[index % count]
        begin = clock()
        run(batch)
        samples[index] = clock() - begin
    return samples


def serve(
    session: Session, feeds: Feeds, rate_per_s: float, requests: int, concurrency: int, seed: int = 0
) -> np.ndarray:
    """The server scenario: requests arrive at random (Poisson) at `rate_per_s` and are
    served by `concurrency` threads sharing the session. Returns each request's latency
    from its arrival to its answer, queueing included, in nanoseconds."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_per_s, requests))
    latencies = np.zeros(requests, np.int64)
    clock = time.perf_counter_ns
    lock = threading.Lock()

    def handle(index: int, due: int) -> None:
        session.run(feeds[index % len(feeds)])
        session.sync()
        with lock:
            latencies[index] = clock() - due

    start = clock() + 1_000_000
    with ThreadPoolExecutor(concurrency) as pool:
        futures = []
        for index, arrival in enumerate(arrivals):
            due = start + int(arrival * 1e9)
            while (now := clock()) < due:
                time.sleep(min((due - now) / 1e9, 0.0005))
            futures.append(pool.submit(handle, index, due))
        for future in futures:
            future.result()
    return latencies
