"""Stand-ins for tensorrt, pycuda.driver and cuda-python's runtime bindings, for the
session and build logic on machines without a GPU (this one, and CI).

Each keeps the real API's contract, as its documentation gives it:
- tensorrt (TensorRT 10 Python API): IRuntime.deserialize_cuda_engine returns None for
  bytes it cannot read; ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode /
  get_tensor_dtype / get_tensor_shape / get_tensor_profile_shape(name, profile) ->
  [min, opt, max]; IExecutionContext.set_input_shape and set_tensor_address return False
  when refused (and a refused input leaves the inputs set before it changed);
  execute_async_v3(stream_handle: int) -> bool; nptype raises TypeError for types numpy
  has no equal of (BF16, FP8, INT4). IBuilderConfig.create_timing_cache returns None for
  a blob it cannot read, set_timing_cache returns False for a cache from another device,
  get_timing_cache returns the attached cache or None (pyCoreDoc.h).
- pycuda.driver (doc/source/driver.rst): init; Device(n).retain_primary_context() ->
  Context with push() and detach(), Context.pop() static; pagelocked_empty returns an
  ndarray whose .base has free(); mem_alloc -> DeviceAllocation (int() is its address);
  memcpy_htod_async(dest, src, stream) / memcpy_dtoh_async(dest, src, stream); Stream has
  handle and synchronize; Event has record(stream), query, synchronize, time_since.
- cuda.bindings.runtime (cuda-python 13.4.4, read off the installed module): every call
  returns a tuple whose first element is a cudaError_t; cudaMallocHost / cudaMalloc return
  an int address; cudaMemcpyAsync(dst, src, count, kind, stream); cudaEventQuery returns
  cudaErrorNotReady (600) until the event is reached.

"Device" memory is host memory here (ctypes buffers), so copies are real memmoves and the
stand-in engine really adds its two inputs: values travel the whole way through.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import sys
import types
from typing import ClassVar

import numpy as np

# --- memory shared by both bindings: addresses of live ctypes buffers ----------------------


class Memory:
    def __init__(self):
        self.blocks: dict[int, ctypes.Array] = {}

    def allocate(self, nbytes: int) -> int:
        block = (ctypes.c_byte * nbytes)()
        address = ctypes.addressof(block)
        self.blocks[address] = block
        return address

    def free(self, address: int) -> None:
        del self.blocks[address]

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        ctypes.memmove(dst, src, nbytes)


# --- tensorrt -------------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = "float32"
    BF16 = "bf16"


class Engine:
    """y = a + b over (batch, 4), batch in 1..limits[name] per input."""

    names = ("a", "b", "y")

    def __init__(self, memory: Memory, dtype: DataType, limits: dict[str, int]):
        self.memory, self.dtype, self.limits = memory, dtype, limits
        self.num_io_tensors = 3
        self.contexts: list[Context] = []

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> str:
        return "OUTPUT" if name == "y" else "INPUT"

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtype

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 4)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return [(1, 4), (1, 4), (self.limits[name], 4)]

    def create_execution_context(self) -> Context:
        self.contexts.append(Context(self))
        return self.contexts[-1]


class Context:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.launches = 0

    def set_input_shape(self, name: str, shape) -> bool:
        if not 1 <= shape[0] <= self.engine.limits[name]:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes["a"] if self.shapes.get("a") == self.shapes.get("b") else (-1, 4)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        shape = self.shapes["a"]
        if self.shapes["b"] != shape:
            return False
        count = int(np.prod(shape))

        def view(name):
            raw = (ctypes.c_float * count).from_address(self.addresses[name])
            return np.frombuffer(raw, np.float32).reshape(shape)

        view("y")[...] = view("a") + view("b")
        self.launches += 1
        return True


def tensorrt_module(memory: Memory, dtype: DataType = DataType.FLOAT, limits=None, corrupt=False):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.3.9"
    trt.DataType = DataType
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    class Logger:
        INFO, ERROR = 1, 3

        def __init__(self, severity=3):
            self.severity = severity

    def nptype(dtype: DataType):
        if dtype is DataType.BF16:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return np.float32

    class Runtime:
        engines: ClassVar[list[Engine]] = []

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if corrupt:
                return None
            engine = Engine(memory, dtype, limits or {"a": 64, "b": 64})
            Runtime.engines.append(engine)
            return engine

    trt.Logger, trt.nptype, trt.Runtime = Logger, nptype, Runtime
    _add_builder(trt)
    return trt


# --- tensorrt: the builder, for the timing cache --------------------------------------------


class TimingCache:
    def __init__(self, blob: bytes):
        self.blob = blob

    def serialize(self) -> bytes:
        return b"timings:" + self.blob.removeprefix(b"timings:") + b"+new"


class BuilderConfig:
    """Caches from 'another-gpu' are refused; blobs not starting b'timings:' are unreadable."""

    def __init__(self):
        self.attached: TimingCache | None = None
        self.flags: list = []

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.workspace = size

    def set_flag(self, flag) -> None:
        self.flags.append(flag)

    def add_optimization_profile(self, profile) -> int:
        return 0

    def create_timing_cache(self, blob: bytes):
        return TimingCache(blob) if blob == b"" or blob.startswith(b"timings:") else None

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, TimingCache):  # pybind11 refuses None
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if b"another-gpu" in cache.blob and not ignore_mismatch:
            return False
        self.attached = cache
        return True

    def get_timing_cache(self):
        return self.attached


def _add_builder(trt) -> None:
    class Input:
        shape = (-1, 4)

    class Network:
        num_inputs = 1

        def get_input(self, index):
            return Input()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path: str) -> bool:
            return True

    class Profile:
        def set_shape(self, name, low, best, high) -> None:
            self.shapes = (low, best, high)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config) -> bytes:
            return b"serialized engine"

    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")


# --- pycuda.driver ----------------------------------------------------------------------------


def pycuda_module(memory: Memory):
    cuda = types.ModuleType("pycuda.driver")
    cuda.stack, cuda.retained = [], 0

    class Context:
        def push(self):
            cuda.stack.append(self)

        @staticmethod
        def pop():
            if not cuda.stack:
                raise RuntimeError("cuCtxPopCurrent failed: invalid context")
            cuda.stack.pop()

        def detach(self):
            cuda.retained -= 1

    class Device:
        def __init__(self, number):
            self.number = number

        def retain_primary_context(self):
            cuda.retained += 1
            return Context()

        def name(self):
            return "NVIDIA Stand-in 9000"

        def compute_capability(self):
            return (9, 0)

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.address = memory.allocate(nbytes)

        def __int__(self):
            return self.address

        def free(self):
            memory.free(self.address)

    class Stream:
        handle = 7

        def synchronize(self):
            pass

    class Event:
        def record(self, stream=None):
            self.reached = True
            return self

        def query(self):
            return True

        def synchronize(self):
            return self

        def time_since(self, start):
            return 0.25

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        block = (ctypes.c_byte * nbytes)()
        block.free = lambda: None
        return np.ndarray(shape, dtype, buffer=block)  # its .base is the allocation, as pycuda's

    cuda.init = lambda flags=0: None
    cuda.Context, cuda.Device, cuda.Stream, cuda.Event = Context, Device, Stream, Event
    cuda.pagelocked_empty = pagelocked_empty
    cuda.mem_alloc = DeviceAllocation
    cuda.memcpy_htod_async = lambda dest, src, stream=None: memory.copy(int(dest), src.ctypes.data, src.nbytes)
    cuda.memcpy_dtoh_async = lambda dest, src, stream=None: memory.copy(dest.ctypes.data, int(src), dest.nbytes)
    return cuda


# --- cuda.bindings.runtime ----------------------------------------------------------------------


class cudaError_t(enum.IntEnum):  # the binding's own names
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorNotReady = 600


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


def cuda_runtime_module(memory: Memory):
    rt = types.ModuleType("cuda.bindings.runtime")
    ok = cudaError_t.cudaSuccess
    rt.cudaError_t, rt.cudaMemcpyKind = cudaError_t, cudaMemcpyKind
    rt.cudaStreamNonBlocking, rt.cudaEventDefault = 1, 0
    rt.calls = []
    rt.streams, rt.events = set(), set()

    def malloc(nbytes):
        return ok, memory.allocate(nbytes)

    def free(address):
        memory.free(address)
        return (ok,)

    def memcpy_async(dst, src, count, kind, stream):
        assert kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToHost)
        memory.copy(int(dst), int(src), count)
        return (ok,)

    def stream_create(flags):
        handle = types.SimpleNamespace(address=0x5000 + len(rt.streams))
        rt.streams.add(handle.address)
        return ok, handle

    def stream_destroy(stream):
        rt.streams.remove(stream.address)
        return (ok,)

    def event_create(flags):
        handle = types.SimpleNamespace(address=0x9000 + len(rt.events), reached=False)
        rt.events.add(handle.address)
        return ok, handle

    def event_record(event, stream):
        event.reached = True
        return (ok,)

    def event_destroy(event):
        rt.events.discard(event.address)
        return (ok,)

    rt.cudaSetDevice = lambda device: (ok,)
    rt.cudaGetDeviceProperties = lambda device: (ok, types.SimpleNamespace(name=b"NVIDIA Stand-in 9000\0\0", major=9, minor=0))  # fmt: skip
    rt.cudaGetErrorName = lambda error: (ok, error.name.encode())
    rt.cudaMallocHost, rt.cudaMalloc = malloc, malloc
    rt.cudaFreeHost, rt.cudaFree = free, free
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaStreamCreateWithFlags, rt.cudaStreamDestroy = stream_create, stream_destroy
    rt.cudaStreamSynchronize = lambda stream: (ok,)
    rt.cudaEventCreateWithFlags, rt.cudaEventRecord, rt.cudaEventDestroy = event_create, event_record, event_destroy
    rt.cudaEventQuery = lambda event: (ok if event.reached else cudaError_t.cudaErrorNotReady,)
    rt.cudaEventSynchronize = lambda event: (ok,)
    rt.cudaEventElapsedTime = lambda start, end: (ok, 0.25)
    return rt


def install(monkeypatch, binding: str, **engine) -> tuple[Memory, types.ModuleType, types.ModuleType]:
    """Put stand-in tensorrt and `binding` (cuda-python or pycuda) into sys.modules and
    choose that binding; returns the memory, the tensorrt module and the binding's module."""
    memory = Memory()
    trt = tensorrt_module(memory, **engine)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setenv("EDGEOPT_CUDA_BACKEND", binding)
    if binding == "pycuda":
        driver = pycuda_module(memory)
        package = _package("pycuda", driver=driver)
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
        return memory, trt, driver
    runtime = cuda_runtime_module(memory)
    utils = _package("cuda.bindings.utils", get_cuda_native_handle=lambda handle: handle.address)
    bindings = _package("cuda.bindings", runtime=runtime, utils=utils)
    monkeypatch.setitem(sys.modules, "cuda", _package("cuda", bindings=bindings))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", utils)
    return memory, trt, runtime


def _package(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []
    for key, value in attributes.items():
        setattr(module, key, value)
    return module
