"""A TensorRT engine run on one stream with page-locked host buffers, through the CUDA
binding runtimes.cuda chose (cuda-python or pycuda).

Whatever fails while the session opens, or while it switches input shapes, leaves nothing
behind: the CUDA context is given back, and a shape change TensorRT refuses half-way is
bound again in full by the next call.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable
from runtimes.base import SessionBase
from runtimes.cuda import HostArray, StreamGate, backend


def open_binding():
    """The chosen CUDA binding's session-side object (runtimes.cuda.backend)."""
    chosen = backend()
    if chosen == "cuda-python":
        from runtimes.cuda_python import CudaPython

        return CudaPython()
    if chosen == "pycuda":
        from runtimes.cuda_pycuda import Pycuda

        return Pycuda()
    raise RuntimeUnavailable("trt: no CUDA binding: pip install 'edgeopt[tensorrt]'")


@dataclass
class _Buffers:
    """Host and device memory for one set of input shapes."""

    host: dict[str, HostArray]
    device: dict[str, object]  # the binding's DeviceBuffer: .address, .free()


class TrtSession(SessionBase):
    """One execution context and one stream. Buffers are allocated once per input shapes;
    `run` copies in, enqueues with execute_async_v3, copies out, and waits.

    For the latency harness it also offers `prepare` (inputs onto the device), `enqueue`
    (launch only), `record` (a CUDA event on the stream) and `hold`/`release` (the stream
    held at a gate while a launch is queued), so the device time can be taken between
    events apart from the copies and the host's enqueue."""

    def __init__(self, engine_bytes: bytes, io, verbose: bool = False, cuda=None):
        import tensorrt as trt

        self._cuda = cuda if cuda is not None else open_binding()
        self._runtime = self._engine = self._context = self._stream = self._gate = None
        self._buffers: dict[tuple, _Buffers] = {}
        self._bound: _Buffers | None = None
        self._lock = threading.RLock()
        self._cuda.open()
        self._open = True
        try:
            self._start(engine_bytes, io, verbose, trt)
        except BaseException:
            self.close()
            raise

    def _start(self, engine_bytes: bytes, io, verbose: bool, trt) -> None:
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.INFO if verbose else trt.Logger.ERROR))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise ModelLoadError("TensorRT cannot deserialize the engine (corrupt, or built by another version)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeUnavailable("trt: TensorRT cannot create an execution context (GPU memory full?)")
        self._stream = self._cuda.stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {name: self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self._dtypes = {name: _numpy_type(trt, name, self._engine.get_tensor_dtype(name)) for name in names}
        shapes = {spec.name: spec.shape for spec in (*io.inputs, *io.outputs)}
        specs = {name: TensorSpec(name, shapes.get(name, tuple(self._engine.get_tensor_shape(name))), str(self._dtypes[name])) for name in names}  # fmt: skip
        self.inputs = tuple(specs[name] for name in names if is_input[name])
        self.outputs = tuple(specs[name] for name in names if not is_input[name])

    @contextlib.contextmanager
    def _active(self):
        with self._lock, self._cuda.current():
            yield

    def _stage(self, feeds: dict[str, np.ndarray]) -> _Buffers:
        """Bind buffers for these input shapes and queue the copies onto the device."""
        arrays = {spec.name: np.asarray(feeds[spec.name], dtype=self._dtypes[spec.name]) for spec in self.inputs}
        key = tuple(arrays[spec.name].shape for spec in self.inputs)
        buffers = self._buffers.get(key) or self._allocate(key)
        if self._bound is not buffers:
            self._bound = None  # the context changes below: bound only once every call succeeded
            for spec, shape in zip(self.inputs, key, strict=True):
                if not self._context.set_input_shape(spec.name, shape):
                    raise DataError(f"TensorRT refused shape {shape} for input '{spec.name}'")
            for name, buffer in buffers.device.items():
                if not self._context.set_tensor_address(name, buffer.address):
                    raise RuntimeError(f"TensorRT refused the device buffer of tensor '{name}'")
            self._bound = buffers
        for name, array in arrays.items():
            np.copyto(buffers.host[name].array, array)
            self._cuda.copy_in(buffers.device[name], buffers.host[name], self._stream)
        return buffers

    def _allocate(self, key: tuple) -> _Buffers:
        self._bound = None  # set_input_shape changes the context even when a later input is refused
        shapes = {}
        for spec, shape in zip(self.inputs, key, strict=True):
            if not self._context.set_input_shape(spec.name, shape):
                low, _, high = self._engine.get_tensor_profile_shape(spec.name, 0)
                raise DataError(
                    f"input '{spec.name}' shape {shape} is outside the engine's profile ({tuple(low)} to {tuple(high)}); rebuild with wider dims"
                )
            shapes[spec.name] = shape
        for spec in self.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise RuntimeUnavailable(
                    f"trt: output '{spec.name}' has a data-dependent shape, which this runtime does not run"
                )
            shapes[spec.name] = shape
        host = {name: self._cuda.host_array(shape, self._dtypes[name]) for name, shape in shapes.items()}
        device = {name: self._cuda.device_buffer(buffer.array.nbytes) for name, buffer in host.items()}
        self._buffers[key] = _Buffers(host, device)
        return self._buffers[key]

    def _launch(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT could not enqueue the engine (run with -v for TensorRT's log)")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._active():
            buffers = self._stage(feeds)
            self._launch()
            for spec in self.outputs:
                self._cuda.copy_out(buffers.host[spec.name], buffers.device[spec.name], self._stream)
            self._stream.synchronize()
            # the page-locked buffers are reused by the next call: hand over copies
            return {spec.name: buffers.host[spec.name].array.copy() for spec in self.outputs}

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        with self._active():
            self._stage(feeds)
            self._stream.synchronize()

    def enqueue(self) -> None:
        with self._active():
            self._launch()

    def record(self) -> CudaEvent:
        with self._active():
            event = self._cuda.event()
            event.record(self._stream)
            return CudaEvent(event, self)

    def hold(self) -> None:
        with self._active():
            if self._gate is None:
                self._gate = StreamGate()
            self._gate.close(self._stream.handle)

    def release(self) -> None:
        """Takes no lock: the harness's watchdog calls it while an enqueue holds it."""
        gate = self._gate
        if gate is not None:
            gate.open()

    def sync(self) -> None:
        with self._active():
            self._stream.synchronize()

    def close(self) -> None:
        """Everything back, in order: buffers, TensorRT's objects, the stream, the context."""
        if not self._open:
            return
        self._open = False
        try:
            with self._lock, self._cuda.current():
                for buffers in self._buffers.values():
                    for memory in (*buffers.host.values(), *buffers.device.values()):
                        memory.free()
                self._buffers.clear()
                self._bound = None
                self._context = self._engine = self._runtime = None
                if self._gate is not None:
                    self._stream.synchronize()  # nothing may still wait on the gate's word
                    self._gate.free()
                if self._stream is not None:
                    self._stream.close()
                self._gate = self._stream = None
        finally:
            self._cuda.close()


def _numpy_type(trt, name: str, dtype) -> np.dtype:
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError as err:  # BF16, FP8, INT4, FP4 have no numpy type
        raise RuntimeUnavailable(
            f"trt: tensor '{name}' is {dtype}, which numpy cannot hold; build the engine from an FP32 or FP16 source"
        ) from err


class CudaEvent:
    """A CUDA event recorded on a session's stream."""

    def __init__(self, event, session: TrtSession):
        self._event = event
        self._session = session

    def wait(self) -> None:
        with self._session._active():
            self._event.synchronize()

    def done(self) -> bool:
        with self._session._active():
            return self._event.query()

    def ms_since(self, start: CudaEvent) -> float:
        with self._session._active():
            return self._event.ms_since(start._event)
