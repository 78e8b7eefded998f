"""`edgeopt doctor`: what this machine can run, and why not."""

from __future__ import annotations

from edgeopt.core.machine import fingerprint
from edgeopt.core.targets import Target
from runtimes import available


def report() -> list[str]:
    machine = fingerprint()
    flags = machine["cpu_flags"]
    lines = [
        f"cpu       {machine['cpu']}",
        f"cores     {machine['logical_cores']} logical, {machine['physical_cores']} physical; memory {machine['memory_gb']} GB",
        f"flags     {' '.join(flags) or 'none of ' + ', '.join(('avx2', 'avx512f', 'avx512_vnni'))}",
        f"target    {machine['target']} ({machine['target_reason']}): INT8 built with --target auto is "
        f"{_flavour(machine['target'])}",
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


def _flavour(target: str) -> str:
    from exporter.quantize import choose_flavour

    flavour = choose_flavour(Target(target))
    bits = "7-bit" if flavour.reduce_range else "8-bit"
    return f"{flavour.activations} activations, {bits} {flavour.weights} weights"


def _version(machine: dict, package: str) -> str | None:
    version = machine["libraries"].get(package)
    return f"{package} {version}" if version else None
