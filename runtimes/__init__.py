"""Runtimes behind one interface: `available()`, `probe(id)`, `load(id, artifact, options)`."""

import os

# onnxruntime writes telemetry under the temp folder and the home cache unless this is
# set before its first import; a tool must not litter the user's folders.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from runtimes.registry import RUNTIMES, RuntimeInfo, available, load, probe

__all__ = ["RUNTIMES", "RuntimeInfo", "available", "load", "probe"]
