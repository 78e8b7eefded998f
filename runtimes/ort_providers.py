"""Which ONNX Runtime is installed, and which of its execution providers really start here.

A GPU build lists the CUDA and TensorRT providers whether or not their libraries load;
a session whose provider cannot start drops to the next one with only a log line (or,
when creation raises, Python's retry prints a banner on stdout and builds a CPU
session). So `starts(provider)` opens a one-node session on the provider alone in a
child process, where a crashing provider library cannot take this process down and its
log can be read for the reason; and `registered_problem` checks every session for the
provider it actually got. `tensorrt_options` gives the TensorRT provider its engine and
timing caches and its optimization profile, so workers reuse one build.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

from edgeopt.core.errors import first_line

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
INSTALL = "pip install 'edgeopt[cpu]', or 'edgeopt[gpu]' on an NVIDIA machine"
START_TIMEOUT_S = 300.0  # the TensorRT provider builds an engine for the one-node model
_SOURCE_PREFIX = re.compile(r"^\S+\.(?:cc|cpp|h):\d+ [^(]*\(.*?\)\s+")
_LOG_REASON = re.compile(r"(Failed to (?:load|create)[^\n]*|Please install[^\n]*|Require[^\n]*)")

Shape = tuple[int, ...]


@functools.cache
def owners() -> tuple[str, ...]:
    """Which of the two builds edgeopt offers are installed (each writes onnxruntime/)."""
    found = []
    for name in DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return tuple(found)


def install_problem(installed: tuple[str, ...], importable: bool = True) -> str | None:
    """Why onnxruntime cannot be trusted here: missing, or both builds in one folder."""
    if len(installed) > 1:
        return (
            f"{' and '.join(installed)} are both installed and write the same onnxruntime/ folder: "
            f"pip uninstall -y {' '.join(installed)}, then {INSTALL}"
        )
    if not installed and not importable:
        return f"onnxruntime: not installed ({INSTALL})"
    return None


def problem_here() -> str | None:
    """install_problem for this environment."""
    return install_problem(owners(), importlib.util.find_spec("onnxruntime") is not None)


def load_libraries(provider: str) -> None:
    """Make the provider's libraries findable: the CUDA and cuDNN wheels (ONNX Runtime's
    preload_dlls), and TensorRT's own wheel, whose libnvinfer the provider links to by
    name. Their messages go to the debug log, not to stdout (a worker's answer channel)."""
    import onnxruntime as ort

    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        if hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        if provider == "TensorrtExecutionProvider":
            with contextlib.suppress(Exception):
                import tensorrt  # noqa: F401  loads libnvinfer.so.N by its soname
    if said.getvalue().strip():
        log.debug("loading %s's libraries: %s", provider, said.getvalue().strip())


def start_here(provider: str) -> dict:
    """A one-node session on `provider` alone, in this process."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    load_libraries(provider)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        with contextlib.redirect_stdout(sys.stderr):
            session = ort.InferenceSession(model.SerializeToString(), options, providers=[provider], enable_fallback=0)
    except Exception as err:  # ORT's Fail/RuntimeError when the provider raises at creation
        return {"ok": False, "reason": f"{provider} failed to start: {message(err)}"}
    got = list(session.get_providers())
    if not got or got[0] != provider:
        return {"ok": False, "reason": f"{provider} did not start; a session gets {', '.join(got) or 'nothing'}"}
    return {"ok": True, "reason": f"onnxruntime {ort.__version__} with {provider}"}


@functools.cache
def starts(provider: str) -> tuple[bool, str]:
    """Whether `provider` starts here, asked in a fresh interpreter, and why not."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "runtimes.ort_providers", provider],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"{provider} did not start within {START_TIMEOUT_S:.0f} s"
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return False, f"{provider} crashed its process while starting{_why(done.stderr)}"
    return answer["ok"], answer["reason"] + ("" if answer["ok"] else _why(done.stderr))


def _why(log_text: str) -> str:
    """ONNX Runtime's own reason from its log: the library that would not load."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_text)
    found = _LOG_REASON.search(text)
    return f" ({first_line(found.group(1), 240)})" if found else ""


def message(err: BaseException) -> str:
    """ONNX Runtime's error in one line, without the source file and C++ signature it
    starts with ('/onnxruntime_src/...cc:729 void onnxruntime::...(...) Please install ...')."""
    return first_line(_SOURCE_PREFIX.sub("", str(err).strip()), 240)


def registered_problem(wanted: str, registered: list[str], placement: dict[str, int]) -> str | None:
    """Why a session does not run on `wanted`: ONNX Runtime registered another provider
    first (the wanted one failed to start), or gave the wanted one no node at all.
    `placement`: nodes per provider, where ONNX Runtime recorded it."""
    if not registered or registered[0] != wanted:
        return f"{wanted} did not start; the session would run on {', '.join(registered) or 'nothing'}"
    if placement and not placement.get(wanted):
        where = ", ".join(f"{count} on {name}" for name, count in placement.items())
        return f"{wanted} took none of the model's nodes ({where})"
    return None


def placement(session) -> dict[str, int]:
    """Nodes per execution provider (ONNX Runtime 1.24+ with the session entry
    session.record_ep_graph_assignment_info set); empty where not recorded."""
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except Exception:  # older builds, or the entry was not set
        return {}
    counts: dict[str, int] = {}
    for subgraph in subgraphs:
        counts[subgraph.ep_name] = counts.get(subgraph.ep_name, 0) + len(subgraph.get_nodes())
    return counts


def tensorrt_options(cache_root: Path, profile: dict[str, tuple[Shape, Shape, Shape]] | None) -> dict[str, str]:
    """TensorRT provider options: engines and kernel timings cached under `cache_root`,
    one folder per ONNX Runtime and TensorRT version and profile (the provider's caches
    must not be reused across those); the profile as min/opt/max shapes. FP16 and INT8
    flags stay off: without them the network is strongly typed, so an FP16 artifact runs
    in FP16 and a QDQ artifact in INT8 as written."""
    import onnxruntime as ort

    try:
        import tensorrt

        tensorrt_version = tensorrt.__version__
    except ImportError:  # TensorRT's libraries from the system, not its wheel
        tensorrt_version = "system"
    shapes = _profile_strings(profile) if profile else {}
    key = hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:12] if shapes else "dynamic"
    folder = cache_root / re.sub(r"[^A-Za-z0-9.]+", "-", f"ort-{ort.__version__}-trt-{tensorrt_version}-{key}")
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(folder),
        **shapes,
    }


def _profile_strings(profile: dict[str, tuple[Shape, Shape, Shape]]) -> dict[str, str]:
    """'name:1x3x224x224,other:...' for each of min, opt and max (the provider's format)."""
    return {
        f"trt_profile_{which}_shapes": ",".join(
            f"{name}:{'x'.join(str(d) for d in shapes[index])}" for name, shapes in sorted(profile.items())
        )
        for index, which in enumerate(("min", "opt", "max"))
    }


if __name__ == "__main__":
    print(json.dumps(start_here(sys.argv[1])), flush=True)
