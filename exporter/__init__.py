"""The stages that make ONNX artifacts: export from PyTorch, simplify, FP16, INT8 (static and
dynamic), transformer fusions, activation smoothing, TensorRT engines. Each is listed in
edgeopt.stages; every one verifies its result against its input."""

import os

# onnxruntime writes telemetry under the temp folder and the home cache unless this is
# set before its first import; a tool must not litter the user's folders.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
