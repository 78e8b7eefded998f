"""The stage table: name → (function, options class, version). Explicit, no registration magic.

A stage is `function(artifact, options, context) -> Artifact`. Bumping `version`
invalidates cached outputs of older code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from edgeopt.artifact import Format
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
}
