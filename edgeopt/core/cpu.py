"""This CPU's model name and the instruction flags that decide INT8 and FP16 speed."""

from __future__ import annotations

import platform
from pathlib import Path

# x86: the instruction sets behind ONNX Runtime's INT8 and FP16 kernels; arm64: the
# dot-product (asimddp) and matrix-multiply (i8mm) instructions of its INT8 kernels
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
    "asimddp",
    "i8mm",
    "bf16",
)


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
