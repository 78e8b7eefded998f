"""The `share_weights` stage: each conv and linear weight clustered into a small codebook
(1-D k-means), and layers named as sharing tied to one tensor.

torch artifact → torch artifact with the same structure, every weight one of `clusters`
values; `pack_codebook` then stores the exported graph as codebook plus uint8 indices.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.prune import structural_source
from compress.train import input_names, penalised_weights, require_labels, top1
from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.errors import RecipeError
from edgeopt.core.torch_artifact import factory_source, load_module, save_derived

if TYPE_CHECKING:
    import torch


class ShareWeightsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: int = Field(16, ge=2, le=256, description="codebook entries per layer (256 at most: uint8 indices)")
    tie: list[list[str]] = Field(
        [], description="groups of weight names (state-dict keys, same shape) that share one tensor, their mean"
    )

    @model_validator(mode="after")
    def _groups(self) -> ShareWeightsOptions:
        small = [group for group in self.tie if len(group) < 2]
        if small:
            raise ValueError(f"each tie group names at least 2 weights, got {small[0]}")
        return self


def cluster(values: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means from centroids spread linearly over the range (Han et al.: keeps the rare
    large weights that density-based starts lose); returns the codebook and each value's index."""
    from sklearn.cluster import KMeans

    flat = values.reshape(-1, 1).astype(np.float64)
    count = min(clusters, len(np.unique(flat)))
    start = np.linspace(flat.min(), flat.max(), count).reshape(-1, 1)
    kmeans = KMeans(n_clusters=count, init=start, n_init=1, random_state=0).fit(flat)
    return kmeans.cluster_centers_.ravel().astype(np.float32), kmeans.labels_.reshape(values.shape).astype(np.uint8)


def share_weights(artifact: Artifact, options: ShareWeightsOptions, context: StageContext) -> Artifact:
    """Fold batch norms into their convs, tie the named groups, then replace every conv and
    linear weight by its nearest centroid.

    Folding first matters: the ONNX exporters fold a batch norm into the conv before it, which
    scales each filter and would turn 16 values into hundreds.
    """
    import torch

    validation = require_labels(context.evaluation, "share_weights")
    names = input_names(artifact)
    module = copy.deepcopy(load_module(artifact))
    before_top1 = top1(module, validation, names)
    folded = _fold_batch_norms(module)
    parameters = dict(module.named_parameters())
    for group in options.tie:
        _tie(parameters, group)
    clustered = {id(w) for w in penalised_weights(module)}
    layers = {}
    with torch.no_grad():
        for name, weight in parameters.items():
            if id(weight) not in clustered:
                continue
            codebook, indices = cluster(weight.numpy(), options.clusters)
            weight.copy_(torch.from_numpy(codebook[indices]))
            layers[name] = len(codebook)
    after_top1 = top1(module, validation, names)
    compression = {
        "method": "weight sharing",
        "clusters": options.clusters,
        "layers_clustered": layers,
        "tied": options.tie,
        "batch_norms_folded": list(folded.values()),
        "dense_kernels": True,
        "validation_top1_before": before_top1,
        "validation_top1": after_top1,
        "summary": (
            f"{len(layers)} conv/linear weights clustered to {options.clusters} values each"
            + (f", {sum(len(g) for g in options.tie)} weights tied in {len(options.tie)} groups" if options.tie else "")
            + f"; validation top-1 {before_top1:.2%} → {after_top1:.2%} (no fine-tuning)"
        ),
    }
    layers = {
        conv: {"attributes": {}, "shapes": {"bias": [module.get_submodule(conv).out_channels]}} for conv in folded
    }
    source = structural_source(factory_source(artifact, "share_weights"), layers, list(folded.values()))
    return save_derived(
        module, artifact, source, context, stage="share_weights", options=options, facts={"compression": compression}
    )


def _tie(parameters: dict[str, torch.nn.Parameter], group: list[str]) -> None:
    """Set every weight of the group to the group's mean (the state dict keeps one copy per name;
    the packed ONNX form stores equal tensors once)."""
    import torch

    missing = [name for name in group if name not in parameters]
    if missing:
        raise RecipeError(f"share_weights: tie names {', '.join(missing)}, not a weight of the model")
    shapes = {tuple(parameters[name].shape) for name in group}
    if len(shapes) > 1:
        raise RecipeError(f"share_weights: tie group {group} has different shapes {sorted(shapes)}")
    with torch.no_grad():
        mean = torch.stack([parameters[name] for name in group]).mean(dim=0)
        for name in group:
            parameters[name].copy_(mean)


def _fold_batch_norms(module) -> dict[str, str]:
    """Fold each BatchNorm2d that directly follows a Conv2d in an nn.Sequential into that conv
    (the norm becomes an identity); returns conv name → norm name."""
    import torch
    from torch import nn

    folded = {}
    for name, sequence in module.named_modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        children = list(sequence.named_children())
        for (conv_name, conv), (norm_name, norm) in itertools.pairwise(children):
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                continue
            with torch.no_grad():
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            setattr(sequence, norm_name, nn.Identity())
            prefix = f"{name}." if name else ""
            folded[prefix + conv_name] = prefix + norm_name
    return folded
