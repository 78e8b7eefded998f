"""The stage table: name → (function, options class, version). Explicit, no registration magic.

A stage is `function(artifact, options, context) -> Artifact`. Bumping `version`
invalidates cached outputs of older code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from edgeopt.artifact import Format
from exporter.fp16 import ConvertFp16Options, convert_fp16
from exporter.quantize import QuantizeDynamicOptions, QuantizeInt8Options, quantize_dynamic, quantize_int8
from exporter.simplify import SimplifyOptions, simplify
from exporter.torch_export import ExportOnnxOptions, export_onnx


@dataclass(frozen=True)
class Stage:
    function: Callable
    options: type[BaseModel]
    version: int
    accepts: Format
    produces: Format
    description: str
    calibrated: bool = False


STAGES: dict[str, Stage] = {
    "export_onnx": Stage(
        export_onnx, ExportOnnxOptions, 3, Format.TORCH, Format.ONNX, "PyTorch → ONNX, verified against PyTorch"
    ),
    "simplify": Stage(
        simplify, SimplifyOptions, 2, Format.ONNX, Format.ONNX, "fold constants, drop dead nodes, fuse; verified"
    ),
    "convert_fp16": Stage(
        convert_fp16, ConvertFp16Options, 3, Format.ONNX, Format.ONNX, "FP32 → FP16, overflow-prone nodes kept FP32"
    ),
    "quantize_int8": Stage(
        quantize_int8,
        QuantizeInt8Options,
        4,
        Format.ONNX,
        Format.ONNX,
        "static INT8 (QDQ), calibrated",
        calibrated=True,
    ),
    "quantize_dynamic": Stage(
        quantize_dynamic, QuantizeDynamicOptions, 1, Format.ONNX, Format.ONNX, "INT8 weights, activations per call"
    ),
}
