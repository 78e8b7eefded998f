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
from pathlib import Path

import psutil

# The instruction sets that decide INT8 and FP16 speed on x86 CPUs.
CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
)
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy", "tensorrt", "pycuda")


def cpu_model_and_flags(cpuinfo: str | None = None) -> tuple[str, list[str]]:
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
            model = value.strip()
        elif key in ("flags", "Features"):
            flags = set(value.split())
    return model, [f for f in CPU_FLAGS if f in flags]


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
    return {
        "cpu": model,
        "cpu_flags": flags,
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
