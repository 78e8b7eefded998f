"""Measurements in worker processes: rounds pooled, the server scenario, worker errors."""

import dataclasses
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.isolated import Job, ServerSettings, run_isolated
from bench.latency import LatencySettings, harness_overhead, serve, warm_up
from edgeopt.core.errors import DataError
from runtimes import load
from runtimes.base import SessionOptions

QUICK = LatencySettings(warmup_runs=2, min_runs=5, min_duration_s=0.0)


@pytest.fixture
def feeds(tmp_path, digits):
    path = tmp_path / "feeds.npz"
    # batch 4 holds two batches, one after the other, which the rounds take in turn
    np.savez(path, b1__image=digits.test.inputs["image"][:1], b4__image=digits.test.inputs["image"][:8])
    return path


def test_rounds_interleave_processes_and_are_pooled(digits_onnx, feeds):
    jobs = [
        Job("onnx", "ort-cpu", 1, digits_onnx.directory, (1, 4)),
        Job("again", "ort-cpu", 2, digits_onnx.directory, (1,)),
    ]
    benchmark = run_isolated(jobs, feeds, QUICK, rounds=3, overhead=True, server=None)
    measured = benchmark.measured
    assert set(measured) == {(jobs[0], 1), (jobs[0], 4), (jobs[1], 1)} and benchmark.served == {}
    one = measured[(jobs[0], 1)]
    assert len(one.round_p50_ms) == 3 and one.latency.runs >= 6 and one.latency.batch == 1
    assert one.spread >= 0 and one.warmup_runs >= 2 and one.load_s > 0
    assert one.peak_rss_mb > one.baseline_rss_mb > 0
    assert one.harness_overhead > 0  # at the job's smallest batch, its fastest call, only
    assert measured[(jobs[0], 4)].harness_overhead is None and measured[(jobs[1], 1)].harness_overhead > 0
    steadiness = benchmark.steadiness  # the probe took a turn in each round of both batch sizes
    assert steadiness.slices == 6 and steadiness.slice_p90_us >= steadiness.slice_p10_us > 0


def test_a_measurement_takes_its_rounds_from_several_fresh_processes_in_turn(digits_onnx, feeds, monkeypatch):
    import bench.isolated

    asked = []

    class Recorded(bench.isolated.Worker):
        def ask(self, verb, request):
            asked.append((self._process.pid, verb, request))
            return super().ask(verb, request)

    monkeypatch.setattr(bench.isolated, "Worker", Recorded)
    job = Job("onnx", "ort-cpu", 1, digits_onnx.directory, (1, 4))
    settings = dataclasses.replace(QUICK, processes=2)
    benchmark = run_isolated([job], feeds, settings, rounds=4, overhead=False, server=None)
    turns = [(pid, verb, request["batch"]) for pid, verb, request in asked if verb in ("warm", "time")]
    first, second = sorted({pid for pid, _, _ in turns}, key=[pid for pid, _, _ in turns].index)
    for batch in (1, 4):  # both warm up untimed, then rounds 0 and 2 in one process, 1 and 3 in the other
        assert [t for t in turns if t[2] == batch] == [
            (first, "warm", batch), (second, "warm", batch),
            (first, "time", batch), (second, "time", batch), (first, "time", batch), (second, "time", batch),
        ]  # fmt: skip
    assert {pid for pid, verb, _ in asked if verb == "finish"} == {first, second}
    measured = benchmark.measured[(job, 1)]
    assert len(measured.round_p50_ms) == 4 and measured.load_s > 0 and measured.peak_rss_mb > 0
    with pytest.raises(ValueError, match="processes"):
        run_isolated([job], feeds, dataclasses.replace(QUICK, processes=3), rounds=2, overhead=False, server=None)


def test_the_server_scenario_runs_where_batch_1_is_slow_enough(tmp_path, tmp_path_factory, digits):
    from edgeopt.core.artifact import TensorSpec
    from tests.conftest import build_factory

    inputs = (TensorSpec("image", ("batch", 1, 8, 8), "float32"),)
    wide = build_factory(tmp_path_factory, "factories:wide_mlp", inputs, digits.probe())
    path = tmp_path / "feeds.npz"
    np.savez(path, b1__image=digits.test.inputs["image"][:1])
    job = Job("wide", "torch-cpu", 1, wide.directory, (1,))
    server = ServerSettings(load=0.5, requests=40, concurrency=2)
    benchmark = run_isolated([job], path, QUICK, rounds=2, overhead=False, server=server)
    measured, served = benchmark.measured, benchmark.served
    assert measured[(job, 1)].latency.p50_ms >= 0.5  # slow enough for the scenario to run
    result = served[job]
    assert result.latency.runs == 40 and result.latency.p99_ms >= result.latency.p50_ms > 0
    assert result.rate_per_s == pytest.approx(0.5 * 1000 / measured[(job, 1)].latency.p50_ms, rel=1e-6)


def test_a_worker_that_cannot_load_its_artifact_says_so_in_one_line(digits_onnx, feeds, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "artifact.json").write_text((Path(digits_onnx.directory) / "artifact.json").read_text())
    job = Job("broken", "ort-cpu", 1, broken, (1,))
    with pytest.raises(DataError, match=r"broken on ort-cpu, 1 threads: .*model\.onnx"):
        run_isolated([job], feeds, QUICK, rounds=2, overhead=False, server=None)


def test_warm_up_serve_and_overhead_in_process(digits_onnx, digits):
    feeds = [digits.test.take(0, 1), digits.test.take(1, 2)]
    with load("ort-cpu", digits_onnx, SessionOptions(threads=1)) as session:
        assert warm_up(session, feeds, QUICK) >= 4  # two windows at least
        latencies = serve(session, feeds, rate_per_s=200.0, requests=20, concurrency=2)
        ratio = harness_overhead(session, feeds, pairs=4)
    assert len(latencies) == 20 and (latencies > 0).all()
    assert ratio > 0


def test_worker_peak_memory_is_its_own_not_its_parents(digits_onnx, feeds):
    """Linux carries ru_maxrss across fork and exec: a worker of a large parent must not report the parent's peak."""
    import psutil

    ballast = np.ones(512 * 2**20, np.uint8)  # the parent grows by half a gigabyte before starting the worker
    parent_mb = psutil.Process().memory_info().rss / 2**20
    benchmark = run_isolated(
        [Job("onnx", "ort-cpu", 1, digits_onnx.directory, (1,))], feeds, QUICK, rounds=2, overhead=False, server=None
    )
    (only,) = benchmark.measured.values()
    assert only.peak_rss_mb < parent_mb - 400, (only.peak_rss_mb, parent_mb)
    del ballast


def test_a_worker_answers_only_once_its_thread_pool_has_stopped_spinning(digits_onnx, digits):
    from bench.worker import _other_threads_running, _quiesce

    feeds = digits.test.take(0, 8)
    with load("ort-cpu", digits_onnx, SessionOptions(threads=2)) as session:
        for _ in range(50):
            session.run(feeds)
        _quiesce()
        assert not _other_threads_running()


# a model call's buffers, freed in turn: 128 MiB in 64 KiB blocks (below any mmap threshold,
# so on the heap), more than glibc's dynamic trim threshold ever grows to (64 MiB)
FREED_HEAP_CALL = """
import ctypes, resource, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "pinned":
    from bench.worker import _pin_allocator
    _pin_allocator()
def call():
    blocks = [libc.malloc(2**16) for _ in range(2048)]
    for block in blocks:
        ctypes.memset(block, 1, 2**16)
    for block in reversed(blocks):
        libc.free(block)
call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
call()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_a_worker_keeps_its_heap_between_timed_calls():
    """Left to glibc, freeing a call's buffers can hand the heap back to the system, and the
    next call faults every page in again: whether it does depends on the process's history."""

    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", FREED_HEAP_CALL, mode], capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert faults("default") > 16_000  # 32,768 pages: the pattern makes glibc trim
    assert faults("pinned") < 1_000


def test_spread_is_how_far_the_even_and_odd_rounds_medians_lie_apart():
    from bench.isolated import _pool

    process = {"load_s": 0.1, "baseline_rss_bytes": 2**20, "peak_rss_bytes": 2**21}
    rounds = [{"samples_ns": [ns] * 5, "warmup_runs": 1} for ns in (1000, 1500, 1000, 1500)]
    measured = _pool(1, rounds, process, None)
    assert measured.spread == pytest.approx(0.5) and measured.round_p50_ms == (0.001, 0.0015, 0.001, 0.0015)
