"""The demo default: a small CNN trained in seconds on scikit-learn's bundled digits.

1,797 real 8×8 handwritten digits, split 70/30 (stratified, fixed seed) into train
and held-out test; a fifth of train is the validation split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeopt.core.data import Dataset, Split


def load_digits_dataset(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.3, random_state=seed, stratify=labels
    )
    x_train, x_valid, y_train, y_valid = train_test_split(
        x_train, y_train, test_size=0.2, random_state=seed, stratify=y_train
    )
    return Dataset(
        name="digits",
        train=Split({"image": x_train}, y_train),
        test=Split({"image": x_test}, y_test),
        validation=Split({"image": x_valid}, y_valid),
    )


class DigitsCNN(nn.Module):
    """Three conv blocks and a linear head; `width` scales every layer."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.features = nn.Sequential(
            block(1, width), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 4 * width)
        )
        self.head = nn.Linear(4 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).mean(dim=(2, 3)))


def train_classifier(
    module: nn.Module,
    train: Split,
    *,
    epochs: int,
    seed: int,
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    on_epoch=None,
) -> nn.Module:
    """Plain Adam with cross-entropy on one thread: the same weights for a seed on any machine
    (parallel reductions round differently with the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(
            module,
            train,
            epochs=epochs,
            seed=seed,
            learning_rate=learning_rate,
            batch_size=batch_size,
            on_epoch=on_epoch,
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    module: nn.Module, train: Split, *, epochs: int, seed: int, learning_rate: float, batch_size: int, on_epoch
) -> nn.Module:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    (name,) = train.inputs
    inputs = torch.from_numpy(train.inputs[name])
    labels = torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(module(inputs[index]), labels[index])
            loss.backward()
            optimizer.step()
        schedule.step()
        if on_epoch is not None:
            on_epoch()
    return module.eval()
