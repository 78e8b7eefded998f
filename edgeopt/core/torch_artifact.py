"""The torch artifact: a module's state dict in `weights.pt`, and the `TorchSource` that
rebuilds its structure (a factory and its kwargs, or a whole-model file: a TorchScript
archive, an exported program, or a pickled module the recipe trusted). The source is also
written to `source.json`, so the artifact's hash covers its structure: an edit that keeps
every weight (`remove_padding`) is another artifact.

Every stage and runtime saves and rebuilds torch artifacts here, with the same errors.
State dicts load with `torch.load(weights_only=True)`: tensors only, no pickled objects.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeopt.core.artifact import IO, Artifact, Format, Precision, TensorSpec, TorchSource, Verification, file_sha256
from edgeopt.core.context import StageContext
from edgeopt.core.errors import ModelLoadError, first_line, output_error
from edgeopt.core.factory import resolve_factory
from edgeopt.core.numeric import Tolerance, compare_outputs
from edgeopt.core.torch_files import read_model_file

if TYPE_CHECKING:
    import numpy as np
    import torch
    from pydantic import BaseModel

WEIGHTS_FILE = "weights.pt"
SOURCE_FILE = "source.json"


def output_tuple(outputs) -> tuple:
    """A forward's outputs as a tuple: one tensor or several."""
    return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)


def instantiate(source: TorchSource, kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """A fresh module from the source's factory (weights as the factory makes them);
    `kwargs` replaces the source's."""
    import torch

    kwargs = source.kwargs if kwargs is None else kwargs
    factory = resolve_factory(source.factory, Path(source.search_dir) if source.search_dir else None)
    try:
        module = factory(**kwargs)
    except (TypeError, ValueError) as err:  # the factory's own check of its arguments
        raise ModelLoadError(f"factory '{source.factory}' rejected its kwargs {kwargs}: {first_line(err)}") from err
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"factory '{source.factory}' returned {type(module).__name__}, not a torch.nn.Module")
    return module


def factory_source(artifact: Artifact, stage: str) -> TorchSource:
    """The artifact's source, for a stage that rebuilds its structure from the factory."""
    if artifact.source is None or artifact.source.factory is None:
        kind = artifact.source.file_kind if artifact.source else None
        raise ModelLoadError(
            f"{stage}: the model has no factory to rebuild it from (a {kind or 'whole-model'} file); "
            "give a factory source instead"
        )
    return artifact.source


def from_record(record: dict[str, Any]) -> torch.nn.Module:
    """A fresh module from a source nested as JSON in a structural factory's kwargs
    (a pruned or smoothed module's parent)."""
    return instantiate(TorchSource.from_json(record))


def read_state_dict(path: Path) -> dict:
    """A state dict file, tensors only: a file that pickles other objects is refused."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a hostile file is reported below, in one line
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelLoadError(
            f"{path}: not a loadable state dict (only tensors are accepted): it pickles other objects "
            "(code, whole modules); save model.state_dict() instead"
        ) from err
    except Exception as err:  # RuntimeError for corrupt or truncated archives, EOFError, ...
        raise ModelLoadError(f"{path}: not a loadable state dict: {first_line(err, 120)}") from err
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path}: holds a {type(state).__name__}, expected a state dict")
    return state


def load_state(module: torch.nn.Module, path: Path, source: str) -> torch.nn.Module:
    """Load a state dict file into the module; one line when it does not fit."""
    try:
        module.load_state_dict(read_state_dict(path))
    except RuntimeError as err:
        raise ModelLoadError(f"{path}: does not fit {source}: {first_line(err)}") from err
    return module


def load_module(artifact: Artifact) -> torch.nn.Module:
    """The eval-mode module of a torch artifact, on the CPU."""
    source = artifact.source
    if source is None:
        raise ModelLoadError(f"{artifact.path}: a torch artifact without a source to rebuild it from")
    if source.file:
        path = Path(source.file)
        if not path.is_file() or file_sha256(path) != source.file_sha256:
            raise ModelLoadError(f"{path}: the model file is gone or changed since it was read; run the recipe again")
        module, label = read_model_file(path, source.file_kind), f"{source.file_kind} file {path.name}"
    else:
        module, label = instantiate(source), f"factory '{source.factory}'"
    return eval_mode(load_state(module, artifact.path, label))


def eval_mode(module: torch.nn.Module) -> torch.nn.Module:
    """module.eval(), except for an exported program's module, which refuses train() and
    eval(): it runs as it was captured."""
    try:
        return module.eval()
    except NotImplementedError:
        return module


def module_io(module: torch.nn.Module, inputs: tuple[TensorSpec, ...], names, probe: dict[str, np.ndarray]) -> IO:
    """The module's inputs and its outputs as one forward pass over the probe shows them;
    dim 0 follows the inputs' batch dim."""
    import torch

    example = [torch.from_numpy(probe[spec.name]) for spec in inputs]
    try:
        with torch.inference_mode():
            outputs = eval_mode(module)(*example)
    except Exception as err:  # the user's forward() can raise anything on a shape mismatch
        shapes = [tuple(e.shape) for e in example]
        raise ModelLoadError(f"the model fails on the sample inputs {shapes}: {first_line(err)}") from err
    tensors = output_tuple(outputs)
    if names is None:
        names = ["output"] if len(tensors) == 1 else [f"output_{i}" for i in range(len(tensors))]
    if len(names) != len(tensors):
        raise ModelLoadError(f"the model returns {len(tensors)} outputs but {len(names)} names were given")
    batch_dim = inputs[0].shape[0] if inputs and isinstance(inputs[0].shape[0], str) else None
    specs = []
    for name, tensor in zip(names, tensors, strict=True):
        shape: list[int | str] = list(tensor.shape)
        if batch_dim and shape:
            shape[0] = batch_dim
        specs.append(TensorSpec(name, tuple(shape), str(tensor.detach().numpy().dtype)))
    return IO(tuple(inputs), tuple(specs))


def save_module(
    module: torch.nn.Module,
    source: TorchSource,
    out_dir: Path,
    *,
    stage: str,
    options: dict,
    parent: Artifact | None,
    io: IO,
    facts: dict | None = None,
) -> Artifact:
    """Save the module's state dict as a torch artifact that `source` rebuilds."""
    import torch

    path = out_dir / WEIGHTS_FILE
    try:
        torch.save(module.state_dict(), path)
        (out_dir / SOURCE_FILE).write_text(json.dumps(dataclasses.asdict(source), sort_keys=True, default=str))
    except RuntimeError as err:  # torch reports a refused write (full disk, size limit) as an iostream error
        raise output_error(out_dir.parent, err) from err
    figures = {
        "parameters": sum(p.numel() for p in module.parameters()),
        "size_bytes": path.stat().st_size,
        **(facts or {}),
    }
    return Artifact(
        path=path,
        format=Format.TORCH,
        precision=Precision.FP32,
        stage=stage,
        options=options,
        parent=parent.sha256 if parent else None,
        io=io,
        source=source,
        facts=figures,
    )


def save_derived(
    module: torch.nn.Module,
    parent: Artifact,
    source: TorchSource,
    context: StageContext,
    *,
    stage: str,
    options: BaseModel,
    facts: dict,
) -> Artifact:
    """Save a module a stage made from `parent` (same inputs and outputs), and check that
    `source` rebuilds it."""
    zeros = sum(int((p == 0).sum()) for p in module.parameters())
    artifact = save_module(
        eval_mode(module),
        source,
        context.out_dir,
        stage=stage,
        options=options.model_dump(mode="json"),
        parent=parent,
        io=parent.io,
        facts={"zero_parameters": zeros, **facts},
    )
    return dataclasses.replace(artifact, verification=check_rebuild(module, artifact, context.probe))


def check_rebuild(module: torch.nn.Module, artifact: Artifact, probe: dict[str, np.ndarray]) -> Verification:
    """Run the artifact as every later stage will (its source, then its state dict) and
    compare it with the module in memory: a structural edit the source cannot reproduce
    fails here, not at export."""
    import torch

    feeds = [torch.from_numpy(probe[spec.name]) for spec in artifact.io.inputs]
    rebuilt = load_module(artifact)
    with torch.inference_mode():
        expected, actual = eval_mode(module)(*feeds), rebuilt(*feeds)
    expected, actual = output_tuple(expected), output_tuple(actual)
    names = [spec.name for spec in artifact.io.outputs]
    return compare_outputs(
        {n: t.numpy() for n, t in zip(names, expected, strict=True)},
        {n: t.numpy() for n, t in zip(names, actual, strict=True)},
        Tolerance(atol=1e-6, rtol=1e-6),
        reference_name=f"the {artifact.stage} module in memory, before saving",
    )
