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
        *_cuda_lines(machine),
        f"onnxrt    {_onnxruntime()}",
        f"openvino  {_openvino(machine['libraries'])}",
        "libraries " + ", ".join(f"{name} {version}" for name, version in machine["libraries"].items() if version),
        "",
        "runtimes",
    ]
    for runtime_id, availability in available().items():
        lines.append(f"  {runtime_id:<15} {'ok' if availability.ok else 'no':<3} {availability.reason}")
    return lines


def _cuda_lines(machine: dict) -> list[str]:
    """The driver (asked in a child process), the CUDA binding TensorRT sessions use, and
    TensorRT's wheel: the three must agree on a CUDA major."""
    from runtimes import cuda

    driver = cuda.driver()
    libraries = machine["libraries"]
    wheels = [
        f"{name} {libraries[name]}" for name in ("tensorrt-cu13", "tensorrt-cu12", "tensorrt") if libraries.get(name)
    ]
    tensorrt = wheels[0] if wheels else None
    mismatch = cuda.installed_mismatch()
    return [
        f"driver    {driver.reason}",
        f"cuda      {cuda.backend_summary()}",
        f"tensorrt  {tensorrt or 'not installed (pip install edgeopt[tensorrt] on a CUDA machine)'}"
        + (f"; {mismatch}" if mismatch else ""),
    ]


def _onnxruntime() -> str:
    """Which onnxruntime build owns the onnxruntime/ folder: the CPU one or the GPU one
    (and its CUDA), never both."""
    from runtimes import ort_providers

    owners = ort_providers.owners()
    problem = ort_providers.install_problem(owners)
    if problem:
        return problem
    import onnxruntime
    from onnxruntime.capi import build_and_package_info

    cuda_version = getattr(build_and_package_info, "cuda_version", None)
    build = f"GPU build for CUDA {cuda_version}" if cuda_version else "CPU build; edgeopt[gpu] for the GPU one"
    return f"{owners[0]} {onnxruntime.__version__} ({build})"


def _openvino(libraries: dict) -> str:
    """OpenVINO (the ov-cpu runtimes) with what its CPU plugin computes in, and NNCF (quantize_nncf)."""
    if not libraries.get("openvino"):
        return "not installed (pip install 'edgeopt[openvino]' for ov-cpu, ov-cpu-bf16 and quantize_nncf)"
    from runtimes.openvino import capabilities

    listed = capabilities()
    plugin = (
        f"CPU plugin: {', '.join(listed)}"
        if listed is not None
        else "no CPU plugin (edgeopt doctor's runtimes say why)"
    )
    nncf = f"nncf {libraries['nncf']}" if libraries.get("nncf") else "no nncf (quantize_nncf needs it)"
    return f"openvino {libraries['openvino']} ({plugin}); {nncf}"


def _flavour(target: str) -> str:
    from exporter.quantize import choose_flavour

    flavour = choose_flavour(Target(target))
    bits = "7-bit" if flavour.reduce_range else "8-bit"
    return f"{flavour.activations} activations, {bits} {flavour.weights} weights"
