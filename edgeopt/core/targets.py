"""Targets: the machine a model will run on, which decides its INT8 flavour.

A target is named in the recipe (`target:`) or on the command line (`--target`);
`auto` resolves to this host from its CPU's instructions, and the resolved name is what
goes into cache keys and onto artifacts.
"""

from __future__ import annotations

import platform
from enum import StrEnum

from edgeopt.core.cpu import cpu_model_and_flags


class Target(StrEnum):
    AUTO = "auto"
    X86_AVX2 = "x86-avx2"
    X86_VNNI = "x86-vnni"
    ARM64 = "arm64"
    TENSORRT = "tensorrt"


VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
_ARM64 = ("aarch64", "arm64")


def host_target(arch: str | None = None, flags: list[str] | None = None) -> tuple[Target, str]:
    """This machine's CPU target and why, from its architecture and instruction flags."""
    arch = (arch or platform.machine()).lower()
    if flags is None:
        flags = cpu_model_and_flags()[1]
    if arch in _ARM64:
        return Target.ARM64, arch
    vnni = [flag for flag in VNNI_FLAGS if flag in flags]
    if vnni:
        return Target.X86_VNNI, f"{arch} with {vnni[0]}"
    if "avx2" in flags:
        return Target.X86_AVX2, f"{arch} with avx2, without VNNI"
    # SSE4.1's INT8 kernels multiply-add u8×s8 pairs into 16 bits as AVX2's do
    return Target.X86_AVX2, f"{arch} without avx2 or VNNI (x86-avx2's flavour is safe on every x86 INT8 kernel)"


def resolve(target: Target | str | None, default: Target | str | None = None) -> Target:
    """A concrete target: `None` takes `default`, and `auto` (or no default) this host."""
    chosen = Target(target) if target is not None else Target(default) if default is not None else Target.AUTO
    return host_target()[0] if chosen is Target.AUTO else chosen
