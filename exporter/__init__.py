"""The stages that make ONNX artifacts: export from PyTorch, simplify, FP16, INT8 (static and
dynamic), transformer fusions, activation smoothing, TensorRT engines. Each is listed in
edgeopt.stages; every one verifies its result against its input."""

import os
import sys

# onnxruntime writes telemetry under the temp folder and the home cache unless this is
# set before its first import; a tool must not litter the user's folders.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# nncf and openvino phone home on import unless openvino_telemetry is blocked (see runtimes/__init__.py)
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
