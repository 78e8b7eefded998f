"""Where a run starts: the recipe's model source turned into the root artifact, and its
data sources turned into the splits stages and benchmarks use.

Model sources: a built-in model (trained here), a `package.module:function` factory with
an optional state dict, a TorchScript archive, an exported program, a whole pickled
module the recipe trusts, a Hugging Face model directory, or an ONNX file. Data sources: a built-in dataset, an .npz, an image folder,
or text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeopt import huggingface
from edgeopt import log as progress_log
from edgeopt.core.artifact import Artifact, Format, ModelFile, Precision, TensorSpec, TorchSource, file_sha256
from edgeopt.core.context import probe_fingerprint
from edgeopt.core.data import Dataset, Split, load_npz
from edgeopt.core.errors import RecipeError
from edgeopt.image_folder import load_image_folder
from edgeopt.models import BUILTIN_MODELS, builtin_dataset, train_builtin
from edgeopt.recipe import DataSource, LoadedRecipe
from edgeopt.text import TextSource, load_text

# 2: torch sources recorded as Artifact.source (artifact.json record version 2)
# 3: whole-model files (TorchScript, exported programs, pickles) as TorchSource.file (record version 3)
LOAD_MODEL_VERSION = 3


@dataclass(frozen=True)
class RunData:
    """The samples of a run. probe: held-out samples every stage verifies on.
    calibration: what INT8 calibrates on (the recipe's calibration source, else the train
    split, else the test split). training: what compress stages train on (the train split,
    else the test split; never the calibration source). evaluation: where choices such as
    an accuracy budget are checked (validation, else test), so the test split the report
    scores stays held out."""

    inputs: tuple[TensorSpec, ...]
    dataset: Dataset
    probe: dict
    calibration: Split
    training: Split
    evaluation: Split
    evaluation_on: str

    def fingerprint(self, calibrated: bool, trained: bool) -> str:
        """The samples part of a stage's cache key."""
        parts = [probe_fingerprint(self.probe)]
        if calibrated:
            parts.append(probe_fingerprint(self.calibration.inputs))
        if trained:
            parts.append(probe_fingerprint(self.training.inputs))
        if calibrated or trained:
            parts.append(probe_fingerprint(self.evaluation.inputs))
        return "".join(parts)


@dataclass(frozen=True)
class RootBuild:
    """How the root artifact is made: `options` (what decides it, for the cache key),
    `make(out_dir)`, and a label for the log."""

    options: dict
    make: Callable[[Path], Artifact]
    label: str


def run_data(loaded: LoadedRecipe) -> RunData:
    inputs = input_specs(loaded)
    dataset = _dataset(loaded, inputs)
    calibration = dataset.train or dataset.test
    if loaded.recipe.calibration is not None:
        given = _load_data(loaded, loaded.recipe.calibration, inputs, "calibration")
        calibration = given.train or given.test
    evaluation, evaluation_on = (dataset.validation, "validation") if dataset.validation else (dataset.test, "test")
    training = dataset.train or dataset.test
    return RunData(inputs, dataset, dataset.probe(), calibration, training, evaluation, evaluation_on)


def input_specs(loaded: LoadedRecipe) -> tuple[TensorSpec, ...]:
    recipe = loaded.recipe
    if recipe.inputs is not None:
        return tuple(TensorSpec(i.name, tuple(i.shape), i.dtype) for i in recipe.inputs)
    if recipe.model.is_huggingface:
        return huggingface.input_specs(huggingface.check_directory(_huggingface_directory(loaded)))
    if recipe.model.builtin is not None:
        return BUILTIN_MODELS[recipe.model.builtin].inputs
    if recipe.model.exported is not None:
        from edgeopt.core.torch_files import exported_inputs

        return exported_inputs(loaded.resolve(recipe.model.exported))
    from edgeopt.core.onnx_model import graph_io, load_checked

    return graph_io(load_checked(loaded.resolve(recipe.model.onnx), load_weights=False)).inputs


def root_build(loaded: LoadedRecipe, data: RunData) -> RootBuild:
    """The root artifact's build: a trained built-in, a factory's module, a whole-model file
    (TorchScript, exported program, trusted pickle), a Hugging Face encoder, or a copied
    ONNX file."""
    source = loaded.recipe.model
    if source.is_huggingface:
        return _huggingface_root(loaded, data)
    if source.builtin is not None:
        return _builtin_root(source.builtin, data)
    if source.factory is not None:
        return _factory_root(loaded, data)
    if source.file is not None:
        return _file_root(loaded, data)
    path = loaded.resolve(source.onnx)
    from edgeopt.core.onnx_model import onnx_source_sha256

    return RootBuild({"onnx_sha256": onnx_source_sha256(path)}, lambda out_dir: copy_onnx(path, out_dir), path.name)


def _huggingface_root(loaded: LoadedRecipe, data: RunData) -> RootBuild:
    directory, pooling = _huggingface_directory(loaded), loaded.recipe.model.pooling
    options = {"huggingface": huggingface.directory_sha256(directory), "pooling": str(pooling)}

    def make(out_dir: Path) -> Artifact:
        return huggingface.load_huggingface(directory, pooling, out_dir, data.probe)

    return RootBuild(options, make, loaded.recipe.model.builtin or directory.name)


def _builtin_root(name: str, data: RunData) -> RootBuild:
    spec = BUILTIN_MODELS[name]

    def make(out_dir: Path) -> Artifact:
        with progress_log.progress(f"training {name}", spec.steps) as advance:
            return train_builtin(name, data.inputs, data.dataset, out_dir, data.probe, on_epoch=advance)

    return RootBuild({"builtin": name, **spec.training}, make, name)


def _factory_root(loaded: LoadedRecipe, data: RunData) -> RootBuild:
    model = loaded.recipe.model
    weights = loaded.resolve(model.weights) if model.weights else None
    options = {
        "factory": model.factory,
        "kwargs": model.kwargs,
        "weights_sha256": file_sha256(weights) if weights else None,
        "inputs": [spec.__dict__ for spec in data.inputs],
        "outputs": loaded.recipe.outputs,
    }
    source = TorchSource(model.factory, model.kwargs, str(loaded.path.parent.resolve()))

    def make(out_dir: Path) -> Artifact:
        return load_factory(source, weights, data.inputs, loaded.recipe.outputs, out_dir, data.probe)

    return RootBuild(options, make, model.factory)


def _file_root(loaded: LoadedRecipe, data: RunData) -> RootBuild:
    kind, given = loaded.recipe.model.file
    path = loaded.resolve(given)
    options = {
        "file_kind": kind,
        "file_sha256": file_sha256(path),
        "inputs": [spec.__dict__ for spec in data.inputs],
        "outputs": loaded.recipe.outputs,
    }

    def make(out_dir: Path) -> Artifact:
        return load_model_file(path, ModelFile(kind), data.inputs, loaded.recipe.outputs, out_dir, data.probe)

    return RootBuild(options, make, path.name)


def load_factory(
    source: TorchSource, weights: Path | None, inputs: tuple[TensorSpec, ...], outputs, out_dir: Path, probe: dict
) -> Artifact:
    """Build the factory's module and load its state dict (tensors only, never pickled objects)."""
    import torch

    from edgeopt.core.torch_artifact import instantiate, load_state, module_io, save_module

    torch.manual_seed(0)
    module = instantiate(source)
    if weights is not None:
        load_state(module, weights, f"factory '{source.factory}'")
    options = {"factory": source.factory, "kwargs": source.kwargs, "weights": str(weights) if weights else None}
    io = module_io(module, inputs, outputs, probe)
    return save_module(module.eval(), source, out_dir, stage="load_model", options=options, parent=None, io=io)


def load_model_file(
    path: Path, kind: ModelFile, inputs: tuple[TensorSpec, ...], outputs, out_dir: Path, probe: dict
) -> Artifact:
    """A whole model in one file (see edgeopt.core.torch_files for what loading each kind
    runs; a pickle only reaches here from a recipe that trusts it). Later stages re-read
    the file only while its hash matches."""
    from edgeopt.core.torch_artifact import eval_mode, module_io, save_module
    from edgeopt.core.torch_files import read_model_file

    module = read_model_file(path, kind)
    source = TorchSource(file=str(path.resolve()), file_kind=kind, file_sha256=file_sha256(path))
    io = module_io(module, inputs, outputs, probe)
    options = {str(kind): str(path)}
    return save_module(eval_mode(module), source, out_dir, stage="load_model", options=options, parent=None, io=io)


def copy_onnx(source: Path, out_dir: Path) -> Artifact:
    """Check an ONNX file and save a copy (external data included) into the store."""
    from edgeopt.core.onnx_model import graph_io, load_checked, model_facts, save_onnx
    from runtimes.openvino_ops import openvino_not_for

    model = load_checked(source)
    path = out_dir / "model.onnx"
    save_onnx(model, path)
    return Artifact(
        path=path,
        format=Format.ONNX,
        precision=Precision.FP32,
        stage="load_model",
        options={"onnx": str(source)},
        parent=None,
        io=graph_io(model),
        not_for=openvino_not_for(model.graph.node),
        facts=model_facts(model, path),
    )


def _huggingface_directory(loaded: LoadedRecipe) -> Path:
    source = loaded.recipe.model
    if source.huggingface is not None:
        return loaded.resolve(source.huggingface)
    return huggingface.packaged_directory(source.builtin)


def _dataset(loaded: LoadedRecipe, inputs: tuple[TensorSpec, ...]) -> Dataset:
    data = loaded.recipe.data
    if data is None and loaded.recipe.model.is_huggingface:  # Python's documentation, the model's tokenizer
        return load_text(TextSource(), loaded.path.parent, inputs, _huggingface_directory(loaded))
    if data is None:
        return builtin_dataset(BUILTIN_MODELS[loaded.recipe.model.builtin].dataset)
    return _load_data(loaded, data, inputs, "data")


def _load_data(loaded: LoadedRecipe, data: DataSource, inputs: tuple[TensorSpec, ...], key: str) -> Dataset:
    if data.builtin is not None:
        dataset = builtin_dataset(data.builtin)
        expected = {spec.name for spec in inputs}
        if set(dataset.test.inputs) != expected:
            raise RecipeError(
                f"{loaded.path}: {key}.builtin '{data.builtin}' provides {', '.join(dataset.test.inputs)}, the model takes {', '.join(sorted(expected))}"
            )
        return dataset
    if data.npz is not None:
        return load_npz(loaded.resolve(data.npz), inputs)
    if data.text is not None:
        model_dir = _huggingface_directory(loaded) if loaded.recipe.model.is_huggingface else None
        return load_text(data.text, loaded.path.parent, inputs, model_dir)
    return load_image_folder(loaded.resolve(data.images), data.preprocess, inputs)
