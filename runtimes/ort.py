"""ONNX Runtime sessions on the CPU, CUDA and TensorRT execution providers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import Artifact, Format, TensorSpec
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable, first_line
from runtimes import ort_providers
from runtimes.base import Availability, SessionBase, SessionOptions

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

# the folder beside a store's artifacts where ONNX Runtime's TensorRT provider keeps engines
RUNTIME_CACHE = "ort-tensorrt"

# where the first provider cannot take a node: TensorRT's leftovers run on CUDA, not the CPU
_FALLBACK = {"cpu": [], "cuda": [], "trt": ["CUDAExecutionProvider"]}

# ONNX Runtime's own load-time fusions that make the CPU slower. SkipLayerNormFusion turns a
# residual Add + LayerNormalization into SkipLayerNormalization, whose CPU kernel (ORT 1.32,
# AVX2) took 2.39 ms where the Add and LayerNormalization took 0.46 ms together (8×128×384,
# one thread): about 9% of all-MiniLM-L6-v2's INT8 latency. Graphs that already hold
# SkipLayerNormalization nodes (optimize_transformer's default) are not changed by this.
DISABLED_FUSIONS = {"cpu": ["SkipLayerNormFusion"], "cuda": [], "trt": []}

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def probe(device: str) -> Availability:
    """Whether ort-<device> runs here: onnxruntime installed once, with the provider built
    in, and (for CUDA and TensorRT) the provider really starting."""
    problem = _build_problem(device)
    if problem:
        return Availability(False, problem)
    import onnxruntime as ort

    if device == "cpu":
        return Availability(True, f"onnxruntime {ort.__version__} with {PROVIDERS[device]}")
    ok, reason = ort_providers.starts(PROVIDERS[device])
    return Availability(ok, reason)


def _build_problem(device: str) -> str | None:
    """What the installed build lacks for `device`; cheap (no session), so that loading
    in a measuring process costs no more than the session itself."""
    problem = ort_providers.problem_here()
    if problem:
        return problem
    import onnxruntime as ort

    provider = PROVIDERS[device]
    if provider in ort.get_available_providers():
        return None
    package = f"{(*ort_providers.owners(), 'onnxruntime')[0]} {ort.__version__}"
    return f"{package} has no {provider} (install edgeopt[gpu] on a CUDA machine)"


class OrtSession(SessionBase):
    """placement: nodes per execution provider, where ONNX Runtime recorded it (GPU)."""

    def __init__(self, session, device: str, placement: dict[str, int] | None = None):
        self._session = session
        self._device = device
        self.placement = placement or {}
        self.inputs = tuple(_spec(a) for a in session.get_inputs())
        self.outputs = tuple(_spec(a) for a in session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self._session.run(self._output_names, feeds)
        except Exception as err:  # ORT's Fail/InvalidArgument/RuntimeException: the feeds do not fit the model
            raise DataError(f"onnxruntime cannot run the model on these inputs: {first_line(err)}") from err
        return dict(zip(self._output_names, results, strict=True))

    def sync(self) -> None:
        """session.run returns host arrays, so the device is idle when it returns."""

    def close(self) -> None:
        self._session = None


def load(artifact: Artifact, device: str, options: SessionOptions) -> OrtSession:
    if artifact.format is not Format.ONNX:
        raise RuntimeUnavailable(f"ort-{device}: cannot run a {artifact.format} artifact")
    if device == "trt":
        options = tensorrt_session_options(artifact, options)
    return open_model(artifact.path, device, options)


def tensorrt_session_options(artifact: Artifact, options: SessionOptions) -> SessionOptions:
    """Engines cached beside the store's artifacts (not inside one: that would change its
    hash), for the profile of the inputs with symbolic dims (the provider wants them all,
    and only them)."""
    dynamic = {spec.name for spec in artifact.io.inputs if any(isinstance(d, str) for d in spec.shape)}
    profile = {name: shapes for name, shapes in (options.profile or {}).items() if name in dynamic}
    cache_dir = options.cache_dir or artifact.directory.parent / RUNTIME_CACHE
    return dataclasses.replace(options, cache_dir=cache_dir, profile=profile or None)


def open_model(source: Path | bytes, device: str = "cpu", options: SessionOptions | None = None) -> OrtSession:
    """A session on a model file or a serialised model, for stages that run models they
    are still building (no Artifact record yet). On CUDA and TensorRT, a session whose
    provider did not start is refused (RuntimeUnavailable), never run somewhere else."""
    problem = _build_problem(device)
    if problem:
        raise RuntimeUnavailable(f"ort-{device}: {problem}")
    import onnxruntime as ort

    options = options or SessionOptions()
    session_options = _session_options(ort, device, options)
    name = source if isinstance(source, Path) else "the model"
    if device != "cpu":
        ort_providers.load_libraries(PROVIDERS[device])
    try:
        # Python's retry on another provider prints a banner on stdout; enable_fallback=0 lets the error through
        with contextlib.redirect_stdout(sys.stderr):
            session = ort.InferenceSession(
                str(source) if isinstance(source, Path) else source,
                session_options,
                providers=_providers(device, options),
                disabled_optimizers=DISABLED_FUSIONS[device] if options.optimize else None,
                enable_fallback=0,
            )
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
        if device != "cpu":
            raise RuntimeUnavailable(
                f"ort-{device}: {PROVIDERS[device]} failed on {name}: {ort_providers.message(err)}"
            ) from err
        raise ModelLoadError(f"{name}: onnxruntime cannot load it: {first_line(err)}") from err
    return _checked(session, device)


def dies_opening(path: Path) -> str | None:
    """The signal that killed a process opening `path` on the CPU (None when it opened or
    refused it): a C++ assertion in ONNX Runtime's graph optimizer aborts the process, which no
    exception reports, so the model is opened in a child process first."""
    code = "import sys, pathlib; from runtimes.ort import open_model; open_model(pathlib.Path(sys.argv[1]))"
    child = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, check=False)
    return signal.Signals(-child.returncode).name if child.returncode < 0 else None


def _session_options(ort, device: str, options: SessionOptions):
    session_options = ort.SessionOptions()
    level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if options.optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session_options.graph_optimization_level = level
    session_options.log_severity_level = 1 if options.verbose else 3
    if options.exact_int8:
        session_options.add_session_config_entry("session.x64quantprecision", "1")
    if options.threads is not None:
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
    if device != "cpu":
        session_options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    return session_options


def _providers(device: str, options: SessionOptions) -> list:
    """The providers in order: the device's own first, with its options."""
    if device == "trt" and options.cache_dir is not None:
        first = (PROVIDERS[device], ort_providers.tensorrt_options(options.cache_dir, options.profile))
    else:
        first = PROVIDERS[device]
    return [first, *_FALLBACK[device]]


def _checked(session, device: str) -> OrtSession:
    """The session, if it runs on the provider asked for."""
    if device == "cpu":
        return OrtSession(session, device)
    placement = ort_providers.placement(session)
    problem = ort_providers.registered_problem(PROVIDERS[device], list(session.get_providers()), placement)
    if problem:
        raise RuntimeUnavailable(f"ort-{device}: {problem} (edgeopt doctor says why)")
    session.disable_fallback()  # a provider failing inside run() raises, not reruns on the CPU
    if len(placement) > 1:
        log.info("ort-%s: %s", device, ", ".join(f"{count} nodes on {name}" for name, count in placement.items()))
    return OrtSession(session, device, placement)


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape or ())
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))
