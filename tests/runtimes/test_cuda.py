"""runtimes.cuda: the driver probe (against this machine and a stand-in libcuda built from
tests/runtimes/libcuda_stub.c), the choice of CUDA binding, the CUDA-major check between
the TensorRT and cuda-python wheels, and the stream gate's calls into the driver."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeopt.core.errors import RuntimeUnavailable
from runtimes import cuda

STUB = Path(__file__).with_name("libcuda_stub.c")


@pytest.fixture(scope="module")
def stub_library(tmp_path_factory):
    """Build the stand-in driver library: one with a GPU, one whose GPU is hidden."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the libcuda stand-in")
    folder = tmp_path_factory.mktemp("libcuda")
    built = {}
    for name, flags in (("gpu", []), ("hidden", ["-DNO_DEVICE"])):
        built[name] = folder / f"libcuda-{name}.so"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O1", *flags, "-o", str(built[name]), str(STUB)], check=True, timeout=120
        )
    return built


def test_driver_query_names_the_gpus_and_the_cuda_the_driver_runs(stub_library):
    found = cuda.query_driver(str(stub_library["gpu"]))
    assert found.ok and found.devices == ("NVIDIA Stub 9000",) and found.version == 13000
    assert found.reason == "NVIDIA Stub 9000; driver runs CUDA up to 13.0"


def test_driver_query_says_why_when_cuinit_fails(stub_library):
    found = cuda.query_driver(str(stub_library["hidden"]))
    assert not found.ok and found.reason == "CUDA driver present but cuInit failed: CUDA_ERROR_NO_DEVICE (100)"


def test_driver_query_without_the_driver_library_says_there_is_no_driver(tmp_path):
    found = cuda.query_driver(str(tmp_path / "libcuda.so.1"))
    assert not found.ok and found.reason.startswith("no NVIDIA driver (")


def test_driver_probe_asks_in_a_child_process_and_agrees_with_this_machine():
    """`driver()` must not initialise CUDA here; its answer is the in-process one."""
    try:
        ctypes.CDLL(cuda.LIBCUDA)
    except OSError:
        has_library = False
    else:
        has_library = True
    found = cuda.driver()
    assert found.reason
    if not has_library:
        assert not found.ok and found.reason.startswith("no NVIDIA driver")


def test_stream_gate_waits_on_a_mapped_word_through_the_v2_entry_point(stub_library):
    """cuda.h maps cuStreamWaitValue32 to its _v2 symbol; the legacy one is off by default
    (the stub's returns 801, CUDA_ERROR_NOT_SUPPORTED)."""
    library = ctypes.CDLL(str(stub_library["gpu"]))
    last = (ctypes.c_uint64 * 4)()
    gate = cuda.StreamGate(str(stub_library["gpu"]))
    gate.close(0x1234)
    library.stub_last_wait(last)
    assert list(last) == [0x1234, gate._device, 1, 0]  # stream, word, ticket, CU_STREAM_WAIT_VALUE_GEQ
    assert gate._word.value == 0  # held
    gate.open()
    assert gate._word.value == 1
    gate.open()  # twice (the watchdog and the harness) is harmless
    gate.close(0x1234)
    library.stub_last_wait(last)
    assert last[2] == 2 and gate._word.value == 1
    gate.free()


def test_stream_gate_without_a_driver_is_a_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot hold a stream"):
        cuda.StreamGate(str(tmp_path / "libcuda.so.1"))


@pytest.mark.parametrize(
    ("installed", "variable", "chosen"),
    [
        ({"cuda.bindings", "pycuda"}, None, "cuda-python"),
        ({"pycuda"}, None, "pycuda"),
        (set(), None, None),
        ({"cuda.bindings", "pycuda"}, "pycuda", "pycuda"),
    ],
)
def test_backend_is_what_is_installed_cuda_python_first(monkeypatch, installed, variable, chosen):
    monkeypatch.setattr(cuda, "installed", lambda module: module in installed)
    if variable:
        monkeypatch.setenv(cuda.BACKEND_VARIABLE, variable)
    else:
        monkeypatch.delenv(cuda.BACKEND_VARIABLE, raising=False)
    assert cuda.backend() == chosen


def test_backend_variable_names_the_choices_when_it_is_wrong(monkeypatch):
    monkeypatch.setenv(cuda.BACKEND_VARIABLE, "numba")
    with pytest.raises(RuntimeUnavailable, match="EDGEOPT_CUDA_BACKEND=numba: not one of cuda-python, pycuda"):
        cuda.backend()


@pytest.mark.parametrize(
    ("distributions", "major"),
    [
        (["tensorrt-cu13", "tensorrt_cu13_libs", "tensorrt_cu13_bindings"], 13),
        (["tensorrt_cu12", "numpy"], 12),
        (["tensorrt"], None),
        (["tensorrt-cu12", "tensorrt-cu13"], None),
    ],
)
def test_tensorrt_cuda_major_comes_from_its_wheel_names(distributions, major):
    assert cuda.tensorrt_cuda_major(distributions) == major


def test_cuda_mismatch_between_tensorrt_and_cuda_python_says_what_to_install():
    assert cuda.cuda_mismatch(13, "cuda-python", "13.4.4") is None
    assert cuda.cuda_mismatch(13, "pycuda", "2026.1") is None  # built against the local toolkit
    assert cuda.cuda_mismatch(13, "cuda-python", "12.9.6") == (
        "tensorrt is built for CUDA 13 and cuda-python 12.9.6 for CUDA 12: pip install 'cuda-python>=13,<14'"
    )


def test_conftest_gates_the_gpu_marker_on_the_driver_not_on_torch(monkeypatch):
    """edgeopt installs torch's CPU build everywhere: a GPU machine set up as the README
    says must still run the gpu tests."""
    from runtimes import probe
    from tests.conftest import marker_reasons

    monkeypatch.setattr(cuda, "driver", lambda: cuda.Driver(True, "NVIDIA Stub 9000", ("NVIDIA Stub 9000",), 13000))
    assert not probe("torch-cuda").ok  # the CPU build of torch, as here
    assert marker_reasons(run_slow=False)["gpu"] is None
    monkeypatch.setattr(cuda, "driver", lambda: cuda.Driver(False, "no NVIDIA driver (gone)"))
    assert marker_reasons(run_slow=False)["gpu"] == "no GPU: no NVIDIA driver (gone)"


@pytest.mark.parametrize(
    ("installed", "says"),
    [
        ({"cuda.bindings", "pycuda"}, "cuda-python 13.4.4 (installed; pycuda 2026.1)"),
        ({"pycuda"}, "pycuda 2026.1 (installed; cuda-python not installed)"),
        (set(), "none: pip install 'edgeopt[tensorrt]' (cuda-python), or 'edgeopt[pycuda]' with a CUDA toolkit"),
    ],
)
def test_backend_summary_names_the_binding_in_use_for_doctor(monkeypatch, installed, says):
    versions = {"cuda-python": "13.4.4", "pycuda": "2026.1"}
    monkeypatch.delenv(cuda.BACKEND_VARIABLE, raising=False)
    monkeypatch.setattr(cuda, "installed", lambda module: module in installed)
    monkeypatch.setattr(cuda, "_version", lambda name: versions[name] if cuda.BACKENDS[name][0] in installed else None)
    assert cuda.backend_summary() == says
