"""The `quantize_int8` (static, QDQ) and `quantize_dynamic` stages, on ONNX Runtime's
quantization tooling; the target (the machine the model will run on) decides the flavour,
which is recorded on the artifact with its reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import shutil
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import DataError, ExportError, RecipeError, first_line
from edgeopt.core.numeric import Tolerance
from edgeopt.core.onnx_model import has_subgraphs, load_onnx, save_onnx
from edgeopt.core.targets import Target, host_target, resolve
from exporter.budget import Budget, fit_budget
from exporter.transform import finish, keep_initializers_field, start
from runtimes.openvino_ops import OPENVINO_RUNTIMES
from runtimes.ort import dies_opening

log = logging.getLogger(__name__)

# per-channel QuantizeLinear/DequantizeLinear (the axis attribute) arrived in opset 13
MIN_QDQ_OPSET = 13


class CalibrationMethod(StrEnum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


_LOOSE = Tolerance(atol=1.0, rtol=1.0, min_cosine=0.99)
# the quantizer needs a type for every tensor; those of contrib operators (a fused
# transformer's Attention, SkipLayerNormalization) have none after shape inference
_UNTYPED_AS_FLOAT = {"DefaultTensorType": onnx.TensorProto.FLOAT}


# TensorRT's DequantizeLinear takes 8-bit (and FP8/INT4/FP4) inputs only, and ORT's default
# QuantizeBias=True writes int32 bias DequantizeLinear nodes that fail TensorRT's ONNX parse
# (onnxruntime #14229, TensorRT #3360): biases stay float, which TensorRT fuses into the layer.
# With float biases the weight scales need no widening to keep int32 biases in range.
_TENSORRT_BIASES = {"QuantizeBias": False, "QDQDisableWeightAdjustForInt32Bias": True}


class SignedActivations(StrEnum):
    TARGET = "target"
    INT8 = "int8"


class QuantizeInt8Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: CalibrationMethod = Field(CalibrationMethod.MINMAX, description="how activation ranges are calibrated")
    percentile: float = Field(99.999, gt=0, le=100, description="with method percentile: the percentile of |x| kept")
    target: Target | None = Field(
        None,
        description="the machine the INT8 model runs on: x86-avx2, x86-vnni, arm64, tensorrt, or auto (this host); "
        "default: the run's target",
    )
    samples: int = Field(256, ge=1, description="calibration samples, drawn by seed from the calibration split")
    seed: int = Field(0, description="fixes which samples calibrate and in which order")
    per_channel: bool = Field(True, description="one scale per output channel of each weight")
    signed_activations: SignedActivations = Field(
        SignedActivations.TARGET,
        description="target: activations whose range holds negative values in the target's type (UINT8 with a "
        "zero point on x86); int8: in symmetric INT8 without one, as OpenVINO's INT8 convolutions want (they pay "
        "for zero points; ONNX Runtime's x86 kernels want UINT8)",
    )
    op_types: list[str] | None = Field(
        None, description="quantize only nodes of these types, e.g. [MatMul] (default: every type ORT quantizes)"
    )
    budget: Budget | None = Field(
        None, description="keep the most sensitive nodes in float until the metric drop is within budget"
    )
    tolerance: Tolerance = Field(
        _LOOSE, description="agreement with the float model on the probe (cosine is what binds)"
    )
    keep_initializers_as_inputs: bool = keep_initializers_field()


class QuantizeDynamicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target | None = Field(
        None,
        description="the CPU the INT8 model runs on: x86-avx2, x86-vnni, arm64, or auto (this host); "
        "default: the run's target",
    )
    per_channel: bool = Field(False, description="one scale per output channel of each weight")
    op_types: list[str] | None = Field(
        None, description="quantize only nodes of these types (default: every type ORT quantizes dynamically)"
    )
    budget: Budget | None = Field(
        None, description="keep the most sensitive nodes in float until the metric drop is within budget"
    )
    tolerance: Tolerance = Field(_LOOSE, description="agreement with the float model on the probe")
    keep_initializers_as_inputs: bool = keep_initializers_field()


@dataclasses.dataclass(frozen=True)
class Flavour:
    activations: str
    weights: str
    symmetric_activations: bool
    reduce_range: bool
    reason: str


# What each target's INT8 kernels want. x86's INT8 GEMM is u8×s8 (s8×s8 ran at a sixth of
# its speed on an AVX2 machine, below FP32). Without VNNI, AVX2's vpmaddubsw adds pairs of
# u8×s8 products into 16 bits, which full-range weights can saturate (255·127·2 > 32767):
# 7-bit weights cannot. VNNI's vpdpbusd and arm64's SDOT/SMMLA accumulate in 32 bits.
FLAVOURS = {
    Target.X86_AVX2: Flavour(
        "uint8", "int8", False, True, "x86 without VNNI: U8S8 with 7-bit weights, so AVX2's 16-bit sums cannot saturate"
    ),
    Target.X86_VNNI: Flavour("uint8", "int8", False, False, "x86 with VNNI: U8S8 with full 8-bit weights"),
    Target.ARM64: Flavour(
        "int8", "int8", False, False, "arm64: S8S8 with full 8-bit weights (MLAS's SDOT and SMMLA kernels)"
    ),
    Target.TENSORRT: Flavour(
        "int8", "int8", True, False, "TensorRT builds explicit quantization from symmetric S8S8 QDQ"
    ),
}


# Dynamic INT8 keeps 8-bit weights on every CPU target: on all-MiniLM-L6-v2 on an AVX2 machine,
# 7-bit per-tensor weights fell from mean cosine 0.955 to 0.858, and per channel they gained
# nothing (0.9920 against 0.9919); see the README's "Measured choices".
DYNAMIC_WEIGHTS = "dynamic INT8: U8 activations quantized per call, 8-bit weights on every CPU target"


def choose_flavour(target: Target) -> Flavour:
    """The INT8 flavour for a resolved target (never `auto`)."""
    return FLAVOURS[target]


def quantize_int8(artifact: Artifact, options: QuantizeInt8Options, context: StageContext) -> Artifact:
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from exporter.calibration import SplitReader, compute_ranges

    if context.calibration is None:
        raise DataError("quantize_int8 needs calibration samples (a dataset with real inputs)")
    target = resolve(options.target, context.target)
    options = options.model_copy(update={"target": target})
    flavour = choose_flavour(target)
    reader = SplitReader(context.calibration, artifact.io.inputs, options.samples, options.seed)
    quant_type = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[options.method]
    extra = {"ActivationSymmetric": flavour.symmetric_activations, "WeightSymmetric": True, **_UNTYPED_AS_FLOAT}
    if target is Target.TENSORRT:
        extra |= _TENSORRT_BIASES

    # another machine's kernels: verified by the QDQ's exact semantics, not this CPU's kernels
    simulate = target is not host_target()[0]

    def run(prepared: Path, output: Path) -> None:
        subgraphs = has_subgraphs(onnx.load(str(prepared), load_external_data=False))
        cache = output.with_name("ranges.json")
        ranges = compute_ranges(prepared, reader, method, flavour.symmetric_activations, options.percentile, cache)
        overrides = signed_overrides(ranges) if options.signed_activations is SignedActivations.INT8 else {}

        def quantize(excluded: list[str]) -> None:
            quantize_static(
                str(prepared), str(output), None, quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
                reduce_range=flavour.reduce_range, activation_type=quant_type[flavour.activations],
                weight_type=quant_type[flavour.weights], calibrate_method=method,
                extra_options=extra | {"TensorQuantOverrides": overrides},
                calibration_cache_path=str(cache), nodes_to_exclude=excluded, op_types_to_quantize=options.op_types,
            )  # fmt: skip
            if subgraphs:  # each budget candidate too: the budget opens it in this process
                _refuse_if_onnxruntime_dies(output)

        quantize([])
        if options.budget is not None:
            reader.rewind()
            facts["budget"] = fit_budget(
                prepared, output, quantize, options.budget, context, reader.get_next(), simulate, artifact.modules
            )
        if overrides:
            facts["signed_activations"] = {"type": "int8", "symmetric": True, "tensors": int8_activations(output)}

    facts = {
        "flavour": dataclasses.asdict(flavour),
        "method": str(options.method),
        "calibration_samples": reader.samples,
    }
    not_for = _static_not_for(target)
    return _quantized(artifact, options, context, Precision.INT8_QDQ, "quantize_int8", run, facts, simulate, not_for)


def _static_not_for(target: Target) -> dict[str, str]:
    """The runtimes a static INT8 model built for `target` is not measured on, and why."""
    if target is Target.TENSORRT:
        return {
            "ort-cpu": "built for TensorRT (S8S8 full range), which ONNX Runtime's CPU INT8 kernels do not run faithfully",
            **dict.fromkeys(OPENVINO_RUNTIMES, "built for TensorRT: measured as the engine TensorRT builds from it"),
        }
    return {
        "ort-trt": "activations with zero points: TensorRT takes symmetric S8 QDQ only (quantize with target: tensorrt)"
    }


def signed_overrides(ranges) -> dict[str, list[dict]]:
    """quantize_static's overrides that make the activations whose calibrated range holds
    negative values symmetric INT8."""
    from onnxruntime.quantization import QuantType

    signed = (name for name, data in ranges.items() if float(np.min(data.range_value[0])) < 0)
    return {name: [{"quant_type": QuantType.QInt8, "symmetric": True}] for name in signed}


def _refuse_if_onnxruntime_dies(path: Path) -> None:
    if signal := dies_opening(path):
        raise ExportError(
            f"ONNX Runtime dies opening the INT8 graph ({signal}, in its graph optimizer): seen on a graph with "
            "a Loop quantized with op_types; quantize every op type, or use quantize_dynamic"
        )


def int8_activations(path: Path) -> int:
    """How many of a QDQ model's activation quantizers write INT8."""
    graph = onnx.load(str(path), load_external_data=False).graph
    types = {t.name: t.data_type for t in graph.initializer}
    return sum(
        node.op_type == "QuantizeLinear" and len(node.input) > 2 and types.get(node.input[2]) == onnx.TensorProto.INT8
        for node in graph.node
    )


def quantize_dynamic(artifact: Artifact, options: QuantizeDynamicOptions, context: StageContext) -> Artifact:
    """Weights INT8 ahead of time, activations quantized per call: suits transformers on CPU."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    target = resolve(options.target, context.target)
    if target is Target.TENSORRT:
        raise RecipeError("quantize_dynamic: TensorRT runs no dynamic INT8; use quantize_int8 with target: tensorrt")
    options = options.model_copy(update={"target": target})
    flavour = dataclasses.replace(choose_flavour(target), reduce_range=False, reason=DYNAMIC_WEIGHTS)
    simulate = target is not host_target()[0]

    def run(prepared: Path, output: Path) -> None:
        def quantize(excluded: list[str]) -> None:
            # the dynamic quantizer first rewrites each Gemm as MatMul `<name>_MatMul` plus Add,
            # then excludes by the new names: a Gemm kept float is named both ways
            excluded = [*excluded, *(f"{name}_MatMul" for name in excluded)]
            ort_quantize_dynamic(
                str(prepared), str(output), per_channel=options.per_channel, weight_type=QuantType.QInt8,
                op_types_to_quantize=options.op_types, nodes_to_exclude=excluded, extra_options=_UNTYPED_AS_FLOAT,
            )  # fmt: skip

        quantize([])
        if options.budget is not None:
            if context.evaluation is None:
                raise DataError("quantize_dynamic with a budget needs evaluation samples (a dataset with real inputs)")
            probe = {spec.name: context.evaluation.inputs[spec.name][:16] for spec in artifact.io.inputs}
            facts["budget"] = fit_budget(
                prepared, output, quantize, options.budget, context, probe, simulate, artifact.modules
            )

    facts: dict = {"per_channel": options.per_channel, "flavour": dataclasses.asdict(flavour)}
    return _quantized(artifact, options, context, Precision.INT8_DYNAMIC, "quantize_dynamic", run, facts, simulate)


def _quantized(
    artifact: Artifact,
    options,
    context: StageContext,
    precision: Precision,
    stage: str,
    run,
    facts: dict,
    simulate: bool = False,
    not_for: dict[str, str] | None = None,
) -> Artifact:
    """Prepare (opset, shape inference, optimizations), quantize, check and verify."""
    if artifact.precision is not Precision.FP32:
        raise ExportError(f"{artifact.path}: {stage} takes an fp32 model, this one is {artifact.precision}")
    legacy, before = start(artifact, MIN_QDQ_OPSET)
    scratch = (context.out_dir / ".quantize").resolve()  # absolute: the work below changes folder
    scratch.mkdir()
    try:
        # ORT's symbolic shape inference writes temporary models into the current folder
        with contextlib.chdir(scratch), contextlib.redirect_stdout(io.StringIO()):  # ORT prints its progress
            prepared, preprocessed = _prepare(legacy.model, scratch)
            try:
                run(prepared, scratch / "quantized.onnx")
            except DataError:
                raise
            except Exception as err:  # the quantizer raises whatever its passes raise
                raise ExportError(f"{artifact.path}: {stage} failed: {first_line(err)}") from err
        quantized = load_onnx(scratch / "quantized.onnx")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    facts = {**facts, "preprocessed": preprocessed}
    return finish(
        artifact,
        quantized,
        context,
        stage=stage,
        options=options,
        precision=precision,
        before=before,
        facts=facts,
        simulate=simulate,
        target=str(options.target),
        not_for=not_for,
        legacy=legacy,
        keep_listed=options.keep_initializers_as_inputs,
    )


def _prepare(model: onnx.ModelProto, scratch: Path) -> tuple[Path, bool]:
    """ONNX Runtime's pre-processing (shape inference, fusions) of a modernized model; a
    model the pre-processing cannot handle is quantized as it is."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = scratch / "float.onnx"
    save_onnx(model, source)
    prepared = scratch / "prepared.onnx"
    try:
        quant_pre_process(str(source), str(prepared), auto_merge=True, skip_symbolic_shape=has_subgraphs(model))
    except Exception as err:  # symbolic shape inference fails on some graphs; quantization still works
        log.warning("quantization pre-processing skipped: %s", first_line(err))
        return source, False
    return prepared, True
