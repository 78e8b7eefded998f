"""Whole torch models in one file, read without a factory: TorchScript archives
(torch.jit.save), exported programs (torch.export.save, .pt2) and pickled modules
(torch.save(module), only where the recipe trusts the file).

What loading each runs: a TorchScript archive's TorchScript code (the model's methods, in
TorchScript's interpreter, calling torch operators; no Python); for an exported program,
nothing (a graph of torch operators and its tensors are deserialized; archives holding
compiled AOTInductor code or pickled Python objects are refused); a pickle, any Python
code the file names.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from edgeopt.core.artifact import ModelFile, TensorSpec
from edgeopt.core.errors import ModelLoadError, first_line

if TYPE_CHECKING:
    import torch


# what each kind of file is, in a user's words
MODEL_FILES = {
    ModelFile.PICKLE: "a pickle (torch.save)",
    ModelFile.TORCHSCRIPT: "a TorchScript archive (torch.jit.save)",
    ModelFile.EXPORTED: "an exported program (torch.export.save)",
}


def model_file_kind(path: Path) -> ModelFile | None:
    """What a torch file holds, from its zip directory alone (nothing is loaded): a
    TorchScript archive (code/), an exported program (archive_format, models/), a
    torch.save pickle (data.pkl); None for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.startswith("code/") for name in names):
        return ModelFile.TORCHSCRIPT
    if "archive_format" in names or "serialized_exported_program.json" in names:
        return ModelFile.EXPORTED
    return ModelFile.PICKLE if "data.pkl" in names else None


def read_model_file(path: Path, kind: ModelFile) -> torch.nn.Module:
    """The module in a whole-model file, checked to be of `kind` first."""
    found = model_file_kind(path)
    if kind is not ModelFile.PICKLE and found is not kind:  # old pickles are not zip archives
        what = f"it is {MODEL_FILES[found]}" if found else "it is no torch archive"
        raise ModelLoadError(f"{path}: not {MODEL_FILES[kind]}; {what}")
    if kind is ModelFile.PICKLE:
        return load_pickled(path)
    if kind is ModelFile.TORCHSCRIPT:
        import torch

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # RuntimeError for a damaged archive or an operator this torch lacks
            raise ModelLoadError(f"{path}: cannot load the TorchScript archive: {first_line(err)}") from err
    return load_exported(path).module()


def load_exported(path: Path):
    """A torch.export program, deserialized with no code from the file run: archives that
    hold compiled AOTInductor libraries or pickled Python objects are refused, and any
    tensor payload torch would unpickle is read weights-only."""
    import torch

    _refuse_code_in_program(path)
    try:
        with warnings.catch_warnings(), _weights_only_loads():
            warnings.simplefilter("ignore")
            return torch.export.load(str(path))
    except Exception as err:  # RuntimeError, pickle errors from a refused payload, schema mismatches
        raise ModelLoadError(f"{path}: cannot load the exported program: {first_line(err)}") from err


def _refuse_code_in_program(path: Path) -> None:
    """torch.export.load dlopens AOTInductor libraries and unpickles 'opaque' constants."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any("/data/aotinductor/" in f"/{name}" for name in names):
            raise ModelLoadError(f"{path}: holds AOTInductor compiled code, which loading would run; refusing it")
        for name in (n for n in names if n.endswith("_constants_config.json")):
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError) as err:
                raise ModelLoadError(f"{path}: damaged exported program ({name}: {first_line(err)})") from err
            if any(str(entry.get("path_name", "")).startswith("opaque_obj_") for entry in config.values()):
                raise ModelLoadError(f"{path}: holds pickled Python objects, which loading would run; refusing it")


@contextlib.contextmanager
def _weights_only_loads():
    """torch.load reads tensors only within, even where torch.export asks for a full
    unpickling (pickled weights, sample inputs and its fallback for them)."""
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def exported_inputs(path: Path) -> tuple[TensorSpec, ...]:
    """An exported program's inputs as it declares them: the forward's argument names,
    dtypes, and shapes whose dynamic dims are named (`batch` for a first one)."""
    import torch

    program = load_exported(path)
    user_inputs = set(program.graph_signature.user_inputs)
    names: dict[str, str] = {}
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{path}: input '{node.name}' is not a tensor; edgeopt feeds tensors only")
        shape: list[int | str] = []
        for axis, size in enumerate(value.shape):
            if isinstance(size, int):
                shape.append(size)
            else:
                default = "batch" if axis == 0 and "batch" not in names.values() else str(size)
                shape.append(names.setdefault(str(size), default))
        specs.append(TensorSpec(node.name, tuple(shape), str(value.dtype).removeprefix("torch.")))
    return tuple(specs)


def load_pickled(path: Path) -> torch.nn.Module:
    """Unpickle a whole nn.Module. This runs code from the file: only for a recipe that set
    trust_pickle."""
    import torch

    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # anything the pickle's own code raises
        raise ModelLoadError(f"{path}: cannot unpickle a model from it: {first_line(err)}") from err
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"{path}: holds a {type(module).__name__}, not a torch.nn.Module")
    return module
