"""The extras in pyproject.toml: ONNX Runtime's CPU and GPU builds are alternatives that no
extra can combine by accident, the GPU wheels agree on one CUDA major, and `make setup`
takes the CPU build."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def _extras_pulled(requirements: list[str]) -> set[str]:
    """The edgeopt extras a list pulls in through edgeopt[...]."""
    return {extra for r in requirements if Requirement(r).name == "edgeopt" for extra in Requirement(r).extras}


def test_onnxruntime_builds_are_exclusive_extras():
    """Both builds install the same onnxruntime/ folder: neither may come from the base
    dependencies or from any other extra, directly or through edgeopt[...]."""
    builds = {"onnxruntime", "onnxruntime-gpu"}
    assert not _names(PROJECT["dependencies"]) & builds
    assert _names(EXTRAS["cpu"]) == {"onnxruntime"} and _names(EXTRAS["gpu"]) == {"onnxruntime-gpu"}
    for extra, requirements in EXTRAS.items():
        if extra not in ("cpu", "gpu"):
            assert not _names(requirements) & builds, extra
            assert not _extras_pulled(requirements) & {"cpu", "gpu"}, extra


def test_gpu_wheels_are_pinned_to_one_cuda_major():
    """onnxruntime-gpu 1.31.1 is built for CUDA 13.0 (its build_and_package_info says so);
    TensorRT and cuda-python must load the same major into the process."""
    gpu = Requirement(EXTRAS["gpu"][0])
    assert gpu.extras == {"cuda", "cudnn"} and str(gpu.specifier) == "==1.31.1"
    tensorrt = {Requirement(r).name: Requirement(r) for r in EXTRAS["tensorrt"]}
    assert set(tensorrt) == {"tensorrt-cu13", "cuda-python"}
    cuda_python = tensorrt["cuda-python"].specifier
    assert cuda_python.contains("13.4.4") and not cuda_python.contains("12.9.6") and not cuda_python.contains("14.0.0")
    # TensorRT 10: ONNX Runtime's TensorRT provider links libnvinfer.so.10
    assert tensorrt["tensorrt-cu13"].specifier.contains("10.16.1.11")
    assert not tensorrt["tensorrt-cu13"].specifier.contains("11.4.0.106")


def test_make_setup_installs_the_cpu_build_by_default():
    makefile = (ROOT / "Makefile").read_text()
    assert "EXTRAS ?= cpu,dev" in makefile and "-e '.[$(EXTRAS)]'" in makefile
