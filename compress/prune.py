"""Pruning stages: structured channel pruning (torch-pruning's dependency graph couples
batch norm, residual additions, concatenations, grouped and depthwise convolutions),
unstructured magnitude pruning, and layer pruning; each fine-tuned after the cut.

torch artifact → torch artifact whose factory (`pruned_module`) rebuilds the smaller structure.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from compress.train import Training, fit, input_names, parameter_count, penalised_weights, require_labels, top1
from edgeopt.core.artifact import Artifact, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.errors import RecipeError
from edgeopt.core.torch_artifact import factory_source, from_record, load_module, save_derived

if TYPE_CHECKING:
    import torch
    from torch import nn

_ATTRIBUTES = ("in_channels", "out_channels", "groups", "num_features", "in_features", "out_features")


class Importance(StrEnum):
    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn_scale"


class Scope(StrEnum):
    GLOBAL = "global"
    LAYER = "layer"


class PruneChannelsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = Field(0.5, gt=0, lt=1, description="fraction of the channels of each prunable layer to remove")
    importance: Importance = Field(
        Importance.L1, description="how channels are ranked: l1 or l2 norm of their weights, or batch-norm scale"
    )
    scope: Scope = Field(
        Scope.LAYER, description="layer: the same ratio in every layer; global: rank all channels together"
    )
    keep: list[str] = Field(
        [], description="modules whose output channels stay (default: the last conv or linear, the classifier)"
    )
    round_to: int | None = Field(None, ge=1, description="keep channel counts a multiple of this (SIMD-friendly)")
    fine_tune: Training = Field(Training(patience=5), description="fine-tuning after the cut")


class PruneMagnitudeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of conv and linear weights set to zero")
    scope: Scope = Field(
        Scope.GLOBAL, description="global: one magnitude threshold for all layers; layer: the sparsity in each"
    )
    fine_tune: Training = Field(Training(patience=5), description="fine-tuning with the zeros held at zero")


class PruneLayersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(1, ge=1, description="how many layers or residual blocks to drop")
    candidates: list[str] = Field(
        [],
        description="modules that may be dropped (default: shape-preserving children of nn.Sequential holding a conv or linear)",
    )
    fine_tune: Training = Field(Training(patience=5), description="fine-tuning after the cut")


def pruned_module(base: dict, layers: dict | None = None, dropped: list[str] | None = None) -> nn.Module:
    """The factory of a pruned artifact: the base module with each layer resized to its recorded
    attributes and tensor shapes, and each dropped module replaced by an identity."""
    import torch
    from torch import nn

    module = from_record(base)
    for name, layer in (layers or {}).items():
        target = module.get_submodule(name)
        for attribute, value in layer["attributes"].items():
            setattr(target, attribute, value)
        for tensor, shape in layer["shapes"].items():
            if tensor in target._parameters:
                target._parameters[tensor] = nn.Parameter(torch.empty(shape))
            else:
                target._buffers[tensor] = torch.empty(shape, dtype=target._buffers[tensor].dtype)
    for name in dropped or []:  # after resizing: a layer pruned for channels may be dropped later
        _replace(module, name, nn.Identity())
    return module


def prune_channels(artifact: Artifact, options: PruneChannelsOptions, context: StageContext) -> Artifact:
    """Remove the least important channels and filters, physically, then fine-tune."""
    import torch
    import torch_pruning

    train = require_labels(context.training, "prune_channels")
    validation = require_labels(context.evaluation, "prune_channels")
    names = input_names(artifact)
    module = copy.deepcopy(load_module(artifact))
    before_parameters, before_top1 = parameter_count(module), top1(module, validation, names)
    shapes_before = tensor_shapes(module)
    example = tuple(torch.from_numpy(context.probe[name][:1]) for name in names)
    keep = [module.get_submodule(name) for name in options.keep] if options.keep else [_last_layer(module)]
    importance = {
        Importance.L1: lambda: torch_pruning.importance.MagnitudeImportance(p=1),
        Importance.L2: lambda: torch_pruning.importance.MagnitudeImportance(p=2),
        Importance.BN_SCALE: torch_pruning.importance.BNScaleImportance,
    }[options.importance]()
    pruner = torch_pruning.pruner.MetaPruner(
        module,
        example,
        importance=importance,
        pruning_ratio=options.ratio,
        global_pruning=options.scope is Scope.GLOBAL,
        ignored_layers=keep,
        round_to=options.round_to,
    )
    pruner.step()
    cut_top1 = top1(module, validation, names)
    fitted = fit(module, train, validation, names, options.fine_tune)
    layers = resized_layers(module, shapes_before)
    channels = {
        name: layer["attributes"]["out_channels"]
        for name, layer in layers.items()
        if "out_channels" in layer["attributes"]
    }
    compression = {
        "method": "structured channel pruning",
        "parameters_before": before_parameters,
        "validation_top1_before": before_top1,
        "validation_top1_after_cut": cut_top1,
        "validation_top1": fitted.validation_top1,
        "fine_tune_epochs": fitted.epochs_run,
        "layers_resized": len(layers),
        "output_channels": channels,
        "summary": (
            f"removed {options.ratio:.0%} of the channels ({options.scope} {options.importance}): "
            f"{before_parameters:,} → {parameter_count(module):,} parameters; validation top-1 "
            f"{before_top1:.2%} → {cut_top1:.2%} after the cut → {fitted.validation_top1:.2%} after "
            f"{fitted.epochs_run} fine-tuning epochs"
        ),
    }
    source = structural_source(factory_source(artifact, "prune_channels"), layers, [])
    return save_derived(
        module, artifact, source, context, stage="prune_channels", options=options, facts={"compression": compression}
    )


def prune_magnitude(artifact: Artifact, options: PruneMagnitudeOptions, context: StageContext) -> Artifact:
    """Zero the smallest weights (the structure stays), then fine-tune with the zeros held."""
    import torch

    train = require_labels(context.training, "prune_magnitude")
    validation = require_labels(context.evaluation, "prune_magnitude")
    names = input_names(artifact)
    module = copy.deepcopy(load_module(artifact))
    before_top1 = top1(module, validation, names)
    weights = penalised_weights(module)
    masks = _magnitude_masks(weights, options.sparsity, options.scope)

    def hold_zeros() -> None:
        with torch.no_grad():
            for weight, mask in zip(weights, masks, strict=True):
                weight.mul_(mask)

    hold_zeros()
    cut_top1 = top1(module, validation, names)
    fitted = fit(module, train, validation, names, options.fine_tune, after_step=hold_zeros)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    compression = {
        "method": "unstructured magnitude pruning",
        "sparsity": zeros / total,
        "dense_kernels": True,
        "validation_top1_before": before_top1,
        "validation_top1_after_cut": cut_top1,
        "validation_top1": fitted.validation_top1,
        "fine_tune_epochs": fitted.epochs_run,
        "summary": (
            f"{zeros / total:.0%} of conv and linear weights zero ({options.scope} threshold), shapes unchanged; "
            f"validation top-1 {before_top1:.2%} → {cut_top1:.2%} after the cut → {fitted.validation_top1:.2%} "
            f"after {fitted.epochs_run} fine-tuning epochs"
        ),
    }
    source = factory_source(artifact, "prune_magnitude")
    return save_derived(
        module, artifact, source, context, stage="prune_magnitude", options=options, facts={"compression": compression}
    )


def prune_layers(artifact: Artifact, options: PruneLayersOptions, context: StageContext) -> Artifact:
    """Drop, one at a time, the layer whose removal costs the least validation top-1; then fine-tune."""
    from torch import nn

    train = require_labels(context.training, "prune_layers")
    validation = require_labels(context.evaluation, "prune_layers")
    names = input_names(artifact)
    module = copy.deepcopy(load_module(artifact))
    before_parameters, before_top1 = parameter_count(module), top1(module, validation, names)
    candidates = options.candidates or _shape_preserving(module, context, names)
    unknown = [name for name in candidates if not _has(module, name)]
    if unknown:
        raise RecipeError(f"prune_layers: candidates {', '.join(unknown)} name no module of the model")
    if len(candidates) < options.layers:
        raise RecipeError(
            f"prune_layers: layers {options.layers} is more than the {len(candidates)} droppable ({', '.join(candidates) or 'none'})"
        )
    dropped: list[str] = []
    for _ in range(options.layers):
        scores = {}
        for name in candidates:
            if name in dropped or any(name.startswith(d + ".") for d in dropped):
                continue
            trial = copy.deepcopy(module)
            _replace(trial, name, nn.Identity())
            scores[name] = top1(trial, validation, names)
        chosen = max(scores, key=lambda name: (scores[name], name))
        _replace(module, chosen, nn.Identity())
        dropped.append(chosen)
    cut_top1 = top1(module, validation, names)
    fitted = fit(module, train, validation, names, options.fine_tune)
    compression = {
        "method": "layer pruning",
        "dropped": dropped,
        "parameters_before": before_parameters,
        "validation_top1_before": before_top1,
        "validation_top1_after_cut": cut_top1,
        "validation_top1": fitted.validation_top1,
        "fine_tune_epochs": fitted.epochs_run,
        "summary": (
            f"dropped {', '.join(dropped)}: {before_parameters:,} → {parameter_count(module):,} parameters; "
            f"validation top-1 {before_top1:.2%} → {cut_top1:.2%} → {fitted.validation_top1:.2%} after fine-tuning"
        ),
    }
    source = structural_source(factory_source(artifact, "prune_layers"), {}, dropped)
    return save_derived(
        module, artifact, source, context, stage="prune_layers", options=options, facts={"compression": compression}
    )


def structural_source(source: TorchSource, layers: dict, dropped: list[str]) -> TorchSource:
    """The source of a structural edit: the parent's source nested inside `pruned_module`,
    or its edit extended if it already is one."""
    if source.factory == f"{__name__}:pruned_module":
        kwargs = source.kwargs
        merged_layers = {**kwargs.get("layers", {}), **layers}
        edit = {**kwargs, "layers": merged_layers, "dropped": [*kwargs.get("dropped", []), *dropped]}
        return dataclasses.replace(source, kwargs=edit)
    kwargs = {"base": dataclasses.asdict(source), "layers": layers, "dropped": dropped}
    return TorchSource(f"{__name__}:pruned_module", kwargs)


def tensor_shapes(module: nn.Module) -> dict[str, tuple]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def resized_layers(module: nn.Module, before: dict[str, tuple]) -> dict:
    """Each module whose own tensors changed shape: its size attributes and tensor shapes.
    Only tensors of the state dict count: a non-persistent buffer (a transformer's
    position_ids) is not saved, so the factory must leave it as the model builds it."""
    layers = {}
    saved = module.state_dict().keys()
    for name, sub in module.named_modules():
        prefix = f"{name}." if name else ""
        own = {k: v for k, v in {**sub._parameters, **sub._buffers}.items() if v is not None and prefix + k in saved}
        if all(before.get(prefix + k) == tuple(v.shape) for k, v in own.items()):
            continue
        layers[name] = {
            "attributes": {a: getattr(sub, a) for a in _ATTRIBUTES if hasattr(sub, a)},
            "shapes": {k: list(v.shape) for k, v in own.items()},
        }
    return layers


def _last_layer(module: nn.Module) -> nn.Module:

    from torch import nn

    layers = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    return layers[-1]


def _magnitude_masks(weights: list[torch.Tensor], sparsity: float, scope: Scope) -> list[torch.Tensor]:

    import torch

    if scope is Scope.GLOBAL:
        magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
        threshold = magnitudes.kthvalue(max(1, math.ceil(sparsity * magnitudes.numel()))).values
        return [(w.detach().abs() > threshold).float() for w in weights]
    masks = []
    for w in weights:
        threshold = w.detach().abs().flatten().kthvalue(max(1, math.ceil(sparsity * w.numel()))).values
        masks.append((w.detach().abs() > threshold).float())
    return masks


def _shape_preserving(module: nn.Module, context: StageContext, names: list[str]) -> list[str]:
    """Children of nn.Sequential whose output has their input's shape and that hold a conv or linear."""
    import torch
    from torch import nn

    shapes: dict[str, bool] = {}
    hooks = []
    for name, sub in module.named_modules():
        parent_name = name.rpartition(".")[0]
        parent = module.get_submodule(parent_name) if name else None
        holds_layer = any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) for m in sub.modules())
        if isinstance(parent, nn.Sequential) and holds_layer:

            def record(_, args, output, name=name):
                shapes[name] = isinstance(output, torch.Tensor) and tuple(args[0].shape) == tuple(output.shape)

            hooks.append(sub.register_forward_hook(record))
    with torch.no_grad():
        module(*(torch.from_numpy(context.probe[name][:1]) for name in names))
    for hook in hooks:
        hook.remove()
    return [name for name, same in shapes.items() if same]


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def _replace(module: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name), child, replacement)
