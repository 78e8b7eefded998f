"""The latency harness: warm-up, then timed runs until a minimum count and duration.

The harness owns the clock (perf_counter_ns around `run` + `sync`); sessions never
time themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from runtimes.base import Session


@dataclass(frozen=True)
class LatencySettings:
    warmup_runs: int = 10
    min_runs: int = 20
    min_duration_s: float = 1.0


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
    p50_ci_ms: tuple[float, float]  # 95% confidence interval of the median

    @classmethod
    def from_samples(cls, batch: int, samples_ns: np.ndarray) -> LatencyStats:
        ms = samples_ns.astype(np.float64) / 1e6
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


def measure_latency(session: Session, feeds: dict[str, np.ndarray], settings: LatencySettings) -> LatencyStats:
    """Time `session.run(feeds)` one call at a time; batch is read off the feeds."""
    for _ in range(settings.warmup_runs):
        session.run(feeds)
        session.sync()
    min_duration_ns = int(settings.min_duration_s * 1e9)
    samples: list[int] = []
    clock = time.perf_counter_ns
    started = clock()
    while len(samples) < settings.min_runs or clock() - started < min_duration_ns:
        begin = clock()
        session.run(feeds)
        session.sync()
        samples.append(clock() - begin)
    batch = len(next(iter(feeds.values())))
    return LatencyStats.from_samples(batch, np.asarray(samples))
