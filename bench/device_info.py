"""What a device is and can run: `python -m bench.device_info ROOT`, one JSON line: its Python, the modules the measuring code needs that it lacks, its
fingerprint (CPU, flags, cores, memory, libraries), each runtime's availability with
the reason, and the free disk under ROOT (the device's cache).

Written for whatever Python the device has, so that an old one is reported, not a
traceback: nothing here needs more than Python 3.6 until the version is checked.
"""

import importlib.util
import json
import os
import shutil
import sys

NEEDED = ("numpy", "psutil")  # what the measuring code imports besides a runtime
MIN_PYTHON = (3, 11)
# artifacts measured on the host only, by format, and why
HOST_ONLY = {
    "torch": "measured on the host only: a torch artifact's factory code stays there (measure its ONNX export here)",
    "trt-engine": "measured on the host only: a TensorRT engine is built for the GPU that runs it (build it here)",
}


def info(root):
    result = {
        "python": sys.executable,
        "version": ".".join(str(part) for part in sys.version_info[:3]),
        "root": root,
        "disk_free_bytes": shutil.disk_usage(root).free,
        "missing": [],
    }
    if sys.version_info[:2] < MIN_PYTHON:
        result["missing"].append(f"Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
        return result
    result["missing"] = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if result["missing"]:
        return result
    from edgeopt.core.machine import fingerprint
    from runtimes import RUNTIMES, probe

    result["fingerprint"] = fingerprint()
    result["runtimes"] = {}
    for runtime_id, runtime in RUNTIMES.items():
        host_only = [HOST_ONLY[f] for f in runtime.formats if f in HOST_ONLY]
        if len(host_only) == len(runtime.formats):  # not probed: importing torch alone takes seconds on a small board
            result["runtimes"][runtime_id] = {"ok": False, "reason": host_only[0]}
            continue
        try:
            availability = probe(runtime_id)
            result["runtimes"][runtime_id] = {"ok": availability.ok, "reason": availability.reason}
        except Exception as err:  # a runtime whose module cannot load here is one this device lacks
            result["runtimes"][runtime_id] = {"ok": False, "reason": f"{type(err).__name__}: {err}"}
    return result


def main(argv):
    root = os.path.abspath(os.path.expanduser(argv[0]))
    os.makedirs(root, exist_ok=True)
    sys.stdout.write(json.dumps(info(root)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
