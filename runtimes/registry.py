"""The table of runtime ids, and dispatch to the module that implements each."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from edgeopt.core.artifact import Artifact, Format
from edgeopt.core.errors import RuntimeUnavailable
from runtimes.base import Availability, Session, SessionOptions


@dataclass(frozen=True)
class RuntimeInfo:
    id: str
    module: str
    device: str
    format: Format
    half: bool = False  # torch in FP16: the GPU reference row beside FP32


RUNTIMES: dict[str, RuntimeInfo] = {
    info.id: info
    for info in (
        RuntimeInfo("ort-cpu", "runtimes.ort", "cpu", Format.ONNX),
        RuntimeInfo("ort-cuda", "runtimes.ort", "cuda", Format.ONNX),
        RuntimeInfo("ort-trt", "runtimes.ort", "trt", Format.ONNX),
        RuntimeInfo("torch-cpu", "runtimes.torch_eager", "cpu", Format.TORCH),
        RuntimeInfo("torch-cuda", "runtimes.torch_eager", "cuda", Format.TORCH),
        RuntimeInfo("torch-cuda-fp16", "runtimes.torch_eager", "cuda", Format.TORCH, half=True),
        RuntimeInfo("trt", "runtimes.tensorrt", "gpu", Format.TRT_ENGINE),
    )
}


def probe(runtime_id: str) -> Availability:
    info = RUNTIMES[runtime_id]
    return importlib.import_module(info.module).probe(info.device)


def available() -> dict[str, Availability]:
    """Every runtime id with whether this machine can use it, and why not."""
    return {runtime_id: probe(runtime_id) for runtime_id in RUNTIMES}


def load(runtime_id: str, artifact: Artifact, options: SessionOptions | None = None) -> Session:
    info = RUNTIMES.get(runtime_id)
    if info is None:
        raise RuntimeUnavailable(f"runtime '{runtime_id}' is not one of {', '.join(RUNTIMES)}")
    module = importlib.import_module(info.module)
    options = dataclasses.replace(options or SessionOptions(), half=info.half)
    return module.load(artifact, info.device, options)
