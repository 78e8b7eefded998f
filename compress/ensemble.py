"""The `ensemble` stage: members trained here from the dataset (seeds and architectures
from the options), optionally with the input model, combined in one module that exports
as one ONNX graph.

Parallel: mean, weighted mean or majority vote of the members. Cascade: the first member
answers where its top softmax probability reaches the threshold; only the other samples
go to the last member (gathered, run, scattered back, so a confident batch skips it).
Stacking: a linear meta-model on the members' log-probabilities, fitted on the validation split.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from compress.combine import Combine, Mode
from compress.train import Training, fit, input_names, one_thread, outputs, parameter_count, require_labels, top1
from edgeopt.core.artifact import Artifact, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.errors import RecipeError


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    factory: str = Field("compress.models:DigitsResNet", description="package.module:function building the member")
    kwargs: dict[str, Any] = Field({}, description="keyword arguments for the factory")
    seed: int = Field(0, description="the member's training seed")


class EnsembleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field(Mode.PARALLEL, description="parallel, cascade (cheap first, large when unsure) or stacking")
    members: list[Member] = Field([Member()], min_length=1, description="members trained here, in order")
    with_input: bool = Field(
        False, description="the input model joins as the last member (in a cascade: the large model)"
    )
    combine: Combine = Field(Combine.MEAN, description="parallel: mean, weighted mean or majority vote")
    weights: list[float] | None = Field(
        None, description="weighted: one weight per member (default: each member's validation top-1)"
    )
    threshold: float = Field(
        0.9, gt=0, le=1, description="cascade: the first member answers where its top probability reaches this"
    )
    training: Training = Field(Training(patience=5), description="each member's training (seed from the member)")
    meta_epochs: int = Field(100, ge=1, description="stacking: full-batch epochs fitting the meta-model")

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleOptions:
        count = len(self.members) + self.with_input
        if self.mode is Mode.CASCADE and count != 2:
            raise ValueError(f"a cascade takes exactly 2 models (members plus with_input), got {count}")
        if self.mode is not Mode.CASCADE and count < 2:
            raise ValueError(f"an ensemble needs at least 2 models (members plus with_input), got {count}")
        if self.weights is not None and (self.combine is not Combine.WEIGHTED or len(self.weights) != count):
            raise ValueError(f"weights go with combine: weighted, one per model ({count})")
        return self


def ensemble(artifact: Artifact, options: EnsembleOptions, context: StageContext) -> Artifact:
    """Train the members, combine them, and record each member's validation top-1."""
    from compress.models import Ensemble
    from edgeopt.core.torch_artifact import save_derived

    train = require_labels(context.training, "ensemble")
    validation = require_labels(context.evaluation, "ensemble")
    names = input_names(artifact)
    if len(names) != 1:
        raise RecipeError(f"ensemble: models with one input only, this one takes {', '.join(names)}")
    sources, modules = _members(artifact, options, train, validation, names)
    member_top1 = [top1(m, validation, names) for m in modules]
    classes = artifact.io.outputs[0].shape[-1]
    weights = options.weights or (member_top1 if options.combine is Combine.WEIGHTED else [1.0] * len(modules))
    combined = Ensemble(modules, options.mode, options.combine, weights, options.threshold, classes)
    if options.mode is Mode.STACKING:
        with one_thread():  # like the members' training: the meta-model's weights follow the seed alone
            _fit_meta(combined, validation, names, options.meta_epochs)
    ensemble_top1 = top1(combined, validation, names)
    kwargs = {
        "members": [dataclasses.asdict(source) for source in sources],
        "mode": str(options.mode),
        "combine": str(options.combine),
        "weights": weights,
        "threshold": options.threshold,
        "classes": classes,
    }
    compression = {
        "method": f"{options.mode} ensemble",
        "members": [f"{source.factory} {source.kwargs}" for source in sources],
        "member_parameters": [parameter_count(m) for m in modules],
        "member_validation_top1": member_top1,
        "validation_top1": ensemble_top1,
        "summary": _summary(options, member_top1, ensemble_top1),
    }
    if options.mode is Mode.CASCADE:
        confident = outputs(modules[0], validation, names).softmax(dim=1).amax(dim=1) >= options.threshold
        compression["large_share_validation"] = 1 - float(confident.float().mean())
        compression["summary"] += (
            f"; {compression['large_share_validation']:.1%} of validation samples reach the large model"
        )
    return save_derived(
        combined,
        artifact,
        TorchSource("compress.models:ensemble_module", kwargs),
        context,
        stage="ensemble",
        options=options,
        facts={"compression": compression},
    )


def _members(artifact: Artifact, options: EnsembleOptions, train, validation, names) -> tuple[list, list]:
    """Each member trained from its factory (and the input model, with_input): their
    sources and modules."""
    import torch

    from edgeopt.core.torch_artifact import factory_source, instantiate, load_module

    search_dir = artifact.source.search_dir if artifact.source else None
    sources, modules = [], []
    for member in options.members:
        source = TorchSource(member.factory, member.kwargs, search_dir)
        torch.manual_seed(member.seed)
        module = instantiate(source)
        fit(module, train, validation, names, options.training.model_copy(update={"seed": member.seed}))
        sources.append(source)
        modules.append(module)
    if options.with_input:
        sources.append(factory_source(artifact, "ensemble"))
        modules.append(load_module(artifact))
    return sources, modules


def _summary(options: EnsembleOptions, member_top1: list[float], ensemble_top1: float) -> str:
    how = {
        Mode.PARALLEL: f"{options.combine} of {len(member_top1)}",
        Mode.CASCADE: f"cascade at confidence {options.threshold}",
        Mode.STACKING: f"stacking {len(member_top1)} under a linear meta-model",
    }[options.mode]
    members = ", ".join(f"{t:.2%}" for t in member_top1)
    return f"{how}: validation top-1 {ensemble_top1:.2%}, members {members}"


def _fit_meta(combined, validation, names: list[str], epochs: int) -> None:
    """Members are fixed; the meta-model learns on their validation outputs (the train split
    would teach it to trust members that memorised it)."""
    import torch
    from torch import nn

    with torch.no_grad():
        features = torch.cat([outputs(m, validation, names).log_softmax(dim=1) for m in combined.members], dim=1)
    labels = torch.from_numpy(validation.labels)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(combined.stacker.parameters(), lr=1e-2)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(combined.stacker(features), labels).backward()
        optimizer.step()
    combined.eval()
