"""The `build_trt` stage: an ONNX artifact → a TensorRT engine, verified against it.

The engine's precision follows its source (strong typing): build from the FP32 export,
the convert_fp16 artifact, or a quantize_int8 artifact with target tensorrt (symmetric
S8 QDQ, because TensorRT builds INT8 from explicit quantization only). On TensorRT 10
`precision: fp16` also builds FP16 kernels over an FP32 graph (weakly typed).
"""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from bench.verify import verify_against
from edgeopt.core.artifact import Artifact, Format, Precision, directory_sha256
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError
from edgeopt.core.numeric import Tolerance
from edgeopt.core.onnx_model import load_onnx
from runtimes.tensorrt_settings import DimRange, EngineMeta, build_flags, derive_profile


class EnginePrecision(StrEnum):
    SOURCE = "source"
    FP16 = "fp16"


class DimRangeOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: PositiveInt
    opt: PositiveInt
    max: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> DimRangeOption:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        return self


# per engine precision: how close it must stay to its source ONNX artifact. FP32 engines
# may run TF32 matmuls on Ampere and later (10-bit mantissa), hence not 1e-4.
TOLERANCES = {
    Precision.FP32: Tolerance(atol=0.01, rtol=0.01, min_cosine=0.9999),
    Precision.FP16: Tolerance(atol=0.05, rtol=0.01, min_cosine=0.999),
    Precision.INT8_QDQ: Tolerance(atol=1.0, rtol=1.0, min_cosine=0.99),
}


class BuildTrtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: EnginePrecision = Field(
        EnginePrecision.SOURCE,
        description="source: the ONNX artifact's own types (strongly typed; INT8 from QDQ); fp16: FP16 kernels over an FP32 graph (TensorRT 10 only)",
    )
    dims: dict[str, DimRangeOption] = Field(
        {},
        description="min/opt/max per symbolic dim; in a recipe the batch dim defaults to 1 / the largest benchmarked batch / the largest batch run, other dims to their size in the data",
    )
    workspace_mb: PositiveInt = Field(4096, description="the builder's workspace memory limit, in MiB")
    tolerance: Tolerance | None = Field(
        None, description="agreement with the source artifact on the probe (default: by the engine's precision)"
    )


def with_batch_range(
    options: BuildTrtOptions, artifact: Artifact, benchmarked: list[int], every: list[int]
) -> BuildTrtOptions:
    """Fill the batch dim's range from the batch sizes a recipe runs, unless it is given:
    opt is the largest benchmarked batch, max the largest of any pass (benchmark,
    accuracy, verification)."""
    dims = dict(options.dims)
    for spec in artifact.io.inputs:
        batch = spec.shape[0] if spec.shape else None
        if isinstance(batch, str) and batch not in dims:
            dims[batch] = DimRangeOption(min=1, opt=max(benchmarked), max=max(every))
    return options.model_copy(update={"dims": dims})


def asymmetric_quantizers(model: onnx.ModelProto) -> list[str]:
    """QuantizeLinear nodes TensorRT cannot build: an unsigned type or a nonzero zero point."""
    constants = {init.name: init for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is None:  # absent: uint8 zero
            found.append(node.name)
            continue
        values = onnx.numpy_helper.to_array(zero_point)
        if values.dtype != np.int8 or np.any(values != 0):
            found.append(node.name)
    return found


# what TensorRT's dequantize layer takes (onnx-tensorrt's operator matrix: INT8 and FP8; INT4
# and FP4 since TensorRT 10); int32, the type of ONNX Runtime's quantized biases, is not one
_TENSORRT_DEQUANTIZES = {
    onnx.TensorProto.INT8,
    onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.INT4,
    onnx.TensorProto.FLOAT4E2M1,
}


def wide_dequantizers(model: onnx.ModelProto) -> list[str]:
    """DequantizeLinear nodes over a constant TensorRT cannot dequantize (int32 biases)."""
    types = {init.name: init.data_type for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and types.get(node.input[0], onnx.TensorProto.INT8) not in _TENSORRT_DEQUANTIZES
    ]


def _refuse_unfit_qdq(artifact: Artifact) -> None:
    model = load_onnx(artifact.path, load_weights=True)
    unfit = asymmetric_quantizers(model)
    if unfit:
        raise ExportError(
            f"{artifact.path}: {len(unfit)} QuantizeLinear nodes (first: {unfit[0]}) are unsigned or have zero points; TensorRT needs symmetric S8 QDQ: quantize with target: tensorrt"
        )
    wide = wide_dequantizers(model)
    if wide:
        raise ExportError(
            f"{artifact.path}: {len(wide)} DequantizeLinear nodes (first: {wide[0]}) dequantize int32 (quantized biases), which TensorRT cannot parse; quantize again with target: tensorrt"
        )


def build_trt(artifact: Artifact, options: BuildTrtOptions, context: StageContext) -> Artifact:
    from runtimes import tensorrt

    if artifact.format is not Format.ONNX:
        raise ExportError(f"{artifact.path}: build_trt takes an ONNX artifact, this one is {artifact.format}")
    if artifact.precision is Precision.INT8_QDQ:
        _refuse_unfit_qdq(artifact)
    device = tensorrt.here()
    flags = build_flags(device.tensorrt_version, artifact.precision, options.precision is EnginePrecision.FP16)
    observed = {name: array.shape for name, array in context.probe.items()}
    ranges = {name: DimRange(r.min, r.opt, r.max) for name, r in options.dims.items()}
    profile = derive_profile(artifact.io.inputs, ranges, observed)
    workspace_bytes = options.workspace_mb * 2**20
    engine_path = context.out_dir / "model.engine"
    timing_caches = context.cache_dir / "tensorrt-timing" if context.cache_dir else None
    tensorrt.build_engine(artifact.path, engine_path, flags, profile, workspace_bytes, timing_caches, context.verbose)
    meta = EngineMeta(
        device,
        artifact.sha256,
        flags.precision,
        flags.strongly_typed,
        flags.builder_flags,
        profile,
        workspace_bytes,
        dataclasses.asdict(artifact.io),
    )
    tensorrt.meta_path(engine_path).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    result = Artifact(
        path=engine_path,
        format=Format.TRT_ENGINE,
        precision=flags.precision,
        stage="build_trt",
        options=options.model_dump(mode="json"),
        parent=artifact.sha256,
        io=artifact.io,
        sha256=directory_sha256(context.out_dir),
        modules=artifact.modules,
        engine=meta.to_json(),
        facts={"size_bytes": engine_path.stat().st_size},
    )
    tolerance = options.tolerance or TOLERANCES[flags.precision]
    # a QDQ source runs as written on the CPU: its quantization semantics, the engine's reference
    simulate = artifact.precision is Precision.INT8_QDQ
    verification = verify_against(
        artifact, result, context.probe, tolerance, context.verbose, simulate_reference=simulate
    )
    return dataclasses.replace(result, verification=verification)
