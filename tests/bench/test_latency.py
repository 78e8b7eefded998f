import numpy as np
import pytest

from bench.latency import LatencySettings, LatencyStats, measure_latency, median_interval, pooled_median_interval
from runtimes import load
from runtimes.base import SessionOptions


def test_latency_stats_agree_with_numpy():
    samples = np.random.default_rng(0).integers(1_000_000, 5_000_000, 501)
    stats = LatencyStats.from_samples(4, samples)
    ms = samples / 1e6
    assert stats.p50_ms == pytest.approx(np.median(ms))
    assert stats.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert stats.std_ms == pytest.approx(ms.std(ddof=1))
    assert stats.throughput_per_s == pytest.approx(4 * 1000 / ms.mean())


def test_measure_latency_runs_until_count_and_duration_are_both_reached(digits_onnx, digits):
    feeds = [digits.test.take(0, 8)]
    with load("ort-cpu", digits_onnx, SessionOptions(threads=1)) as session:
        by_count = measure_latency(session, feeds, LatencySettings(warmup_runs=2, min_runs=25, min_duration_s=0))
        by_time = measure_latency(session, feeds, LatencySettings(warmup_runs=0, min_runs=1, min_duration_s=0.2))
    assert by_count.runs == 25 and by_count.batch == 8
    assert by_time.runs > 1  # the duration, not the count of 1, ended the loop
    for stats in (by_count, by_time):
        assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms


def test_median_interval_is_the_binomial_order_statistics():
    assert median_interval(np.arange(1.0, 101.0)) == (41.0, 61.0)
    low, high = median_interval(np.array([3.0]))
    assert low == high == 3.0


def test_median_interval_covers_the_true_median_of_skewed_latencies():
    """Exponential (skewed) samples of 60: the interval holds the true median ln 2 in
    about 95% of 400 seeded trials."""
    rng = np.random.default_rng(0)
    covered = [
        low <= np.log(2) <= high for low, high in (median_interval(rng.exponential(size=60)) for _ in range(400))
    ]
    assert 0.92 <= np.mean(covered) <= 0.99


def _spells(rng, rounds=40, calls=200):
    """Rounds on a machine with slow and fast spells: each round's calls share its speed."""
    return [rng.lognormal(np.log(50_000.0), 0.05, calls) * rng.choice([1.0, 1.8]) for _ in range(rounds)]


def test_pooled_median_interval_covers_the_median_across_runs_where_order_statistics_do_not():
    """Runs on a machine whose speed changes by round: the median of a very long run stands
    for the truth. Resampling rounds covers it in about 95% of seeded runs; order statistics
    over the pooled calls, which take every call for an independent draw, mostly miss it."""
    rng = np.random.default_rng(0)
    truth = np.median(np.concatenate(_spells(rng, rounds=20_000, calls=20)))
    runs = [_spells(rng) for _ in range(150)]
    by_rounds = [low <= truth <= high for low, high in (pooled_median_interval(run) for run in runs)]
    by_calls = [low <= truth <= high for low, high in (median_interval(np.concatenate(run)) for run in runs)]
    assert 0.88 <= np.mean(by_rounds) <= 0.99
    assert np.mean(by_calls) < 0.5


def test_pooled_median_interval_holds_the_pooled_median_and_is_reproducible():
    rounds = _spells(np.random.default_rng(1), rounds=12, calls=50)
    low, high = pooled_median_interval(rounds)
    assert low <= np.median(np.concatenate(rounds)) <= high
    assert pooled_median_interval(rounds) == (low, high)  # seeded: a report says the same twice


def test_latency_stats_from_rounds_pool_the_rounds_and_take_the_interval_over_them():
    rounds = _spells(np.random.default_rng(2), rounds=10, calls=30)
    stats = LatencyStats.from_rounds(1, rounds)
    assert stats.runs == 300 and stats.p50_ms == pytest.approx(np.median(np.concatenate(rounds)) / 1e6)
    assert stats.p50_ci_ms == pytest.approx(tuple(bound / 1e6 for bound in pooled_median_interval(rounds)))


class _Recorder:
    """A session that notes which batch each call was given, in order."""

    def __init__(self):
        self.seen: list[int] = []

    def run(self, feeds):
        self.seen.append(int(feeds["x"][0]))
        return {}

    def sync(self) -> None:
        pass


def test_calls_take_the_batches_in_turn_from_where_the_last_round_stopped():
    from bench.latency import time_calls

    feeds = [{"x": np.array([index])} for index in range(3)]
    session = _Recorder()
    first = time_calls(session, feeds, 4, 0.0)
    time_calls(session, feeds, 4, 0.0, first=len(first))
    assert session.seen == [0, 1, 2, 0, 1, 2, 0, 1]


def test_timed_batches_are_spread_over_the_held_out_split():
    from edgeopt.core.data import Split
    from edgeopt.measure import TIMED_BATCHES, feed_arrays
    from edgeopt.recipe import BenchSettings

    split = Split({"x": np.arange(40)}, None)
    arrays = feed_arrays(split, BenchSettings(batch_sizes=[1, 2]))
    assert arrays["b1__x"].tolist() == [0, 5, 10, 15, 20, 25, 30, 35] and TIMED_BATCHES == 8
    assert arrays["b2__x"].tolist() == [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31, 35, 36]
    small = feed_arrays(Split({"x": np.arange(3)}, None), BenchSettings(batch_sizes=[2]))
    assert set(small["b2__x"].tolist()) == {0, 1, 2}, "a split smaller than the batches wraps round"
