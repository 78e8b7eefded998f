"""The `distill` stage: the input model teaches a smaller student with soft targets at a
temperature plus the hard labels; the same student trained without the teacher, over
several seeds, is recorded beside it.

torch artifact (the teacher) → torch artifact (the student, rebuilt by its own factory).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from compress.train import Training, fit, input_names, outputs, parameter_count, require_labels, top1
from edgeopt.core.artifact import Artifact, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.core.torch_artifact import instantiate, load_module, save_derived

if TYPE_CHECKING:
    import torch


class DistillOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    student: str = Field(
        "compress.models:DigitsResNet",
        description="package.module:function building the student (looked up beside the recipe first)",
    )
    student_kwargs: dict[str, Any] = Field({"width": 16}, description="keyword arguments for the student factory")
    dropout: float | None = Field(
        None, ge=0, lt=1, description="passed to the student factory as dropout=… (the factory must take it)"
    )
    temperature: float = Field(4.0, gt=0, description="softens teacher and student outputs for the soft loss")
    soft_weight: float = Field(0.7, ge=0, description="weight of the soft-target loss (scaled by temperature²)")
    hard_weight: float = Field(0.3, ge=0, description="weight of the cross-entropy with the labels")
    training: Training = Field(Training(epochs=30, patience=8), description="the student's training")
    baseline_seeds: PositiveInt = Field(
        3, description="the student is also trained without the teacher with this many seeds, same budget"
    )


def distill(artifact: Artifact, options: DistillOptions, context: StageContext) -> Artifact:
    """Train the student against the teacher's soft targets and the labels."""
    import torch
    from torch import nn

    train = require_labels(context.training, "distill")
    validation = require_labels(context.evaluation, "distill")
    names = input_names(artifact)
    teacher = load_module(artifact)
    teacher_top1 = top1(teacher, validation, names)
    kwargs = {**options.student_kwargs, **({} if options.dropout is None else {"dropout": options.dropout})}
    student_source = TorchSource(options.student, kwargs, artifact.source.search_dir if artifact.source else None)
    with torch.no_grad():
        soft_targets = (outputs(teacher, train, names) / options.temperature).softmax(dim=1)

    def loss(student_outputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        log_probabilities = (student_outputs / options.temperature).log_softmax(dim=1)
        soft = nn.functional.kl_div(log_probabilities, soft_targets[index], reduction="batchmean")
        hard = nn.functional.cross_entropy(student_outputs, labels)
        return options.soft_weight * options.temperature**2 * soft + options.hard_weight * hard

    torch.manual_seed(options.training.seed)
    student = instantiate(student_source)
    fitted = fit(student, train, validation, names, options.training, loss=loss)
    baseline = []
    for offset in range(options.baseline_seeds):
        training = options.training.model_copy(update={"seed": options.training.seed + offset})
        torch.manual_seed(training.seed)
        alone = instantiate(student_source)
        baseline.append(fit(alone, train, validation, names, training).validation_top1)
    teacher_parameters, student_parameters = parameter_count(teacher), parameter_count(student)
    compression = {
        "method": "knowledge distillation",
        "teacher_parameters": teacher_parameters,
        "parameters_ratio": student_parameters / teacher_parameters,
        "teacher_validation_top1": teacher_top1,
        "validation_top1": fitted.validation_top1,
        "epochs_run": fitted.epochs_run,
        "baseline_validation_top1": baseline,
        "baseline_validation_top1_mean": statistics.fmean(baseline),
        "summary": (
            f"student {options.student} {kwargs}: {student_parameters:,} parameters "
            f"({student_parameters / teacher_parameters:.1%} of the teacher's); validation top-1 "
            f"{fitted.validation_top1:.2%} against the teacher's {teacher_top1:.2%} and "
            f"{statistics.fmean(baseline):.2%} for the student trained alone (mean of {len(baseline)} seeds, "
            f"same budget: {', '.join(f'{b:.2%}' for b in baseline)})"
        ),
    }
    return save_derived(
        student, artifact, student_source, context, stage="distill", options=options, facts={"compression": compression}
    )
