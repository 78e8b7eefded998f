"""The `prune_ffn` stage: structured pruning of a transformer's feed-forward neurons,
without fine-tuning.

Each feed-forward block is up (Linear, d → n), an activation, down (Linear, n → d). A
neuron j adds a_j · W_down[:, j] to the block's output. Over calibration tokens, the mean
part μ_j · W_down[:, j] is the same for every token, so it is folded into down's bias; what
removing j loses is the rest, whose expected squared norm is Var(a_j) · ‖W_down[:, j]‖².
The neurons with the least of it go, the same share from every block, and both Linears
shrink, so the GEMMs do less work in every runtime, INT8 included.

The variance criterion keeps more accuracy than ranking by mean |a_j| · ‖W_down[:, j]‖
(the README's "Measured choices").

torch artifact → torch artifact (rebuilt by `compress.prune.pruned_module`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from compress.prune import resized_layers, structural_source, tensor_shapes
from compress.train import input_names, parameter_count
from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.errors import DataError, RecipeError
from edgeopt.core.torch_artifact import factory_source, load_module, save_derived

if TYPE_CHECKING:
    from torch import nn

MASK_INPUT = "attention_mask"


class PruneFfnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: float = Field(0.125, gt=0, lt=1, description="share of each feed-forward block's neurons to remove")
    up: str = Field("intermediate.dense", description="module-name suffix of the widening Linear (BERT's)")
    down: str = Field("output.dense", description="suffix of the narrowing Linear, under the same parent as up")
    round_to: int = Field(64, ge=1, description="keep neuron counts a multiple of this (SIMD-friendly)")
    samples: int = Field(128, ge=1, description="calibration samples whose activations rank the neurons")
    batch_size: int = Field(32, ge=1, description="samples per forward pass while measuring")


def prune_ffn(artifact: Artifact, options: PruneFfnOptions, context: StageContext) -> Artifact:
    import torch

    if context.calibration is None:
        raise DataError("prune_ffn needs calibration samples (a dataset with real inputs)")
    module = copy.deepcopy(load_module(artifact))
    blocks = _blocks(module, options)
    before_parameters, shapes_before = parameter_count(module), tensor_shapes(module)
    statistics = _activation_statistics(module, blocks, artifact, context.calibration, options)
    kept_share = []
    for (up_name, down_name), (mean, variance) in zip(blocks, statistics, strict=True):
        up, down = module.get_submodule(up_name), module.get_submodule(down_name)
        width = up.out_features
        keep_count = round(width * (1 - options.ratio) / options.round_to) * options.round_to
        if not 0 < keep_count < width:
            raise RecipeError(
                f"prune_ffn: ratio {options.ratio} of {width} neurons rounded to a multiple of "
                f"{options.round_to} keeps {keep_count}; choose another ratio or round_to"
            )
        importance = variance * down.weight.detach().double().pow(2).sum(dim=0)
        keep = torch.argsort(importance, descending=True)[:keep_count].sort().values
        dropped = torch.ones(width, dtype=torch.bool)
        dropped[keep] = False
        kept_share.append(float(importance[keep].sum() / importance.sum()))
        _shrink(up, down, keep, (down.weight.detach().double()[:, dropped] @ mean[dropped]).float())
    layers = resized_layers(module, shapes_before)
    width = module.get_submodule(blocks[0][0]).out_features
    original = shapes_before[f"{blocks[0][0]}.weight"][0]
    compression = {
        "method": "feed-forward pruning",
        "blocks": len(blocks),
        "neurons_before": original,
        "neurons": width,
        "variance_kept": min(kept_share),
        "parameters_before": before_parameters,
        "summary": (
            f"{len(blocks)} feed-forward blocks pruned from {original} to {width} neurons, the least output "
            f"variance first (at least {min(kept_share):.1%} of each block's kept), their means folded into "
            f"the bias; {before_parameters:,} → {parameter_count(module):,} parameters, no fine-tuning"
        ),
    }
    source = structural_source(factory_source(artifact, "prune_ffn"), layers, [])
    return save_derived(
        module, artifact, source, context, stage="prune_ffn", options=options, facts={"compression": compression}
    )


def _blocks(module: nn.Module, options: PruneFfnOptions) -> list[tuple[str, str]]:
    """(up, down) module names of every feed-forward block."""
    from torch import nn

    names = dict(module.named_modules())
    blocks = []
    for name, up in names.items():
        if not (name == options.up or name.endswith("." + options.up)):
            continue
        parent = name[: -len(options.up)]
        down = names.get(parent + options.down)
        if not (isinstance(up, nn.Linear) and isinstance(down, nn.Linear) and down.in_features == up.out_features):
            raise RecipeError(
                f"prune_ffn: {name} has no Linear sibling {parent + options.down} reading its "
                f"{getattr(up, 'out_features', '?')} outputs; set up and down to the feed-forward Linears"
            )
        blocks.append((name, parent + options.down))
    if not blocks:
        raise RecipeError(f"prune_ffn: no module name ends with '{options.up}'; set up and down to the model's")
    return blocks


def _activation_statistics(module, blocks, artifact: Artifact, calibration, options) -> list[tuple]:
    """Per block, the mean and variance of each neuron's activation (down's input), over
    the calibration tokens that are not padding."""
    import torch

    sums: dict[str, list] = {down: [0.0, 0.0, 0] for _, down in blocks}
    selected: list = [None]

    def record(name):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().double().reshape(-1, inputs[0].shape[-1])
            if selected[0] is not None and selected[0].numel() == x.shape[0]:
                x = x[selected[0]]
            total = sums[name]
            total[0] = total[0] + x.sum(dim=0)
            total[1] = total[1] + x.pow(2).sum(dim=0)
            total[2] += x.shape[0]

        return hook

    handles = [module.get_submodule(down).register_forward_hook(record(down)) for _, down in blocks]
    names = input_names(artifact)
    count = min(options.samples, len(calibration))
    try:
        with torch.inference_mode():
            for start in range(0, count, options.batch_size):
                feeds = calibration.take(start, min(start + options.batch_size, count))
                mask = feeds.get(MASK_INPUT)
                selected[0] = torch.from_numpy(mask.reshape(-1) != 0) if mask is not None else None
                module(*(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in names))
    finally:
        for handle in handles:
            handle.remove()
    statistics = []
    for _, down in blocks:
        total, squares, tokens = sums[down]
        mean = total / tokens
        statistics.append((mean, (squares / tokens - mean.pow(2)).clamp(min=0)))
    return statistics


def _shrink(up, down, keep, folded) -> None:
    """Keep only the `keep` neurons of up's outputs and down's inputs; add the dropped
    neurons' mean contribution to down's bias."""
    import torch
    from torch import nn

    with torch.no_grad():
        up.weight = nn.Parameter(up.weight[keep].clone())
        if up.bias is not None:
            up.bias = nn.Parameter(up.bias[keep].clone())
        bias = down.bias if down.bias is not None else torch.zeros(down.out_features)
        down.bias = nn.Parameter(bias + folded)
        down.weight = nn.Parameter(down.weight[:, keep].clone())
    up.out_features = down.in_features = len(keep)
