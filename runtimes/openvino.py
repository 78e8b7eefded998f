"""OpenVINO sessions on the CPU (`ov-cpu`, and `ov-cpu-bf16` in runtimes/openvino_bf16.py):
ONNX files, read by OpenVINO's ONNX frontend, and OpenVINO IR (.xml + .bin, what the
quantize_nncf stage writes).

What differs from ONNX Runtime, each measured on openvino 2026.4:
- settings are explicit and read back from the compiled model (`session.settings`): a
  request the CPU cannot honour is lowered silently (bf16 on a CPU without it; 2 threads
  in a process allowed 1 core), so what ran is what the compiled model says.
- OMP_NUM_THREADS does nothing (its pool is TBB): the thread count is passed as
  INFERENCE_NUM_THREADS. Threads are not pinned to cores (ENABLE_CPU_PINNING, on by default
  on Linux): ONNX Runtime pins none either, and pinned threads cannot move away from other
  load (MiniLM batch 8 took 25% longer pinned on a loaded 2-core machine).
- feeds are checked here: OpenVINO reuses the previous call's tensor for a missing input,
  converts int32 and float feeds for int64 inputs, and broadcasts a batch-1 mask over a
  batch-2 call, where ONNX Runtime refuses all three.
- an infer request serves one call at a time ("Infer Request is busy" otherwise): each
  calling thread gets its own, as ONNX Runtime's session serves concurrent calls (the
  server scenario's threads).
- nothing is written: no CACHE_DIR is set, so compiling keeps no model cache; telemetry is
  off (runtimes/__init__.py).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import Artifact, Format, TensorSpec
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable
from runtimes.base import Availability, SessionBase, SessionOptions
from runtimes.openvino_settings import READ_BACK, compile_config, message, plain, static_shapes

log = logging.getLogger(__name__)

DEVICES = {"cpu": "CPU"}
FORMATS = (Format.ONNX, Format.OPENVINO)
INSTALL = "pip install 'edgeopt[openvino]'"


def probe(device: str) -> Availability:
    core = _core(device)
    if isinstance(core, Availability):
        return core
    import openvino as ov

    name = core.get_property(DEVICES[device], "FULL_DEVICE_NAME")
    return Availability(True, f"openvino {version(ov)} on {name}")


def capabilities(device: str = "cpu") -> list[str] | None:
    """What the device's plugin lists as its OPTIMIZATION_CAPABILITIES (FP32, INT8, BF16, ...),
    or None where it cannot be asked."""
    core = _core(device)
    if isinstance(core, Availability):
        return None
    return [str(item) for item in core.get_property(DEVICES[device], "OPTIMIZATION_CAPABILITIES")]


def version(ov) -> str:
    return ov.__version__.split("-")[0]


def _core(device: str):
    """A Core with the device's plugin, or why there is none."""
    if device not in DEVICES:
        return Availability(False, f"openvino: no device '{device}' here (ov-cpu only)")
    if importlib.util.find_spec("openvino") is None:
        return Availability(False, f"openvino: not installed ({INSTALL})")
    import openvino as ov

    try:
        core = ov.Core()
        devices = core.available_devices
    except Exception as err:  # a broken install: plugins that do not load
        return Availability(False, f"openvino {version(ov)}: {message(err)}")
    if DEVICES[device] not in devices:
        return Availability(False, f"openvino {version(ov)} has no {DEVICES[device]} plugin ({', '.join(devices)})")
    return core


class OvSession(SessionBase):
    """settings: the compiled model's own values of the properties edgeopt sets."""

    def __init__(self, compiled, settings: dict[str, str]):
        self._compiled = compiled
        self._requests = threading.local()  # one infer request per calling thread
        self.settings = settings
        self.inputs = tuple(_spec(port) for port in compiled.inputs)
        self.outputs = tuple(_spec(port) for port in compiled.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self.inputs, feeds)
        try:
            # share_inputs: the caller's arrays are read in place (infer is synchronous);
            # share_outputs=False: fresh arrays, not views of buffers the next call reuses
            result = self._request().infer(feeds, share_inputs=True, share_outputs=False)
        except Exception as err:  # RuntimeError for shapes the graph cannot take
            raise DataError(f"openvino cannot run the model on these inputs: {message(err)}") from err
        return {spec.name: result[index] for index, spec in enumerate(self.outputs)}

    def _request(self):
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        return request

    def sync(self) -> None:
        """infer() is synchronous and returns host arrays."""

    def close(self) -> None:
        self._requests = threading.local()
        self._compiled = None


def load(artifact: Artifact, device: str, options: SessionOptions) -> OvSession:
    if artifact.format not in FORMATS:
        raise RuntimeUnavailable(f"ov-{device}: cannot run a {artifact.format} artifact")
    return open_model(artifact.path, device, options)


def open_model(source: Path, device: str = "cpu", options: SessionOptions | None = None) -> OvSession:
    """A session on an ONNX file or an IR .xml (its weights in the .bin of the same stem).
    Input dims the model leaves symbolic are fixed where `options.profile` gives one size
    (every batch the caller will run has it), so OpenVINO compiles for static shapes there."""
    core = _core(device)
    if isinstance(core, Availability):
        raise RuntimeUnavailable(f"ov-{device}: {core.reason}")
    options = options or SessionOptions()
    try:
        model = read_model(core, Path(source))
        shapes = static_shapes(model, options.profile)
        if shapes:
            model.reshape(shapes)
        compiled = core.compile_model(model, DEVICES[device], compile_config(options))
    except ModelLoadError:
        raise
    except Exception as err:  # RuntimeError from the frontends and the plugin
        if "No conversion rule found" in str(err):  # operators it has no translation for
            raise RuntimeUnavailable(f"ov-{device}: openvino cannot read {source}: {message(err)}") from err
        raise ModelLoadError(f"{source}: openvino cannot load it: {message(err)}") from err
    settings = {key: plain(compiled.get_property(key)) for key in READ_BACK}
    if options.bf16 and settings["INFERENCE_PRECISION_HINT"] != "bf16":
        raise RuntimeUnavailable(
            f"ov-{device}: asked for bf16, the CPU plugin compiled {settings['INFERENCE_PRECISION_HINT']}"
        )
    if options.threads is not None and settings["INFERENCE_NUM_THREADS"] != str(options.threads):
        log.warning(
            "openvino runs %s threads, not %s (this process may use fewer cores)",
            settings["INFERENCE_NUM_THREADS"],
            options.threads,
        )
    return OvSession(compiled, settings)


def read_model(core, source: Path):
    """An ONNX file, or an IR whose .bin must be beside its .xml. Reading runs no code: an
    IR is XML (entities not expanded) and raw tensors; ONNX external data must stay in the
    model's folder."""
    if source.suffix == ".xml":
        weights = source.with_suffix(".bin")
        if not weights.is_file():
            raise ModelLoadError(f"{source}: no {weights.name} beside it (an OpenVINO IR is .xml + .bin)")
        return core.read_model(str(source), str(weights))
    return core.read_model(str(source))


def runtime_precisions(session: OvSession) -> dict[str, int]:
    """How many executed layers ran in each (layer type, precision), e.g.
    {'FullyConnected:u8': 35, ...}: whether an INT8 model really runs in INT8. Kernels of
    symbolic shapes are chosen at the first call, so call this after one run."""
    counts: dict[str, int] = {}
    for op in session._compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if layer not in ("Input", "Output", "Const"):
            key = f"{layer}:{precision}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def check_feeds(specs: tuple[TensorSpec, ...], feeds: dict[str, np.ndarray]) -> None:
    """Refuse what ONNX Runtime refuses and OpenVINO would run anyway (see the module docstring)."""
    names = {spec.name for spec in specs}
    missing, unknown = sorted(names - feeds.keys()), sorted(feeds.keys() - names)
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise DataError(f"openvino: the feeds do not match the model's inputs ({'; '.join(parts)})")
    batch = None
    for spec in specs:
        array = feeds[spec.name]
        if not isinstance(array, np.ndarray) or array.dtype != np.dtype(spec.dtype):
            got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise DataError(f"openvino: input {spec.name} is {got}, the model takes {spec.dtype}")
        if array.ndim != len(spec.shape):
            raise DataError(f"openvino: input {spec.name} has {array.ndim} dims, the model takes {len(spec.shape)}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
            if isinstance(want, int) and want != got:
                raise DataError(f"openvino: input {spec.name} axis {axis} is {got}, the model takes {want}")
        # a symbolic leading dim is the batch: every input must agree on it
        if array.ndim and not isinstance(spec.shape[0], int):
            batch = array.shape[0] if batch is None else batch
            if array.shape[0] != batch:
                raise DataError(f"openvino: input {spec.name} has batch {array.shape[0]}, another input {batch}")


def _spec(port) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else "?" for d in port.get_partial_shape())
    return TensorSpec(port_name(port), shape, port.get_element_type().to_dtype().name)


def port_name(port) -> str:
    """The model's own name for an input or output. A port can carry several once OpenVINO
    has merged tensors (an FP16 model's input takes its Cast's name, graph_input_cast_0);
    the model's is its Parameter's name, or its Result's without the '/sink_port_0'."""
    names = port.get_names()
    own = port.get_node().get_friendly_name().removesuffix("/sink_port_0")
    return own if own in names else sorted(names)[0]
