"""The CUDA driver, and the Python binding TensorRT sessions drive it with.

`driver()` says whether this machine can run CUDA at all, asked of the driver library
itself (libcuda: cuInit, then a device count) in a child process, so that this process
never initialises CUDA (one that has cannot hand CUDA to children it forks, and a broken
driver cannot take it down). `backend()` names the binding: cuda-python (NVIDIA's own
bindings, binary wheels, what TensorRT's samples use) or pycuda (built from source against
a CUDA toolkit), whichever is installed; EDGEOPT_CUDA_BACKEND picks one where both are.
`StreamGate` holds a stream until the host opens it, so device time can be taken apart
from the host's enqueue (bench.latency).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeopt.core.errors import RuntimeUnavailable, first_line

LIBCUDA = "libcuda.so.1"  # installed by the NVIDIA driver, not by any toolkit or wheel
CUDA_SUCCESS = 0
DRIVER_PROBE_TIMEOUT_S = 60.0
# binding → the module whose presence means it is installed, and its distribution
BACKENDS = {"cuda-python": ("cuda.bindings", "cuda-python"), "pycuda": ("pycuda", "pycuda")}
BACKEND_VARIABLE = "EDGEOPT_CUDA_BACKEND"
# the wheels that carry a CUDA major in their name or version
_TENSORRT_WHEEL = re.compile(r"^tensorrt[-_]cu(\d+)(?:[-_]libs)?$")


@dataclass(frozen=True)
class Driver:
    ok: bool
    reason: str
    devices: tuple[str, ...] = ()
    version: int | None = None  # the newest CUDA the driver runs, e.g. 13000 for 13.0


def query_driver(library: str = LIBCUDA) -> Driver:
    """The driver, asked in this process (it initialises CUDA here: see `driver`)."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as err:
        return Driver(False, f"no NVIDIA driver ({first_line(err)})")
    return _query(lib)


def _query(lib) -> Driver:
    """cuInit, cuDriverGetVersion, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName (CUDA
    driver API; each returns a CUresult and writes through its pointer arguments)."""
    code = lib.cuInit(0)
    if code != CUDA_SUCCESS:  # 100: no device; 35 or 803: driver and library disagree
        return Driver(False, f"CUDA driver present but cuInit failed: {_error_name(lib, code)}")
    version = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(version))
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != CUDA_SUCCESS or count.value == 0:
        return Driver(False, "CUDA driver present but no device visible (CUDA_VISIBLE_DEVICES?)", (), version.value)
    names = []
    for index in range(count.value):
        device = ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        if lib.cuDeviceGet(ctypes.byref(device), index) == CUDA_SUCCESS:
            lib.cuDeviceGetName(name, len(name), device)
        names.append(name.value.decode(errors="replace") or f"device {index}")
    major, minor = divmod(version.value, 1000)
    reason = f"{', '.join(names)}; driver runs CUDA up to {major}.{minor // 10}"
    return Driver(True, reason, tuple(names), version.value)


def _error_name(lib, code: int) -> str:
    text = ctypes.c_char_p()
    if lib.cuGetErrorName(code, ctypes.byref(text)) == CUDA_SUCCESS and text.value:
        return f"{text.value.decode()} ({code})"
    return f"CUresult {code}"


@functools.cache
def driver() -> Driver:
    """The driver, asked in a fresh interpreter (`python -m runtimes.cuda`)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runtimes.cuda"],
            capture_output=True,
            text=True,
            timeout=DRIVER_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Driver(False, f"the CUDA driver did not answer within {DRIVER_PROBE_TIMEOUT_S:.0f} s")
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return Driver(False, f"the CUDA driver probe crashed: {tail}")
    return Driver(data["ok"], data["reason"], tuple(data["devices"]), data["version"])


def backend() -> str | None:
    """The binding TensorRT sessions use: EDGEOPT_CUDA_BACKEND if set, else cuda-python
    where installed, else pycuda; None where neither is."""
    chosen = os.environ.get(BACKEND_VARIABLE)
    if chosen:
        if chosen not in BACKENDS:
            raise RuntimeUnavailable(f"{BACKEND_VARIABLE}={chosen}: not one of {', '.join(BACKENDS)}")
        return chosen
    return next((name for name in BACKENDS if installed(BACKENDS[name][0])), None)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is not there, or half installed
        return False


def backend_summary() -> str:
    """The binding in use and its version, and what else is installed, for `edgeopt doctor`."""
    try:
        chosen = backend()
    except RuntimeUnavailable as err:
        return str(err)
    if chosen is None:
        return "none: pip install 'edgeopt[tensorrt]' (cuda-python), or 'edgeopt[pycuda]' with a CUDA toolkit"
    others = [f"{name} {_version(BACKENDS[name][1]) or 'not installed'}" for name in BACKENDS if name != chosen]
    how = f"chosen by {BACKEND_VARIABLE}" if os.environ.get(BACKEND_VARIABLE) else "installed"
    return f"{chosen} {_version(BACKENDS[chosen][1]) or '?'} ({how}; {', '.join(others)})"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_cuda_major(distributions: list[str]) -> int | None:
    """The CUDA major a TensorRT install is built for, from its wheels' names
    (tensorrt-cu13, tensorrt_cu13_libs); None for the bare or an unknown one."""
    majors = {int(match.group(1)) for name in distributions if (match := _TENSORRT_WHEEL.match(name.lower()))}
    return majors.pop() if len(majors) == 1 else None


def cuda_mismatch(tensorrt_major: int | None, binding: str | None, binding_version: str | None) -> str | None:
    """Why a TensorRT wheel and cuda-python cannot share a process: both load a CUDA runtime
    and it must be the same major (cuda-python's major is its CUDA's)."""
    if tensorrt_major is None or binding != "cuda-python" or not binding_version:
        return None
    major = int(binding_version.split(".")[0])
    if major == tensorrt_major:
        return None
    return (
        f"tensorrt is built for CUDA {tensorrt_major} and cuda-python {binding_version} for CUDA {major}: "
        f"pip install 'cuda-python>={tensorrt_major},<{tensorrt_major + 1}'"
    )


def installed_mismatch() -> str | None:
    """cuda_mismatch for what is installed here."""
    names = [dist.metadata["Name"] for dist in importlib.metadata.distributions() if dist.metadata["Name"]]
    try:
        binding = backend()
    except RuntimeUnavailable:
        return None
    return cuda_mismatch(tensorrt_cuda_major(names), binding, _version("cuda-python"))


@dataclass
class HostArray:
    """A numpy array over page-locked host memory, and how to give the memory back."""

    array: np.ndarray
    free: Callable[[], None]


class StreamGate:
    """Holds a CUDA stream until the host opens it: cuStreamWaitValue32 on a word of mapped
    page-locked memory (driver API through ctypes; pycuda and torch do not wrap it). Work
    queued after `close` starts when `open` writes the word, back to back, so events around
    it time the GPU alone, not the host pushing kernels. Needs a current CUDA context."""

    _GEQ = 0  # CU_STREAM_WAIT_VALUE_GEQ: wait until (int32)(*addr - value) >= 0

    def __init__(self, library: str = LIBCUDA):
        try:
            self._bind(ctypes.CDLL(library))
        except (OSError, AttributeError) as err:  # no driver library, or one too old for _v2
            raise RuntimeError(f"the CUDA driver cannot hold a stream: {first_line(err)}") from err

    def _bind(self, lib) -> None:
        # cuda.h maps these names to their _v2 symbols; the unversioned cuStreamWaitValue32
        # is the legacy one, off unless the driver was loaded with NVreg_EnableStreamMemOPs=1
        self._alloc = _function(lib, "cuMemHostAlloc", ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint)
        self._free = _function(lib, "cuMemFreeHost", ctypes.c_void_p)
        pointer = _function(lib, "cuMemHostGetDevicePointer_v2", ctypes.POINTER(ctypes.c_uint64), ctypes.c_void_p, ctypes.c_uint)  # fmt: skip
        self._wait = _function(lib, "cuStreamWaitValue32_v2", ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint)  # fmt: skip
        host = ctypes.c_void_p()
        _check(self._alloc(ctypes.byref(host), 4, 0x1 | 0x2), "cuMemHostAlloc")  # PORTABLE | DEVICEMAP
        self._host = host.value
        device = ctypes.c_uint64()
        _check(pointer(ctypes.byref(device), self._host, 0), "cuMemHostGetDevicePointer")
        self._device = device.value
        self._word = ctypes.c_uint32.from_address(self._host)
        self._word.value = 0
        self._ticket = 0

    def close(self, stream_handle: int) -> None:
        """Work queued on the stream from now on waits for `open`."""
        self._ticket = (self._ticket + 1) & 0xFFFFFFFF
        _check(self._wait(stream_handle, self._device, self._ticket, self._GEQ), "cuStreamWaitValue32")

    def open(self) -> None:
        """Let the stream run. A plain memory write: safe from any thread, and twice."""
        self._word.value = self._ticket

    def free(self) -> None:
        if self._host:
            self.open()
            self._free(self._host)
            self._host = None


def _function(lib, name: str, *argtypes):
    function = getattr(lib, name)
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function


def _check(code: int, call: str) -> None:
    if code != CUDA_SUCCESS:
        raise RuntimeError(f"{call} failed (CUresult {code}): this GPU or driver cannot hold a stream")


if __name__ == "__main__":
    print(json.dumps(dataclasses.asdict(query_driver())))
