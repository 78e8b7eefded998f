"""TensorRT: engines built from ONNX artifacts, run on one stream through a CUDA binding
(cuda-python or pycuda, runtimes.cuda).

`build_engine` parses an ONNX file and writes a serialized engine; `load` opens one
for the `trt` runtime (runtimes.tensorrt_session). An engine only runs on the TensorRT
version and GPU that built it, so each carries `<engine>.json`
(runtimes.tensorrt_settings.EngineMeta) and `load` refuses a mismatch in one line.
tensorrt and the binding are imported inside functions: nothing touches the GPU before
`load()`, and `probe()` asks the driver in a child process.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
from pathlib import Path

from edgeopt.core.artifact import Artifact, Format
from edgeopt.core.errors import ExportError, ModelLoadError, RuntimeUnavailable, first_line
from runtimes import cuda
from runtimes.base import Availability, SessionOptions
from runtimes.tensorrt_settings import BuildFlags, Device, EngineMeta, features, mismatch

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgeopt[tensorrt]' on a machine with an NVIDIA GPU"


class EngineMismatch(RuntimeUnavailable):
    """An engine built for another TensorRT version or GPU."""


@functools.cache
def probe(device: str = "gpu") -> Availability:
    if importlib.util.find_spec("tensorrt") is None:
        return Availability(False, f"tensorrt: not installed ({INSTALL})")
    try:
        binding = cuda.backend()
    except RuntimeUnavailable as err:
        return Availability(False, str(err))
    if binding is None or not cuda.installed(cuda.BACKENDS[binding][0]):
        return Availability(False, f"{binding or 'cuda-python or pycuda'}: not installed ({INSTALL})")
    problem = cuda.installed_mismatch()
    if problem:
        return Availability(False, problem)
    found = cuda.driver()
    if not found.ok:
        return Availability(False, found.reason)
    try:
        import tensorrt as trt
    except Exception as err:  # a wheel without its CUDA libraries raises OSError/ImportError
        return Availability(False, f"tensorrt: not importable ({first_line(err)})")
    try:
        features(trt.__version__)
    except RuntimeUnavailable as err:
        return Availability(False, str(err))
    return Availability(True, f"tensorrt {trt.__version__} with {binding} on {found.devices[0]}")


def here() -> Device:
    """This machine's TensorRT version and first GPU."""
    import tensorrt as trt

    from runtimes.tensorrt_session import open_binding

    name, compute_capability = open_binding().device()
    return Device(trt.__version__, name, compute_capability)


def meta_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def read_meta(engine: Path) -> EngineMeta:
    path = meta_path(engine)
    try:
        return EngineMeta.from_json(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise ModelLoadError(f"{engine}: no {path.name} beside it; build engines with edgeopt build") from err
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{path}: not an engine metadata file ({first_line(err)})") from err


def stale_reason(engine: Path) -> str | None:
    """Why a built engine cannot run on this machine, or None."""
    return mismatch(read_meta(engine), here())


def timing_cache_name(device: Device) -> str:
    """One timing cache per TensorRT version and GPU: TensorRT rejects a foreign one."""
    return (
        re.sub(r"[^A-Za-z0-9.]+", "-", f"tensorrt-{device.tensorrt_version}-{device.gpu}-sm{device.compute_capability}")
        + ".cache"
    )


def _logger(verbose: bool):
    import tensorrt as trt

    return trt.Logger(trt.Logger.INFO if verbose else trt.Logger.ERROR)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    flags: BuildFlags,
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    workspace_bytes: int,
    timing_cache_dir: Path | None,
    verbose: bool = False,
) -> Device:
    """Parse `onnx_path`, build with one optimization profile, write `engine_path`.

    The timing cache (kernel timings, the slow part of a build) is read from and saved
    to `timing_cache_dir` where one is given."""
    import tensorrt as trt

    device = here()
    logger = _logger(verbose)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED: required for strong typing on TensorRT 10, accepted and ignored on 11
    creation = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if flags.strongly_typed else 0
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT cannot parse it: {first_line(errors[0]) if errors else 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in flags.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    dynamic = any(-1 in tuple(network.get_input(i).shape) for i in range(network.num_inputs))
    if dynamic:
        optimization = builder.create_optimization_profile()
        for name, (low, best, high) in profile.items():
            optimization.set_shape(name, low, best, high)
        config.add_optimization_profile(optimization)
    cache_path = timing_cache_dir / timing_cache_name(device) if timing_cache_dir else None
    timings = _attach_timing_cache(config, cache_path)  # kept alive until the build is done
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine from it (run with -v for TensorRT's log)")
    # everything that can fail comes before the first write
    updated = config.get_timing_cache() if cache_path is not None else None
    blob = bytes(updated.serialize()) if updated is not None else None
    del timings
    _write_atomically(engine_path, serialized)
    if blob is not None:
        try:  # a cache only saves time: failing to keep it must not fail the build
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(cache_path, blob)
        except OSError as err:
            log.warning("%s: timing cache not saved (%s)", cache_path, first_line(err))
    return device


def _attach_timing_cache(config, cache_path: Path | None):
    """The saved timing cache where TensorRT takes it, else a fresh one. TensorRT gives None
    for a blob it cannot read (create_timing_cache) and False for one timed on another GPU
    or CUDA (set_timing_cache); either is logged, and the build starts a fresh cache."""
    known = b""
    if cache_path is not None:
        try:
            known = cache_path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("%s: timing cache unreadable (%s); building without it", cache_path, first_line(err))
    if known:
        cache = config.create_timing_cache(known)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
        log.warning("%s: TensorRT rejected this timing cache (damaged, or from another GPU or CUDA)", cache_path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("TensorRT refused an empty timing cache; building without one")
    return cache


def _write_atomically(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(artifact: Artifact, device: str, options: SessionOptions):
    if artifact.format is not Format.TRT_ENGINE:
        raise RuntimeUnavailable(
            f"trt: cannot run a {artifact.format} artifact; build an engine with the build_trt stage"
        )
    availability = probe(device)
    if not availability.ok:
        raise RuntimeUnavailable(f"trt: {availability.reason}")
    meta = read_meta(artifact.path)
    problem = mismatch(meta, here())
    if problem:
        raise EngineMismatch(
            f"{artifact.path}: {problem}; rebuild it from its source ({meta.source_sha256[:12]}): run the recipe again or use edgeopt build"
        )
    from runtimes.tensorrt_session import TrtSession

    return TrtSession(artifact.path.read_bytes(), artifact.io, options.verbose)
