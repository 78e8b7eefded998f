"""cuda-python (NVIDIA's CUDA bindings) as the binding of TensorRT sessions: the calls
TensorRT's own samples make (samples/python/common_runtime.py). The runtime API works on
the device's primary context, which it makes current itself: no context stack to balance.

Every call returns a tuple whose first element is the error (cudaError_t); `_check`
raises on it and hands back the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

import numpy as np

from runtimes.cuda import HostArray


def _bindings():
    try:  # cuda-python 12.6.1 and later; the only layout since 13.0
        from cuda.bindings import runtime
    except ImportError:  # 11.8 to 12.6.0
        from cuda import cudart as runtime
    return runtime


class CudaError(RuntimeError):
    pass


class CudaPython:
    name = "cuda-python"

    def __init__(self):
        self._runtime = _bindings()
        self._owner: int | None = None

    def _check(self, result):
        error, *values = result
        if int(error) != 0:
            name = self._runtime.cudaGetErrorName(error)[1]
            raise CudaError(f"CUDA: {name.decode() if isinstance(name, bytes) else name} ({int(error)})")
        return values[0] if len(values) == 1 else tuple(values) or None

    def open(self) -> None:
        """Device 0 current in this thread (its primary context, as the runtime API uses)."""
        self._check(self._runtime.cudaSetDevice(0))
        self._owner = threading.get_ident()

    def close(self) -> None:
        """Nothing to undo: the runtime keeps the primary context for the process."""

    @contextlib.contextmanager
    def current(self):
        if threading.get_ident() != self._owner:  # the runtime's current device is per thread
            self._check(self._runtime.cudaSetDevice(0))
        yield

    def device(self) -> tuple[str, str]:
        props = self._check(self._runtime.cudaGetDeviceProperties(0))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\0"), f"{props.major}.{props.minor}"

    def stream(self) -> Stream:
        return Stream(self)

    def event(self) -> Event:
        return Event(self)

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype) -> HostArray:
        """A numpy array over page-locked memory (cudaMallocHost), so copies are asynchronous."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * dtype.itemsize, 1)
        address = self._check(self._runtime.cudaMallocHost(nbytes))
        raw = (ctypes.c_byte * nbytes).from_address(address)
        array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
        return HostArray(array, lambda: self._check(self._runtime.cudaFreeHost(address)))

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(self, self._check(self._runtime.cudaMalloc(max(nbytes, 1))))

    def copy_in(self, device: DeviceBuffer, host: HostArray, stream: Stream) -> None:
        kind = self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        address = host.array.ctypes.data
        self._check(self._runtime.cudaMemcpyAsync(device.address, address, host.array.nbytes, kind, stream.native))

    def copy_out(self, host: HostArray, device: DeviceBuffer, stream: Stream) -> None:
        kind = self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        address = host.array.ctypes.data
        self._check(self._runtime.cudaMemcpyAsync(address, device.address, host.array.nbytes, kind, stream.native))


class DeviceBuffer:
    def __init__(self, cuda: CudaPython, address: int):
        self._cuda = cuda
        self.address = int(address)

    def free(self) -> None:
        if self.address:
            self._cuda._check(self._cuda._runtime.cudaFree(self.address))
            self.address = 0


class Stream:
    """A non-blocking stream; `handle` is the address TensorRT's execute_async_v3 takes."""

    def __init__(self, cuda: CudaPython):
        self._cuda = cuda
        runtime = cuda._runtime
        self.native = cuda._check(runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking))
        self.handle = _address(self.native)

    def synchronize(self) -> None:
        self._cuda._check(self._cuda._runtime.cudaStreamSynchronize(self.native))

    def close(self) -> None:
        if self.native is not None:
            self._cuda._check(self._cuda._runtime.cudaStreamDestroy(self.native))
            self.native = None


class Event:
    def __init__(self, cuda: CudaPython):
        self._cuda = cuda
        runtime = cuda._runtime
        self._native = cuda._check(runtime.cudaEventCreateWithFlags(runtime.cudaEventDefault))  # timing on

    def record(self, stream: Stream) -> None:
        self._cuda._check(self._cuda._runtime.cudaEventRecord(self._native, stream.native))

    def query(self) -> bool:
        runtime = self._cuda._runtime
        (error,) = runtime.cudaEventQuery(self._native)
        if error == runtime.cudaError_t.cudaErrorNotReady:
            return False
        self._cuda._check((error,))
        return True

    def synchronize(self) -> None:
        self._cuda._check(self._cuda._runtime.cudaEventSynchronize(self._native))

    def ms_since(self, start: Event) -> float:
        return float(self._cuda._check(self._cuda._runtime.cudaEventElapsedTime(start._native, self._native)))

    def __del__(self):
        # events are made per timed call: each gives its handle back when dropped
        with contextlib.suppress(Exception):
            self._cuda._runtime.cudaEventDestroy(self._native)


def _address(handle) -> int:
    """A binding object's handle as an int (int() on them is deprecated since cuda-bindings 13)."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(handle)
    return int(get_cuda_native_handle(handle))
