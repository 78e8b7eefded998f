"""pycuda as the binding of TensorRT sessions. pycuda works through the driver API's
context stack: a session retains device 0's primary context (the one the CUDA runtime,
and so TensorRT, uses) and keeps it pushed in its own thread until it closes. Every push
is popped and the retain detached, or pycuda aborts the process at exit ("the context
stack was not empty upon module cleanup").
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from runtimes.cuda import HostArray


class Pycuda:
    name = "pycuda"

    def __init__(self):
        import pycuda.driver as cuda

        self._cuda = cuda
        cuda.init()
        self._context = None
        self._owner: int | None = None

    def open(self) -> None:
        """Retain and push the primary context; current in this thread until `close`."""
        context = self._cuda.Device(0).retain_primary_context()
        context.push()
        self._context, self._owner = context, threading.get_ident()

    def close(self) -> None:
        """Pop what `open` pushed and give the retain back (from the thread that opened)."""
        if self._context is None:
            return
        if threading.get_ident() == self._owner:
            self._cuda.Context.pop()
        self._context.detach()
        self._context = None

    @contextlib.contextmanager
    def current(self):
        """The context current for a call: already in the opening thread, pushed and
        popped around calls from others."""
        if threading.get_ident() == self._owner:
            yield
            return
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def device(self) -> tuple[str, str]:
        gpu = self._cuda.Device(0)
        major, minor = gpu.compute_capability()
        return gpu.name(), f"{major}.{minor}"

    def stream(self) -> Stream:
        return Stream(self._cuda.Stream())

    def event(self) -> Event:
        return Event(self._cuda.Event())

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype) -> HostArray:
        array = self._cuda.pagelocked_empty(shape, dtype)
        return HostArray(array, array.base.free)

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self._cuda.mem_alloc(max(nbytes, 1)))

    def copy_in(self, device: DeviceBuffer, host: HostArray, stream: Stream) -> None:
        self._cuda.memcpy_htod_async(device.allocation, host.array, stream.native)

    def copy_out(self, host: HostArray, device: DeviceBuffer, stream: Stream) -> None:
        self._cuda.memcpy_dtoh_async(host.array, device.allocation, stream.native)


class DeviceBuffer:
    def __init__(self, allocation):
        self.allocation = allocation
        self.address = int(allocation)

    def free(self) -> None:
        self.allocation.free()


class Stream:
    def __init__(self, native):
        self.native = native
        self.handle = native.handle

    def synchronize(self) -> None:
        self.native.synchronize()

    def close(self) -> None:
        self.native = None  # pycuda destroys a stream when its object goes


class Event:
    def __init__(self, native):
        self._native = native

    def record(self, stream: Stream) -> None:
        self._native.record(stream.native)

    def query(self) -> bool:
        return bool(self._native.query())

    def synchronize(self) -> None:
        self._native.synchronize()

    def ms_since(self, start: Event) -> float:
        return float(self._native.time_since(start._native))
