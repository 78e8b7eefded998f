"""The root of every run: a model source turned into the first artifact.

Sources: a built-in model (trained here on its bundled dataset), a
`package.module:function` factory with an optional state dict, or an ONNX file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgeopt.artifact import IO, Artifact, Format, Precision, TensorSpec
from edgeopt.context import StageContext
from edgeopt.data import Dataset
from edgeopt.errors import ModelLoadError, first_line, output_error

log = logging.getLogger(__name__)

LOAD_MODEL_VERSION = 1
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class BuiltinModel:
    """trainer: package.module:function(module, train_split, *, seed, on_epoch, **training)."""

    factory: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    dataset: str
    trainer: str
    training: dict
    steps: int  # progress steps the trainer reports through on_epoch
    description: str


BUILTIN_MODELS = {
    "digits-cnn": BuiltinModel(
        factory="edgeopt.demo.digits:DigitsCNN",
        inputs=(TensorSpec("image", ("batch", 1, 8, 8), "float32"),),
        outputs=("logits",),
        dataset="digits",
        trainer="edgeopt.demo.digits:train_classifier",
        training={"epochs": 20},
        steps=20,
        description="a small CNN trained in seconds on scikit-learn's bundled handwritten digits",
    ),
    "resnet18-photos": BuiltinModel(
        factory="edgeopt.demo.photos:photo_resnet18",
        inputs=(TensorSpec("image", ("batch", 3, 224, 224), "float32"),),
        outputs=("logits",),
        dataset="photo-crops",
        trainer="edgeopt.demo.photos:fit_head",
        training={},
        steps=1,
        description="ResNet-18 at 224×224 classifying crops of scikit-learn's two photographs (head fitted here)",
    ),
    "digits-resnet-wide": BuiltinModel(
        factory="compress.models:wide_digits_resnet",
        inputs=(TensorSpec("image", ("batch", 1, 8, 8), "float32"),),
        outputs=("logits",),
        dataset="digits",
        trainer="edgeopt.demo.digits:train_classifier",
        training={"epochs": 20},
        steps=20,
        description="a residual digits CNN, width 64: the compression demo's source model",
    ),
}

BUILTIN_DATASETS = {
    "digits": "edgeopt.demo.digits:load_digits_dataset",
    "photo-crops": "edgeopt.demo.photos:load_photo_crops_dataset",
}


def builtin_dataset(name: str) -> Dataset:
    from edgeopt.factory import resolve_factory

    return resolve_factory(BUILTIN_DATASETS[name])()


def train_builtin(name: str, inputs, outputs, dataset, context: StageContext, on_epoch=None) -> Artifact:
    """Train a built-in model on its dataset's train split and save its state dict."""
    import torch

    from edgeopt.factory import resolve_factory

    spec = BUILTIN_MODELS[name]
    torch.manual_seed(0)
    module = resolve_factory(spec.factory)()
    resolve_factory(spec.trainer)(module, dataset.train, seed=0, on_epoch=on_epoch, **spec.training)
    return save_module(module, spec.factory, {}, None, inputs, outputs, context, {"builtin": name, **spec.training})


def load_factory(
    reference: str, kwargs: dict, weights: Path | None, search_dir: Path, inputs, outputs, context: StageContext
) -> Artifact:
    """Build the factory's module and load its state dict (tensors only, never pickled objects)."""
    import torch

    from edgeopt.factory import resolve_factory

    factory = resolve_factory(reference, search_dir)
    torch.manual_seed(0)
    try:
        module = factory(**kwargs)
    except TypeError as err:
        raise ModelLoadError(f"factory '{reference}' rejected its kwargs {kwargs}: {err}") from err
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"factory '{reference}' returned {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a hostile file is reported below, in one line
                state = torch.load(weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ModelLoadError(
                f"{weights}: not a loadable state dict (only tensors are accepted): it pickles other objects "
                "(code, whole modules); save model.state_dict() instead"
            ) from err
        except Exception as err:  # RuntimeError for corrupt or truncated archives, EOFError, ...
            raise ModelLoadError(f"{weights}: not a loadable state dict: {first_line(err, 120)}") from err
        if not isinstance(state, dict):
            raise ModelLoadError(f"{weights}: holds a {type(state).__name__}, expected a state dict")
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise ModelLoadError(f"{weights}: does not fit factory '{reference}': {first_line(err)}") from err
    options = {"factory": reference, "kwargs": kwargs, "weights": str(weights) if weights else None}
    return save_module(module.eval(), reference, kwargs, search_dir, inputs, outputs, context, options)


def load_pickled(path: Path, inputs, outputs, context: StageContext) -> Artifact:
    """Unpickle a whole nn.Module. This runs code from the file: the recipe must say it trusts it."""
    import torch

    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # anything the pickle's own code raises
        raise ModelLoadError(f"{path}: cannot unpickle a model from it: {first_line(err)}") from err
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{path}: holds a {type(module).__name__}, not a torch.nn.Module")
    options = {"pickled": str(path)}
    artifact = save_module(module, None, {}, None, inputs, outputs, context, options)
    facts = {**artifact.facts, "pickled": str(path.resolve()), "pickled_sha256": file_sha256(path)}
    return dataclasses.replace(artifact, facts=facts)


def save_module(
    module,
    factory: str,
    kwargs: dict,
    search_dir: Path | None,
    inputs,
    output_names,
    context: StageContext,
    options: dict,
) -> Artifact:
    import torch

    from runtimes.torch_eager import output_specs

    module.eval()
    batch_dim = inputs[0].shape[0] if inputs and isinstance(inputs[0].shape[0], str) else None
    example = [torch.from_numpy(context.probe[spec.name]) for spec in inputs]
    try:
        with torch.inference_mode():
            outputs = module(*example)
    except Exception as err:  # the user's forward() can raise anything on a shape mismatch
        raise ModelLoadError(
            f"model '{factory}' fails on the sample inputs {[tuple(e.shape) for e in example]}: {first_line(err)}"
        ) from err
    path = context.out_dir / WEIGHTS_FILE
    try:
        torch.save(module.state_dict(), path)
    except RuntimeError as err:  # torch reports a refused write (full disk, size limit) as an iostream error
        raise output_error(context.out_dir.parent, err) from err
    facts = {
        "factory": factory,
        "factory_kwargs": kwargs,
        "factory_dir": str(search_dir) if search_dir else None,
        "parameters": sum(p.numel() for p in module.parameters()),
        "size_bytes": path.stat().st_size,
    }
    return Artifact(
        path=path,
        format=Format.TORCH,
        precision=Precision.FP32,
        stage="load_model",
        options=options,
        parent=None,
        io=IO(tuple(inputs), output_specs(outputs, list(output_names) if output_names else None, batch_dim)),
        facts=facts,
    )


def copy_onnx(source: Path, context: StageContext) -> Artifact:
    """Check an ONNX file and save a copy (external data included) into the store."""
    from exporter.onnx_facts import graph_io, model_facts
    from exporter.onnx_io import load_checked, save_onnx

    model = load_checked(source)
    path = context.out_dir / "model.onnx"
    save_onnx(model, path)
    return Artifact(
        path=path,
        format=Format.ONNX,
        precision=Precision.FP32,
        stage="load_model",
        options={"onnx": str(source)},
        parent=None,
        io=graph_io(model),
        facts=model_facts(model, path),
    )


def onnx_source_sha256(path: Path) -> str:
    """Hash an ONNX file and the external-data files it names (each confined to its folder)."""
    from exporter.onnx_io import external_data_files, load_onnx

    digest = hashlib.sha256(file_sha256(path).encode())
    for data_file in external_data_files(path, load_onnx(path, load_weights=False)):
        digest.update(data_file.name.encode() + file_sha256(data_file).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
