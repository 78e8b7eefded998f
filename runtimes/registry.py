"""The table of runtime ids, and dispatch to the module that implements each."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from edgeopt.core.artifact import Artifact, Format, Precision
from edgeopt.core.errors import RuntimeUnavailable
from runtimes.base import Availability, Session, SessionOptions


@dataclass(frozen=True)
class RuntimeInfo:
    """formats: the artifact formats it runs.
    compute: the precision it runs float layers in where that is not the artifact's own
    (torch in FP16 on the GPU, OpenVINO in BF16); its rows are recorded in it."""

    id: str
    module: str
    device: str
    formats: tuple[Format, ...]
    compute: Precision | None = None

    @property
    def half(self) -> bool:
        return self.compute is Precision.FP16

    def runs(self, format: Format) -> bool:
        return format in self.formats

    def row_precision(self, precision: Precision | str) -> str:
        """What an artifact of `precision` computes in here: float artifacts in `compute`,
        INT8 ones in INT8; BF16 weights in FP32 where the runtime does not compute BF16."""
        if str(precision) not in (Precision.FP32, Precision.FP16, Precision.BF16):
            return str(precision)
        if self.compute is not None:
            return str(self.compute)
        return str(Precision.FP32) if str(precision) == Precision.BF16 else str(precision)


OPENVINO_FORMATS = (Format.ONNX, Format.OPENVINO)

RUNTIMES: dict[str, RuntimeInfo] = {
    info.id: info
    for info in (
        RuntimeInfo("ort-cpu", "runtimes.ort", "cpu", (Format.ONNX,)),
        RuntimeInfo("ort-cuda", "runtimes.ort", "cuda", (Format.ONNX,)),
        RuntimeInfo("ort-trt", "runtimes.ort", "trt", (Format.ONNX,)),
        RuntimeInfo("ov-cpu", "runtimes.openvino", "cpu", OPENVINO_FORMATS),
        RuntimeInfo("ov-cpu-bf16", "runtimes.openvino_bf16", "cpu", OPENVINO_FORMATS, Precision.BF16),
        RuntimeInfo("torch-cpu", "runtimes.torch_eager", "cpu", (Format.TORCH,)),
        RuntimeInfo("torch-cuda", "runtimes.torch_eager", "cuda", (Format.TORCH,)),
        RuntimeInfo("torch-cuda-fp16", "runtimes.torch_eager", "cuda", (Format.TORCH,), Precision.FP16),
        RuntimeInfo("trt", "runtimes.tensorrt", "gpu", (Format.TRT_ENGINE,)),
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
