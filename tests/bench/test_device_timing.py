"""Device time (bench.latency.time_device_calls) on a simulated CUDA stream: events are
stamped when the GPU reaches them; work the host is still pushing cannot start before it
is pushed; a held stream runs nothing until it is released. The real thing runs on a GPU
(tests/exporter/test_engine.py, tests/runtimes/test_runtimes.py)."""

import threading

import numpy as np
import pytest

from bench import latency
from bench.latency import DeviceTimingUnavailable, time_device_calls


class Event:
    def __init__(self):
        self.stamp: float | None = None

    def wait(self) -> None:
        assert self.stamp is not None, "waited on an event the stream never reaches"

    def done(self) -> bool:
        return self.stamp is not None

    def ms_since(self, start) -> float:
        return self.stamp - start.stamp


class SimulatedStream:
    """A session on one stream. Launching costs the host `push_ms` (the kernels reach the
    GPU as they are pushed) and the GPU `gpu_ms`. Clocks in milliseconds."""

    def __init__(self, push_ms: float, gpu_ms: float, gate_holds: bool = True):
        self.push_ms, self.gpu_ms, self.gate_holds = push_ms, gpu_ms, gate_holds
        self.host = self.gpu = 0.0
        self.queue: list[tuple[float, object]] = []  # (pushed at, event or work)
        self.held = False
        self.releases = 0

    def prepare(self, feeds) -> None:
        self.host += 1.0  # the copies

    def enqueue(self) -> None:
        self.host += self.push_ms
        self.queue.append((self.host, self.gpu_ms))
        self._run()

    def record(self) -> Event:
        event = Event()
        self.queue.append((self.host, event))
        self._run()
        return event

    def sync(self) -> None:
        assert not self.held
        self._run()

    def hold(self) -> None:
        self.held = self.gate_holds

    def release(self) -> None:
        self.releases += 1
        if self.held:
            self.held = False
            self.gpu = max(self.gpu, self.host)
        self._run()

    def _run(self) -> None:
        while self.queue and not self.held:
            pushed, item = self.queue.pop(0)
            self.gpu = max(self.gpu, pushed)
            if isinstance(item, Event):
                item.stamp = self.gpu
            else:
                self.gpu += item


def test_device_time_is_the_gpu_alone_not_the_hosts_enqueue():
    """0.05 ms of pushing kernels, 0.01 ms of running them: an event started on an idle
    stream would report 0.06 ms."""
    samples = time_device_calls(SimulatedStream(push_ms=0.05, gpu_ms=0.01), [{}], 5, 0.0)
    assert np.allclose(samples, 10_000)


def test_device_time_of_a_gpu_bound_model_is_its_gpu_time():
    samples = time_device_calls(SimulatedStream(push_ms=0.05, gpu_ms=3.0), [{}], 5, 0.0)
    assert np.allclose(samples, 3_000_000)


def test_a_gate_that_does_not_hold_is_refused_and_the_stream_let_go():
    stream = SimulatedStream(push_ms=0.05, gpu_ms=0.01, gate_holds=False)
    with pytest.raises(DeviceTimingUnavailable, match="ran before the gate opened"):
        time_device_calls(stream, [{}], 5, 0.0)
    assert stream.releases == 1 and not stream.held


def test_a_stream_that_cannot_be_held_is_device_timing_unavailable():
    class NoGate(SimulatedStream):
        def hold(self) -> None:
            raise RuntimeError("cuStreamWaitValue32 failed (CUresult 801): this GPU or driver cannot hold a stream")

    with pytest.raises(DeviceTimingUnavailable, match="cannot hold a stream"):
        time_device_calls(NoGate(0.05, 0.01), [{}], 5, 0.0)


def test_a_launch_that_stalls_behind_the_held_stream_is_let_go_by_the_watchdog(monkeypatch):
    """A launch queue too deep to hold blocks the host inside the enqueue until the stream
    moves: without the watchdog this would hang for ever."""
    monkeypatch.setattr(latency, "GATE_TIMEOUT_S", 0.05)

    class DeepQueue(SimulatedStream):
        def __init__(self):
            super().__init__(0.05, 0.01)
            self.moving = threading.Event()

        def enqueue(self) -> None:
            if self.held:
                assert self.moving.wait(timeout=10), "the watchdog never let the stream go"
            super().enqueue()

        def release(self) -> None:
            super().release()
            self.moving.set()

    stream = DeepQueue()
    with pytest.raises(DeviceTimingUnavailable, match=r"did not hold, or queueing took over 0\.05 s"):
        time_device_calls(stream, [{}], 5, 0.0)
    assert not stream.held


def test_several_batches_are_copied_in_turn_outside_the_interval():
    class Counting(SimulatedStream):
        def __init__(self, push_ms: float, gpu_ms: float):
            super().__init__(push_ms, gpu_ms)
            self.prepared: list[int] = []

        def prepare(self, feeds) -> None:
            self.prepared.append(feeds["n"])
            super().prepare(feeds)

    stream = Counting(push_ms=0.05, gpu_ms=0.01)
    samples = time_device_calls(stream, [{"n": 0}, {"n": 1}], 4, 0.0)
    assert np.allclose(samples, 10_000), "the copies stay outside the events"
    assert stream.prepared == [0, 1, 0, 1, 0, 1]  # set-up launches, then one per timed call
