"""Runtimes behind one interface: `available()`, `probe(id)`, `load(id, artifact, options)`."""

import os
import sys

# onnxruntime writes telemetry under the temp folder and the home cache unless this is
# set before its first import; a tool must not litter the user's folders.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# `import openvino` (and nncf) otherwise writes ~/intel/openvino_ga_cid and ~/intel/stats and
# forks a process that posts usage events to Google Analytics; both fall back to their own
# stubs when openvino_telemetry cannot be imported. Too late if openvino is imported already.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

from runtimes.registry import RUNTIMES, RuntimeInfo, available, load, probe  # noqa: E402

__all__ = ["RUNTIMES", "RuntimeInfo", "available", "load", "probe"]
