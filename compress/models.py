"""Architectures the compress stages build: the demo's digits CNN, whose width, depth and
activation are keyword arguments (residual blocks give pruning coupled channels), and the
module that combines an ensemble's members."""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import nn

from compress.combine import Combine, Mode
from edgeopt.core.torch_artifact import from_record


class Activation(StrEnum):
    RELU = "relu"
    GELU = "gelu"
    SILU = "silu"
    TANH = "tanh"


_ACTIVATIONS = {
    Activation.RELU: nn.ReLU,
    Activation.GELU: nn.GELU,
    Activation.SILU: nn.SiLU,
    Activation.TANH: nn.Tanh,
}


def _conv(cin: int, cout: int, activation: Activation, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False), nn.BatchNorm2d(cout), _ACTIVATIONS[activation]()
    )


class Residual(nn.Module):
    """conv-BN-act, conv-BN, plus the input: both convs' outputs are tied to the input's channels."""

    def __init__(self, channels: int, activation: Activation):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, activation),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.activation = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.body(x))


class DigitsResNet(nn.Module):
    """stem conv, `depth` residual blocks, pool, wider conv, `depth` blocks, mean, dropout, linear."""

    def __init__(
        self,
        width: int = 16,
        depth: int = 1,
        activation: str = "relu",
        dropout: float = 0.0,
        classes: int = 10,
    ):
        super().__init__()
        act = Activation(activation)
        self.stem = _conv(1, width, act)
        self.stage1 = nn.Sequential(*(Residual(width, act) for _ in range(depth)))
        self.pool = nn.MaxPool2d(2)
        self.widen = _conv(width, 2 * width, act)
        self.stage2 = nn.Sequential(*(Residual(2 * width, act) for _ in range(depth)))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.stem(image))
        x = self.stage2(self.widen(self.pool(x)))
        return self.head(self.dropout(x.mean(dim=(2, 3))))


def wide_digits_resnet(width: int = 64, depth: int = 1, activation: str = "relu", dropout: float = 0.0) -> DigitsResNet:
    """The compression demo's source model: width 64, one residual block per stage."""
    return DigitsResNet(width=width, depth=depth, activation=activation, dropout=dropout)


class Ensemble(nn.Module):
    """One module over the members; its output is scores whose argmax is the ensemble's answer."""

    def __init__(
        self,
        members: list[nn.Module],
        mode: Mode,
        combine: Combine,
        weights: list[float],
        threshold: float,
        classes: int,
    ):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.mode, self.combine, self.threshold = Mode(mode), Combine(combine), threshold
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32).view(-1, 1, 1))
        self.stacker = nn.Linear(len(members) * classes, classes) if self.mode is Mode.STACKING else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # one input: torch.export cannot shape *args
        if self.mode is Mode.CASCADE:
            return self._cascade(x)
        scores = torch.stack([member(x) for member in self.members])
        if self.mode is Mode.STACKING:
            return self.stacker(scores.log_softmax(dim=-1).permute(1, 0, 2).flatten(1))  # member-major, as fitted
        probabilities = scores.softmax(dim=-1)
        if self.combine is Combine.VOTE:
            votes = nn.functional.one_hot(scores.argmax(dim=-1), scores.shape[-1]).sum(dim=0).float()
            return votes + 0.5 * probabilities.mean(dim=0)  # a tie goes to the more confident class
        return ((probabilities * self.weights).sum(dim=0) / self.weights.sum()).log()

    def _cascade(self, x: torch.Tensor) -> torch.Tensor:
        cheap, large = self.members
        logits = cheap(x)
        unsure = torch.nonzero(logits.softmax(dim=1).amax(dim=1) < self.threshold).squeeze(1)
        hard = large(x.index_select(0, unsure))
        return logits.index_copy(0, unsure, hard)


def ensemble_module(
    members: list[dict], mode: str, combine: str, weights: list[float], threshold: float, classes: int
) -> Ensemble:
    """The factory of an ensemble artifact: each member from its own source record."""
    return Ensemble([from_record(m) for m in members], Mode(mode), Combine(combine), weights, threshold, classes)
