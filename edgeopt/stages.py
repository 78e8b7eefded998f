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


STAGES: dict[str, Stage] = {
    "export_onnx": Stage(
        export_onnx, ExportOnnxOptions, 1, Format.TORCH, Format.ONNX, "PyTorch → ONNX, verified against PyTorch"
    ),
    "simplify": Stage(
        simplify, SimplifyOptions, 1, Format.ONNX, Format.ONNX, "fold constants, drop dead nodes, fuse; verified"
    ),
    "convert_fp16": Stage(
        convert_fp16, ConvertFp16Options, 2, Format.ONNX, Format.ONNX, "FP32 → FP16, overflow-prone nodes kept FP32"
    ),
}
