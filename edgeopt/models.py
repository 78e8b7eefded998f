"""The built-in models (trained here on a bundled dataset) and datasets: no downloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeopt.core.artifact import Artifact, TensorSpec, TorchSource
from edgeopt.core.data import Dataset
from edgeopt.core.factory import resolve_factory


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
    "resnet18-narrow-photos": BuiltinModel(
        factory="edgeopt.demo.photos:photo_resnet18_narrow",
        inputs=(TensorSpec("image", ("batch", 3, 224, 224), "float32"),),
        outputs=("logits",),
        dataset="photo-crops",
        trainer="edgeopt.demo.photos:fit_head",
        training={},
        steps=1,
        description="ResNet-18 at a quarter of its width (16 to 128 channels) on the same 224×224 crops: "
        "milliseconds per image",
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
    return resolve_factory(BUILTIN_DATASETS[name])()


def train_builtin(
    name: str,
    inputs: tuple[TensorSpec, ...],
    dataset: Dataset,
    out_dir: Path,
    probe: dict,
    on_epoch: Callable[[], None] | None = None,
) -> Artifact:
    """Train a built-in model on its dataset's train split and save it as a torch artifact."""
    import torch

    from edgeopt.core.torch_artifact import instantiate, module_io, save_module

    spec = BUILTIN_MODELS[name]
    torch.manual_seed(0)
    source = TorchSource(spec.factory)
    module = instantiate(source)
    resolve_factory(spec.trainer)(module, dataset.train, seed=0, on_epoch=on_epoch, **spec.training)
    io = module_io(module, inputs, spec.outputs, probe)
    options = {"builtin": name, **spec.training}
    return save_module(module, source, out_dir, stage="load_model", options=options, parent=None, io=io)
