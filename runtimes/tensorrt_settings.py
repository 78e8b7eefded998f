"""What a TensorRT build decides without TensorRT: the features of the installed major
version, the network and builder flags for a precision, the optimization profile from
the model's symbolic dims, and the engine's metadata with the check that an engine fits
this machine. Pure functions, so every choice is tested on machines without a GPU.

Versions: TensorRT 10 builds strongly typed networks when asked (the STRONGLY_TYPED
creation flag) and still has the weakly typed BuilderFlag.FP16 path; TensorRT 11 has
only strongly typed networks (the flag is accepted and ignored) and removed
BuilderFlag.FP16/INT8 and the INT8 calibrators. INT8 is built from QDQ (explicit
quantization) on both; edgeopt never uses a calibrator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edgeopt.core.artifact import Precision, TensorSpec
from edgeopt.core.errors import RecipeError, RuntimeUnavailable

SUPPORTED_MAJORS = (10, 11)


@dataclass(frozen=True)
class Features:
    major: int
    weakly_typed_fp16: bool  # BuilderFlag.FP16 over an FP32 network: TensorRT 10 only

    @property
    def summary(self) -> str:
        fp16 = "fp16 from FP32 graphs (BuilderFlag.FP16)" if self.weakly_typed_fp16 else "no weakly typed fp16"
        return f"TensorRT {self.major}: strongly typed networks, INT8 from QDQ, {fp16}"


def features(version: str) -> Features:
    """The build features of a TensorRT version string such as '10.8.0.43'."""
    match = re.match(r"(\d+)\.", version)
    major = int(match.group(1)) if match else 0
    if major not in SUPPORTED_MAJORS:
        raise RuntimeUnavailable(
            f"tensorrt {version}: edgeopt supports TensorRT {' and '.join(map(str, SUPPORTED_MAJORS))}; install edgeopt[tensorrt]"
        )
    return Features(major, weakly_typed_fp16=major == 10)


@dataclass(frozen=True)
class BuildFlags:
    """strongly_typed: create the network with NetworkDefinitionCreationFlag.STRONGLY_TYPED,
    so each layer runs in the precision the ONNX graph gives it (QDQ decides INT8).
    builder_flags: BuilderFlag names to set on the config."""

    strongly_typed: bool
    builder_flags: tuple[str, ...]
    precision: Precision


def build_flags(tensorrt_version: str, source: Precision, fp16: bool) -> BuildFlags:
    """The flags for an engine from an ONNX artifact of precision `source`; `fp16` asks
    for FP16 kernels over an FP32 graph (weakly typed, TensorRT 10 only)."""
    found = features(tensorrt_version)
    if source is Precision.INT8_DYNAMIC:
        raise RecipeError(
            "build_trt: TensorRT builds INT8 from QDQ only (explicit quantization); build from a quantize_int8 artifact with target: tensorrt"
        )
    if source is Precision.BF16:
        raise RecipeError(
            "build_trt: a convert_bf16 artifact reads its BF16 weights as FP32, so TensorRT would build an FP32 engine from it; build from its FP32 parent"
        )
    if not fp16:
        return BuildFlags(strongly_typed=True, builder_flags=(), precision=source)
    if source is not Precision.FP32:
        raise RecipeError(f"build_trt: precision fp16 takes an fp32 artifact, this one is {source}")
    if not found.weakly_typed_fp16:
        raise RecipeError(
            f"build_trt: TensorRT {tensorrt_version} has no BuilderFlag.FP16 (strong typing only); build from the convert_fp16 artifact with precision: source"
        )
    return BuildFlags(strongly_typed=False, builder_flags=("FP16",), precision=Precision.FP16)


@dataclass(frozen=True)
class DimRange:
    min: int
    opt: int
    max: int


Shape = tuple[int, ...]


def derive_profile(
    inputs: tuple[TensorSpec, ...], dims: dict[str, DimRange], observed: dict[str, Shape]
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """min/opt/max shapes per input: fixed dims as they are, each symbolic dim from `dims`,
    else the size it has in `observed` (real samples) for all three."""
    profile = {}
    for spec in inputs:
        low, best, high = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                size = DimRange(dim, dim, dim)
            elif dim in dims:
                size = dims[dim]
            elif spec.name in observed and axis < len(observed[spec.name]):
                seen = observed[spec.name][axis]
                size = DimRange(seen, seen, seen)
            else:
                raise RecipeError(f"build_trt: input '{spec.name}' has symbolic dim '{dim}'; give its range in dims")
            if not 1 <= size.min <= size.opt <= size.max:
                raise RecipeError(
                    f"build_trt: dim '{dim}' of input '{spec.name}': need 1 <= min <= opt <= max, got {size.min}/{size.opt}/{size.max}"
                )
            low.append(size.min)
            best.append(size.opt)
            high.append(size.max)
        profile[spec.name] = (tuple(low), tuple(best), tuple(high))
    return profile


@dataclass(frozen=True)
class Device:
    """The machine an engine is for: what TensorRT checks when it deserializes one."""

    tensorrt_version: str
    gpu: str
    compute_capability: str  # "9.0"

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu} (compute {self.compute_capability})"


@dataclass(frozen=True)
class EngineMeta:
    """The small file saved beside an engine."""

    device: Device
    source_sha256: str
    precision: Precision
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    profile: dict[str, tuple[Shape, Shape, Shape]]
    workspace_bytes: int
    io: dict[str, Any]  # the source's inputs and outputs (edgeopt.core.artifact.IO as JSON)

    def to_json(self) -> dict[str, Any]:
        """JSON types only (lists, not tuples): a freshly built artifact's `engine` record
        must equal the one read back from artifact.json."""
        return {
            "tensorrt_version": self.device.tensorrt_version,
            "gpu": self.device.gpu,
            "compute_capability": self.device.compute_capability,
            "source_sha256": self.source_sha256,
            "precision": str(self.precision),
            "strongly_typed": self.strongly_typed,
            "builder_flags": list(self.builder_flags),
            "profile": {
                name: {"min": list(low), "opt": list(best), "max": list(high)}
                for name, (low, best, high) in self.profile.items()
            },
            "workspace_bytes": self.workspace_bytes,
            "io": json.loads(json.dumps(self.io)),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineMeta:
        return cls(
            device=Device(data["tensorrt_version"], data["gpu"], data["compute_capability"]),
            source_sha256=data["source_sha256"],
            precision=Precision(data["precision"]),
            strongly_typed=data["strongly_typed"],
            builder_flags=tuple(data["builder_flags"]),
            profile={name: (tuple(s["min"]), tuple(s["opt"]), tuple(s["max"])) for name, s in data["profile"].items()},
            workspace_bytes=data["workspace_bytes"],
            io=data["io"],
        )


def mismatch(meta: EngineMeta, here: Device) -> str | None:
    """Why an engine cannot run here, or None. An engine is tied to the TensorRT version
    that built it and to the GPU its tactics were timed on."""
    built = meta.device
    if (built.tensorrt_version, built.gpu, built.compute_capability) == (
        here.tensorrt_version,
        here.gpu,
        here.compute_capability,
    ):
        return None
    return f"engine built with {built.describe()}, this machine has {here.describe()}"
