"""`edgeopt doctor`: what this machine can run, and why not."""

from __future__ import annotations

from bench.machine import fingerprint
from runtimes import available


def report() -> list[str]:
    machine = fingerprint()
    flags = machine["cpu_flags"]
    vnni = (
        "yes"
        if {"avx512_vnni", "avx_vnni"} & set(flags)
        else "no (INT8 on ONNX Runtime wants unsigned activations here)"
    )
    lines = [
        f"cpu       {machine['cpu']}",
        f"cores     {machine['logical_cores']} logical, {machine['physical_cores']} physical; memory {machine['memory_gb']} GB",
        f"flags     {' '.join(flags) or 'none of ' + ', '.join(('avx2', 'avx512f', 'avx512_vnni'))}",
        f"vnni      {vnni}",
        f"gpu       {', '.join(machine['gpus']) or 'none (nvidia-smi not found or no device)'}",
        f"tensorrt  {_version(machine, 'tensorrt') or 'not installed (pip install edgeopt[tensorrt] on a CUDA machine)'}",
        f"pycuda    {_version(machine, 'pycuda') or 'not installed (pip install edgeopt[tensorrt])'}",
        f"ort gpu   {_version(machine, 'onnxruntime-gpu') or 'not installed (pip uninstall onnxruntime, then pip install edgeopt[gpu])'}",
        "libraries " + ", ".join(f"{name} {version}" for name, version in machine["libraries"].items() if version),
        "",
        "runtimes",
    ]
    for runtime_id, availability in available().items():
        lines.append(f"  {runtime_id:<15} {'ok' if availability.ok else 'no':<3} {availability.reason}")
    return lines


def _version(machine: dict, package: str) -> str | None:
    version = machine["libraries"].get(package)
    return f"{package} {version}" if version else None
