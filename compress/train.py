"""The training loop every compress stage shares: Adam, early stopping on the validation
split, optional L1/L2 penalties, a pluggable loss, on one thread so a seed repeats."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from edgeopt.core.artifact import Artifact
from edgeopt.core.data import Split
from edgeopt.core.errors import DataError

if TYPE_CHECKING:
    import torch
    from torch import nn


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = Field(20, description="passes over the train split at most")
    learning_rate: float = Field(3e-3, gt=0, description="Adam's learning rate, annealed to zero over the epochs")
    batch_size: PositiveInt = Field(64, description="samples per optimizer step")
    patience: int = Field(
        0, ge=0, description="stop after this many epochs without a better validation top-1 (0: run every epoch)"
    )
    l1: float = Field(0.0, ge=0, description="L1 penalty on the weights of conv and linear layers")
    l2: float = Field(0.0, ge=0, description="L2 penalty on the weights of conv and linear layers")
    seed: int = Field(0, description="seed for initialisation and batch order")


@dataclass(frozen=True)
class Fitted:
    validation_top1: float
    epochs_run: int
    best_epoch: int


def require_labels(split: Split | None, what: str) -> Split:
    if split is None or split.labels is None:
        raise DataError(f"{what} needs labelled data: the recipe's dataset has no labelled {what} split")
    return split


def input_names(artifact: Artifact) -> list[str]:
    return [spec.name for spec in artifact.io.inputs]


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tensors(split: Split, names: list[str]) -> list[torch.Tensor]:

    import torch

    return [torch.from_numpy(np.ascontiguousarray(split.inputs[name])) for name in names]


def outputs(module: nn.Module, split: Split, names: list[str], batch_size: int = 256) -> torch.Tensor:
    """The module's first output over the whole split, in eval mode, without gradients."""
    import torch

    module.eval()
    inputs = tensors(split, names)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            result = module(*(x[start : start + batch_size] for x in inputs))
            chunks.append(result[0] if isinstance(result, (tuple, list)) else result)
    return torch.cat(chunks)


def top1(module: nn.Module, split: Split, names: list[str]) -> float:
    predicted = outputs(module, split, names).argmax(dim=1).numpy()
    return float((predicted == split.labels).mean())


def penalised_weights(module: nn.Module) -> list[nn.Parameter]:
    """Weights of conv and linear layers: what L1/L2 penalise and pruning removes."""
    from torch import nn

    return [m.weight for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def fit(
    module: nn.Module,
    train: Split,
    validation: Split,
    names: list[str],
    training: Training,
    loss: Callable | None = None,
    after_step: Callable[[], None] | None = None,
) -> Fitted:
    """Train in place and keep the weights of the epoch with the best validation top-1.

    `loss(outputs, labels, index into the train split)` defaults to cross-entropy;
    `after_step` runs after every optimizer step (pruning masks re-apply themselves there).
    """
    with one_thread():
        return _fit(module, train, validation, names, training, loss or _cross_entropy, after_step)


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread: the same weights for a seed on any machine, and in a Ray task
    (parallel reductions round differently with the thread count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cross_entropy(outputs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:

    from torch import nn

    return nn.functional.cross_entropy(outputs, labels)


def _fit(module, train, validation, names, training: Training, loss: Callable, after_step) -> Fitted:

    import torch

    torch.manual_seed(training.seed)
    generator = torch.Generator().manual_seed(training.seed)
    inputs = tensors(train, names)
    labels = torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(module.parameters(), lr=training.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, training.epochs)
    weights = penalised_weights(module)
    best, best_epoch, best_state = top1(module, validation, names), 0, copy.deepcopy(module.state_dict())
    epoch = 0
    for epoch in range(1, training.epochs + 1):
        module.train()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), training.batch_size):
            index = order[start : start + training.batch_size]
            optimizer.zero_grad()
            value = loss(module(*(x[index] for x in inputs)), labels[index], index)
            if training.l1:
                value = value + training.l1 * sum(w.abs().sum() for w in weights)
            if training.l2:
                value = value + training.l2 * sum(w.square().sum() for w in weights)
            value.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
        schedule.step()
        score = top1(module, validation, names)
        if score > best:
            best, best_epoch, best_state = score, epoch, copy.deepcopy(module.state_dict())
        elif training.patience and epoch - best_epoch >= training.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return Fitted(validation_top1=best, epochs_run=epoch, best_epoch=best_epoch)
