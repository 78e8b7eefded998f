"""The machine's fingerprint, recorded beside every measurement.

Reads /proc/cpuinfo and package metadata; imports nothing heavy (TensorRT and pycuda
are looked up, not imported).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess

import psutil

from edgeopt.core.cpu import cpu_model_and_flags
from edgeopt.core.targets import host_target

LIBRARIES = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "nncf",
    "numpy",
    "tensorrt",
    "tensorrt-cu12",
    "tensorrt-cu13",
    "cuda-python",
    "pycuda",
)


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gpus() -> list[str]:
    """NVIDIA GPUs as nvidia-smi reports them (name, memory, driver); empty without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def fingerprint() -> dict:
    model, flags = cpu_model_and_flags()
    target, why = host_target(platform.machine(), flags)
    return {
        "cpu": model,
        "cpu_flags": flags,
        "arch": platform.machine(),
        "target": str(target),
        "target_reason": why,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "gpus": gpus(),
        "tensorrt_importable": importlib.util.find_spec("tensorrt") is not None,
        "pycuda_importable": importlib.util.find_spec("pycuda") is not None,
    }
