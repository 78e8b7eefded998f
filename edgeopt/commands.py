"""The single-step verbs (`export`, `simplify`, `fp16`, `quantize`, `build`, `bench`) outside a recipe run."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from edgeopt.core.artifact import ARTIFACT_JSON, Artifact, Format, Precision, TensorSpec, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.data import Dataset
from edgeopt.core.errors import (
    ModelLoadError,
    OutputError,
    RecipeError,
    RuntimeUnavailable,
    VerificationError,
    first_line,
    output_error,
)


def random_feeds(inputs: tuple[TensorSpec, ...], sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs; `sizes` gives each symbolic dim its size. Integer inputs get
    0s and 1s (masks all 1s), which index any embedding; give real samples where it matters."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        missing = [d for d in spec.shape if isinstance(d, str) and d not in sizes]
        if missing:
            raise RecipeError(
                f"input '{spec.name}' has symbolic dim '{missing[0]}'; give its size with --dim {missing[0]}=N"
            )
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_ or "mask" in spec.name.lower():
            feeds[spec.name] = np.ones(shape, dtype=dtype)
        else:
            # 0 and 1 are valid indices for any embedding table (token ids, token types)
            feeds[spec.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def probe_sizes(inputs: tuple[TensorSpec, ...]) -> dict[str, int]:
    """Distinct small sizes per symbolic dim (2, 3, 5, ...), so the exporter cannot confuse them."""
    primes = iter((2, 3, 5, 7, 11, 13, 17, 19, 23, 29))
    sizes: dict[str, int] = {}
    for spec in inputs:
        for dim in spec.shape:
            if isinstance(dim, str) and dim not in sizes:
                sizes[dim] = next(primes)
    return sizes


def export_command(
    model: str, output: Path, inputs: tuple[TensorSpec, ...], weights: Path | None, opset: int, exporter: str
) -> Artifact:
    """Export a built-in model, a factory's or a model file's to `output`, verified; nothing
    is written on failure."""
    from edgeopt.core.numeric import describe_failures
    from edgeopt.problems import describe
    from exporter.torch_export import ExportOnnxOptions, export_onnx

    if weights is not None and not weights.is_file():
        raise ModelLoadError(f"{weights}: file not found")
    try:
        options = ExportOnnxOptions(opset=opset, exporter=exporter)
    except ValidationError as err:
        raise RecipeError(f"--{describe(err, ExportOnnxOptions)}") from err
    with output_folder(output), tempfile.TemporaryDirectory(prefix=".edgeopt-", dir=output.parent) as scratch:
        source_dir, export_dir = Path(scratch, "source"), Path(scratch, "export")
        source_dir.mkdir()
        export_dir.mkdir()
        source, probe = _export_source(model, inputs, weights, source_dir)
        exported = export_onnx(source, options, StageContext(export_dir, probe))
        if not exported.verification.passed:
            raise VerificationError(
                f"{output}: not written: the export differs from PyTorch: {describe_failures(exported.verification)}"
            )
        return _write_model(exported, output)


def _export_source(
    model: str, inputs: tuple[TensorSpec, ...], weights: Path | None, out_dir: Path
) -> tuple[Artifact, dict[str, np.ndarray]]:
    """The torch artifact `edgeopt export` starts from, and the samples it is verified on:
    a built-in model (its own data), a model file or a factory (seeded random inputs)."""
    from edgeopt.models import BUILTIN_MODELS, builtin_dataset, train_builtin
    from edgeopt.sources import load_factory

    if model in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[model]
        dataset = builtin_dataset(spec.dataset)
        probe = dataset.probe()
        return train_builtin(model, inputs or spec.inputs, dataset, out_dir, probe), probe
    path = Path(model)
    if path.is_file():
        return _file_source(path, inputs, weights, out_dir)
    if path.suffix in (".pt", ".pt2", ".pth", ".ts") or "/" in model:
        raise ModelLoadError(f"{model}: file not found")
    if ":" not in model:
        raise RecipeError(
            f"model '{model}' is neither a built-in ({', '.join(BUILTIN_MODELS)}), a model file "
            "(TorchScript archive, exported program) nor package.module:function"
        )
    if not inputs:
        raise RecipeError(f"{model}: a factory model needs --input NAME:SHAPE:DTYPE for each input")
    probe = random_feeds(inputs, probe_sizes(inputs))
    return load_factory(TorchSource(model, {}, str(Path.cwd())), weights, inputs, None, out_dir, probe), probe


def _file_source(path: Path, inputs: tuple[TensorSpec, ...], weights: Path | None, out_dir: Path):
    """A TorchScript archive or an exported program; pickles are refused (see torch_files)."""
    from edgeopt.core.artifact import ModelFile
    from edgeopt.core.torch_files import exported_inputs, model_file_kind
    from edgeopt.sources import load_model_file

    kind = model_file_kind(path)
    if kind is ModelFile.PICKLE:
        raise ModelLoadError(
            f"{path}: a pickle (torch.save): a state dict goes with its factory (package.module:function "
            f"--weights {path.name}); a pickled module runs code when loaded, so only a recipe with trust_pickle reads one"
        )
    if kind is None:
        hint = "; an ONNX model needs no export: simplify, fp16 and quantize take it" if path.suffix == ".onnx" else ""
        raise ModelLoadError(
            f"{path}: neither a TorchScript archive (torch.jit.save) nor an exported program (.pt2){hint}"
        )
    if weights is not None:
        raise RecipeError(f"{path}: --weights goes with a factory model; a {kind} file holds its own weights")
    if not inputs and kind is ModelFile.TORCHSCRIPT:
        raise RecipeError(f"{path}: a TorchScript model needs --input NAME:SHAPE:DTYPE for each input")
    inputs = inputs or exported_inputs(path)
    probe = random_feeds(inputs, probe_sizes(inputs))
    return load_model_file(path, kind, inputs, None, out_dir, probe), probe


def transform_command(
    stage_name: str,
    source: Path,
    output: Path,
    options: dict,
    probe_path: Path | None,
    calibration_path: Path | None = None,
) -> Artifact:
    """Run one ONNX → ONNX stage outside a recipe; nothing is written unless it verifies.

    Verification uses --probe samples, else the first calibration samples, else seeded
    random ones."""
    from edgeopt.core.numeric import describe_failures

    stage, parsed, artifact = _single_step(stage_name, stage_name, options, source, output)
    inputs = artifact.io.inputs
    calibration = load_samples(calibration_path, inputs).test if calibration_path else None
    if probe_path:
        probe = load_samples(probe_path, inputs).probe()
    elif calibration is not None:
        probe = calibration.take(0, 8)
    else:
        probe = random_feeds(inputs, probe_sizes(inputs))
    with output_folder(output), tempfile.TemporaryDirectory(prefix=".edgeopt-", dir=output.parent) as scratch:
        result = stage.function(artifact, parsed, StageContext(Path(scratch), probe, calibration=calibration))
        if not result.verification.passed:
            raise VerificationError(
                f"{output}: not written: the result differs from {source}: {describe_failures(result.verification)}"
            )
        return _write_model(result, output)


def _single_step(stage_name: str, verb: str, options: dict, source: Path, output: Path):
    """What every single-step verb does first: parse the stage's options, check the output
    path, open the ONNX source. Returns (stage, options, artifact)."""
    from edgeopt.problems import describe
    from edgeopt.stages import STAGES

    stage = STAGES[stage_name]
    try:
        parsed = stage.options.model_validate(options)
    except ValidationError as err:
        raise RecipeError(f"{verb}: {describe(err, stage.options)}") from err
    _not_a_folder(output)
    artifact = open_artifact(source)
    if artifact.format is not Format.ONNX:
        raise ModelLoadError(f"{source}: {verb} takes an ONNX model")
    return stage, parsed, artifact


def build_command(source: Path, output: Path, options: dict, probe_path: Path | None) -> Artifact:
    """Build a TensorRT engine from an ONNX file: `output` and `<output>.json` (its metadata),
    written only once the engine verifies against the source."""
    from edgeopt.core.numeric import describe_failures
    from exporter.engine import DimRangeOption
    from runtimes import probe

    availability = probe("trt")
    if not availability.ok:
        raise RuntimeUnavailable(f"build: {availability.reason}")
    stage, parsed, artifact = _single_step("build_trt", "build", options, source, output)
    batch = artifact.io.inputs[0].shape[0] if artifact.io.inputs and artifact.io.inputs[0].shape else None
    dims = dict(parsed.dims)
    if isinstance(batch, str) and batch not in dims:
        dims[batch] = DimRangeOption(min=1, opt=1, max=32)
    parsed = parsed.model_copy(update={"dims": dims})
    if probe_path:
        feeds = load_samples(probe_path, artifact.io.inputs).probe()
    else:
        feeds = random_feeds(artifact.io.inputs, {name: size.opt for name, size in dims.items()})
    with output_folder(output), tempfile.TemporaryDirectory(prefix=".edgeopt-", dir=output.parent) as scratch:
        result = stage.function(artifact, parsed, StageContext(Path(scratch), feeds))
        if not result.verification.passed:
            raise VerificationError(
                f"{output}: not written: the engine differs from {source}: {describe_failures(result.verification)}"
            )
        from runtimes.tensorrt import meta_path

        try:  # metadata first: an engine is never there without it
            os.replace(meta_path(result.path), meta_path(output))
            os.replace(result.path, output)
        except OSError as err:
            raise output_error(output, err) from err
    return dataclasses.replace(result, path=output)


def _not_a_folder(output: Path) -> None:
    if output.is_dir():
        raise RecipeError(f"{output}: is a folder; give the file to write in it, e.g. -o {output / 'model.onnx'}")


@contextlib.contextmanager
def output_folder(output: Path) -> Iterator[None]:
    """The folder `output` is written in, made when missing (as optimum-cli and polygraphy
    do) and removed again, with any parents made for it, if the command fails. An output
    that is a folder, or a folder that cannot be made or written, is refused in one line."""
    _not_a_folder(output)
    folder = output.parent.absolute()
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    in_the_way = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
    if in_the_way is not None:
        raise OutputError(f"{output}: cannot write there ({in_the_way} is a file, not a folder); choose another -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # no permission, a full disk
        raise output_error(output, err) from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: cannot write there (folder {output.parent} is read-only); choose another -o")
    try:
        yield
    except BaseException:
        for path in missing:  # deepest first; a folder something else wrote into stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def load_samples(path: Path, inputs) -> Dataset:
    """An .npz of arrays, or a folder of images preprocessed to fit the model's input."""
    from edgeopt.core.data import load_npz
    from edgeopt.image_folder import load_image_folder

    if path.is_dir():
        return load_image_folder(path, None, inputs)
    return load_npz(path, inputs)


def _write_model(artifact: Artifact, output: Path) -> Artifact:
    """Save an artifact's model as `output`, weights over 1.5 GB in `<output>.data` beside it.

    Both files are written under their final names in a scratch folder, then moved into
    place data first, so `output` never names data that is not there yet.
    """
    from edgeopt.core.onnx_model import load_onnx, save_onnx

    try:
        with tempfile.TemporaryDirectory(prefix=".edgeopt-", dir=output.parent) as scratch:
            save_onnx(load_onnx(artifact.path), Path(scratch) / output.name)
            for produced in sorted(Path(scratch).iterdir(), key=lambda p: p.name == output.name):
                os.replace(produced, output.parent / produced.name)
    except OSError as err:
        raise output_error(output, err) from err
    return dataclasses.replace(artifact, path=output)


def open_artifact(path: Path) -> Artifact:
    """An artifact directory (with artifact.json), a bare .onnx file, or an engine made by
    `edgeopt build` (with its .json beside it)."""
    if path.is_dir() and (path / ARTIFACT_JSON).is_file():
        try:
            return Artifact.load(path)
        except (ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(
                f"{path}: its {ARTIFACT_JSON} is damaged or from another edgeopt version ({first_line(err)}); "
                "build it again"
            ) from err
    if path.is_file() and path.suffix == ".engine":
        from edgeopt.core.artifact import IO
        from runtimes.tensorrt import read_meta

        meta = read_meta(path)
        io = IO.from_json(meta.io)
        return Artifact(
            path, Format.TRT_ENGINE, meta.precision, "build_trt", {}, meta.source_sha256, io, engine=meta.to_json()
        )
    if path.is_file() and path.suffix == ".onnx":
        from edgeopt.core.onnx_model import graph_io, load_checked, onnx_source_sha256

        io = graph_io(load_checked(path, load_weights=False))
        return Artifact(path, Format.ONNX, Precision.FP32, "file", {}, None, io, onnx_source_sha256(path))
    if not path.exists():
        raise ModelLoadError(f"{path}: not found")
    raise ModelLoadError(f"{path}: not an .onnx file, an .engine file or an artifact directory")


def bench_command(
    paths: list[Path],
    runtime_ids: list[str],
    batches: list[int],
    threads: list[int],
    dims: dict[str, int],
    min_duration_s: float,
):
    """Time each artifact on each runtime that runs its format, with seeded random inputs."""
    from bench.latency import LatencySettings, measure_latency
    from runtimes import RUNTIMES, load, probe
    from runtimes.base import SessionOptions

    for value, flag in [(b, "--batch") for b in batches] + [(t, "--threads") for t in threads]:
        if value < 1:
            raise RecipeError(f"{flag} {value}: must be a positive number")
    unknown = [r for r in runtime_ids if r not in RUNTIMES]
    if unknown:
        usable = [r for r in RUNTIMES if probe(r).ok]
        raise RuntimeUnavailable(
            f"runtime '{unknown[0]}' is not one of {', '.join(RUNTIMES)} (usable here: {', '.join(usable)})"
        )
    artifacts = [(path, open_artifact(path)) for path in paths]
    settings = LatencySettings(min_duration_s=min_duration_s)
    rows = []
    for path, artifact in artifacts:
        runtimes = [r for r in runtime_ids if RUNTIMES[r].runs(artifact.format)]
        if not runtimes:
            raise RuntimeUnavailable(f"{path}: none of {', '.join(runtime_ids)} runs a {artifact.format} artifact")
        for runtime_id in runtimes:
            for count in threads:
                with load(runtime_id, artifact, SessionOptions(threads=count)) as session:
                    for batch in batches:
                        batch_dim = session.inputs[0].shape[0]
                        sizes = {**dims, **({batch_dim: batch} if isinstance(batch_dim, str) else {})}
                        stats = measure_latency(session, [random_feeds(session.inputs, sizes)], settings)
                        rows.append((path.name, runtime_id, count, stats))
    return rows
