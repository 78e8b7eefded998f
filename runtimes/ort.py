"""ONNX Runtime sessions on the CPU, CUDA and TensorRT execution providers."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import Artifact, Format, TensorSpec
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable, first_line
from runtimes.base import Availability, SessionBase, SessionOptions

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

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
    if importlib.util.find_spec("onnxruntime") is None:
        return Availability(False, "onnxruntime: not installed")
    import onnxruntime as ort

    provider = PROVIDERS[device]
    if provider in ort.get_available_providers():
        return Availability(True, f"onnxruntime {ort.__version__} with {provider}")
    package = "onnxruntime"
    for name in ("onnxruntime-gpu", "onnxruntime"):
        try:
            package = f"{name} {importlib.metadata.version(name)}"
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return Availability(False, f"{package} has no {provider} (install edgeopt[gpu] on a CUDA machine)")


class OrtSession(SessionBase):
    def __init__(self, session, device: str):
        self._session = session
        self._device = device
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
    return open_model(artifact.path, device, options)


def open_model(source: Path | bytes, device: str = "cpu", options: SessionOptions | None = None) -> OrtSession:
    """A session on a model file or a serialised model, for stages that run models they
    are still building (no Artifact record yet)."""
    availability = probe(device)
    if not availability.ok:
        raise RuntimeUnavailable(f"ort-{device}: {availability.reason}")
    import onnxruntime as ort

    options = options or SessionOptions()
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
    name = source if isinstance(source, Path) else "the model"
    try:
        session = ort.InferenceSession(
            str(source) if isinstance(source, Path) else source,
            session_options,
            providers=[PROVIDERS[device], *_FALLBACK[device]],
            disabled_optimizers=DISABLED_FUSIONS[device] if options.optimize else None,
        )
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
        raise ModelLoadError(f"{name}: onnxruntime cannot load it: {first_line(err)}") from err
    return OrtSession(session, device)


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape or ())
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))
