"""Model → ONNX artifact: export with verification (simplify, quantize and fp16 follow)."""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from exporter.torch_export import Exporter, ExportOnnxOptions, export_onnx
from exporter.verify import Tolerance, compare_outputs

__all__ = ["ExportOnnxOptions", "Exporter", "Tolerance", "compare_outputs", "export_onnx"]
