"""TensorRT: engines built from ONNX artifacts, run with pycuda buffers on one stream.

`build_engine` parses an ONNX file and writes a serialized engine; `load` opens one
for the `trt` runtime. An engine only runs on the TensorRT version and GPU that built
it, so each carries `<engine>.json` (runtimes.tensorrt_settings.EngineMeta) and `load`
refuses a mismatch in one line. tensorrt and pycuda are imported inside functions:
nothing touches the GPU before `load()`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import Artifact, Format, TensorSpec
from edgeopt.core.errors import DataError, ExportError, ModelLoadError, RuntimeUnavailable, first_line
from runtimes.base import Availability, SessionBase, SessionOptions
from runtimes.tensorrt_settings import BuildFlags, Device, EngineMeta, features, mismatch

log = logging.getLogger(__name__)

INSTALL = "pip install edgeopt[tensorrt] on a machine with an NVIDIA GPU"


class EngineMismatch(RuntimeUnavailable):
    """An engine built for another TensorRT version or GPU."""


@functools.cache
def probe(device: str = "gpu") -> Availability:
    missing = [name for name in ("tensorrt", "pycuda") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, f"{' and '.join(missing)}: not installed ({INSTALL})")
    try:
        import tensorrt as trt
    except Exception as err:  # a wheel without its CUDA libraries raises OSError/ImportError
        return Availability(False, f"tensorrt: not importable ({first_line(err)})")
    try:
        features(trt.__version__)
    except RuntimeUnavailable as err:
        return Availability(False, str(err))
    try:
        import pycuda.driver as cuda

        cuda.init()
        count = cuda.Device.count()
    except Exception as err:  # pycuda raises its own LogicError/RuntimeError without a driver
        return Availability(False, f"pycuda: no CUDA driver ({first_line(err)})")
    if count == 0:
        return Availability(False, "pycuda: no CUDA device visible")
    return Availability(True, f"tensorrt {trt.__version__} with pycuda on {cuda.Device(0).name()}")


def here() -> Device:
    """This machine's TensorRT version and first GPU."""
    import pycuda.driver as cuda
    import tensorrt as trt

    cuda.init()
    gpu = cuda.Device(0)
    major, minor = gpu.compute_capability()
    return Device(trt.__version__, gpu.name(), f"{major}.{minor}")


def meta_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_meta(engine: Path) -> EngineMeta:
    path = meta_path(engine)
    try:
        return EngineMeta.from_json(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise ModelLoadError(f"{engine}: no {path.name} beside it; build engines with edgeopt build") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{path}: not an engine metadata file ({first_line(err)})") from err


def stale_reason(engine: Path) -> str | None:
    """Why a built engine cannot run on this machine, or None."""
    return mismatch(read_meta(engine), here())


def timing_cache_name(device: Device) -> str:
    """One timing cache per TensorRT version and GPU: TensorRT rejects a foreign one."""
    return (
        re.sub(r"[^A-Za-z0-9.]+", "-", f"tensorrt-{device.tensorrt_version}-{device.gpu}-sm{device.compute_capability}")
        + ".cache"
    )


def _logger(verbose: bool):
    import tensorrt as trt

    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.ERROR)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    flags: BuildFlags,
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    workspace_bytes: int,
    timing_cache_dir: Path | None,
    verbose: bool = False,
) -> Device:
    """Parse `onnx_path`, build with one optimization profile, write `engine_path`.

    The timing cache (kernel timings, the slow part of a build) is read from and saved
    to `timing_cache_dir` where one is given."""
    import tensorrt as trt

    device = here()
    logger = _logger(verbose)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED: required for strong typing on TensorRT 10, accepted and ignored on 11
    creation = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if flags.strongly_typed else 0
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it: {first_line(errors[0]) if errors else 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in flags.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    dynamic = any(-1 in tuple(network.get_input(i).shape) for i in range(network.num_inputs))
    if dynamic:
        optimization = builder.create_optimization_profile()
        for name, (low, best, high) in profile.items():
            optimization.set_shape(name, low, best, high)
        config.add_optimization_profile(optimization)
    cache_path = timing_cache_dir / timing_cache_name(device) if timing_cache_dir else None
    known = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(known), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine from it (run with -v for TensorRT's log)")
    with engine_path.open("wb") as f:
        f.write(serialized)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{cache_path.name}.tmp-{os.getpid()}")
        with tmp.open("wb") as f:
            f.write(config.get_timing_cache().serialize())
        os.replace(tmp, cache_path)
    return device


def load(artifact: Artifact, device: str, options: SessionOptions) -> TrtSession:
    if artifact.format is not Format.TRT_ENGINE:
        raise RuntimeUnavailable(
            f"trt: cannot run a {artifact.format} artifact; build an engine with the build_trt stage"
        )
    availability = probe(device)
    if not availability.ok:
        raise RuntimeUnavailable(f"trt: {availability.reason}")
    meta = read_meta(artifact.path)
    problem = mismatch(meta, here())
    if problem:
        raise EngineMismatch(
            f"{artifact.path}: {problem}; rebuild it from its source ({meta.source_sha256[:12]}): run the recipe again or use edgeopt build"
        )
    return TrtSession(artifact.path.read_bytes(), artifact.io, options.verbose)


@dataclass
class _Buffers:
    """Page-locked host arrays and device allocations for one set of input shapes."""

    host: dict[str, np.ndarray]
    device: dict[str, object]  # pycuda DeviceAllocation


class TrtSession(SessionBase):
    """One execution context and one stream. Buffers are allocated once per input shapes;
    `run` copies in, enqueues with execute_async_v3, copies out, and waits.

    For the latency harness it also offers `prepare` (inputs onto the device), `enqueue`
    (launch only) and `record` (a CUDA event on the stream), so the device time can be
    taken between events apart from the copies."""

    def __init__(self, engine_bytes: bytes, io, verbose: bool = False):
        import pycuda.driver as cuda
        import tensorrt as trt

        self._cuda = cuda
        cuda.init()
        self._cuda_context = cuda.Device(0).retain_primary_context()
        self._cuda_context.push()  # current in the loading thread until close()
        self._owner = threading.get_ident()
        self._lock = threading.RLock()
        self._runtime = trt.Runtime(_logger(verbose))
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            self._cuda.Context.pop()
            raise ModelLoadError("TensorRT cannot deserialize the engine (corrupt, or built by another version)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            self._cuda.Context.pop()
            raise RuntimeUnavailable("trt: TensorRT cannot create an execution context (GPU memory full?)")
        self._stream = cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {name: self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self._dtypes = {name: np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))) for name in names}
        shapes = {spec.name: spec.shape for spec in (*io.inputs, *io.outputs)}
        specs = {name: TensorSpec(name, shapes.get(name, tuple(self._engine.get_tensor_shape(name))), str(self._dtypes[name])) for name in names}  # fmt: skip
        self.inputs = tuple(specs[name] for name in names if is_input[name])
        self.outputs = tuple(specs[name] for name in names if not is_input[name])
        self._buffers: dict[tuple, _Buffers] = {}
        self._bound: _Buffers | None = None

    @contextlib.contextmanager
    def _active(self):
        """The CUDA context current for the call: pushed for the session's lifetime in
        the loading thread, pushed and popped around calls from other threads."""
        with self._lock:
            if threading.get_ident() == self._owner:
                yield
                return
            self._cuda_context.push()
            try:
                yield
            finally:
                self._cuda.Context.pop()

    def _stage(self, feeds: dict[str, np.ndarray]) -> _Buffers:
        """Bind buffers for these input shapes and queue the copies onto the device."""
        arrays = {spec.name: np.asarray(feeds[spec.name], dtype=self._dtypes[spec.name]) for spec in self.inputs}
        key = tuple(arrays[spec.name].shape for spec in self.inputs)
        buffers = self._buffers.get(key) or self._allocate(key)
        if self._bound is not buffers:
            for spec, shape in zip(self.inputs, key, strict=True):
                self._context.set_input_shape(spec.name, shape)
            for name, allocation in buffers.device.items():
                self._context.set_tensor_address(name, int(allocation))
            self._bound = buffers
        for name, array in arrays.items():
            np.copyto(buffers.host[name], array)
            self._cuda.memcpy_htod_async(buffers.device[name], buffers.host[name], self._stream)
        return buffers

    def _allocate(self, key: tuple) -> _Buffers:
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
        host = {name: self._cuda.pagelocked_empty(shape, self._dtypes[name]) for name, shape in shapes.items()}
        device = {name: self._cuda.mem_alloc(max(array.nbytes, 1)) for name, array in host.items()}
        self._buffers[key] = _Buffers(host, device)
        self._bound = None
        return self._buffers[key]

    def _launch(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT could not enqueue the engine (run with -v for TensorRT's log)")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._active():
            buffers = self._stage(feeds)
            self._launch()
            for spec in self.outputs:
                self._cuda.memcpy_dtoh_async(buffers.host[spec.name], buffers.device[spec.name], self._stream)
            self._stream.synchronize()
            # the page-locked buffers are reused by the next call: hand over copies
            return {spec.name: buffers.host[spec.name].copy() for spec in self.outputs}

    def prepare(self, feeds: dict[str, np.ndarray]) -> None:
        with self._active():
            self._stage(feeds)
            self._stream.synchronize()

    def enqueue(self) -> None:
        with self._active():
            self._launch()

    def record(self) -> CudaEvent:
        with self._active():
            event = self._cuda.Event()
            event.record(self._stream)
            return CudaEvent(event, self)

    def sync(self) -> None:
        with self._active():
            self._stream.synchronize()

    def close(self) -> None:
        if self._engine is None:
            return
        with self._active():
            for buffers in self._buffers.values():
                for allocation in buffers.device.values():
                    allocation.free()
            self._buffers.clear()
            self._bound = None
            self._context = None
            self._engine = None
            self._runtime = None
            self._stream = None
        if threading.get_ident() == self._owner:
            self._cuda.Context.pop()


class CudaEvent:
    """A CUDA event recorded on a session's stream."""

    def __init__(self, event, session: TrtSession):
        self._event = event
        self._session = session

    def wait(self) -> None:
        with self._session._active():
            self._event.synchronize()

    def ms_since(self, start: CudaEvent) -> float:
        with self._session._active():
            return self._event.time_since(start._event)
