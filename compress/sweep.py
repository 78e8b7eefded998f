"""The `train_structure` stage: one point of a structure sweep. The input model's factory is
called again with some keyword arguments changed (width, depth, activation, ...) and the
new module is trained from scratch on the dataset with the given budget.

torch artifact → torch artifact of another structure; a recipe lists one variant per point,
and the report's latency-vs-accuracy front shows which to ship.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compress.train import Training, fit, input_names, parameter_count, require_labels
from edgeopt.core.artifact import Artifact
from edgeopt.core.context import StageContext
from edgeopt.core.torch_artifact import factory_source, instantiate, save_derived


class TrainStructureOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kwargs: dict[str, Any] = Field({}, description="factory keyword arguments to change, e.g. width, depth, activation")
    training: Training = Field(Training(patience=5), description="the training budget, the same for every point")


def train_structure(artifact: Artifact, options: TrainStructureOptions, context: StageContext) -> Artifact:
    """Build the input's factory with the changed kwargs and train it from scratch."""
    import torch

    train = require_labels(context.training, "train_structure")
    validation = require_labels(context.evaluation, "train_structure")
    names = input_names(artifact)
    parent = factory_source(artifact, "train_structure")
    source = dataclasses.replace(parent, kwargs={**parent.kwargs, **options.kwargs})
    torch.manual_seed(options.training.seed)
    module = instantiate(source)
    fitted = fit(module, train, validation, names, options.training)
    compression = {
        "method": "structure sweep",
        "kwargs": source.kwargs,
        "validation_top1": fitted.validation_top1,
        "epochs_run": fitted.epochs_run,
        "summary": (
            f"{source.factory} {source.kwargs} trained from scratch: {parameter_count(module):,} parameters, "
            f"validation top-1 {fitted.validation_top1:.2%} after {fitted.epochs_run} epochs"
        ),
    }
    return save_derived(
        module, artifact, source, context, stage="train_structure", options=options, facts={"compression": compression}
    )
