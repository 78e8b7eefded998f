"""A ResNet-class model at 224×224 on real photographs, with nothing downloaded.

Data: scikit-learn ships two photographs (china.jpg, flower.jpg, 427×640). Each is cut
into a 2×3 grid of regions: twelve classes, "which region of which photograph is this
crop from". Crops of random size and position around a region's centre, resized to
224×224 with ImageNet normalisation; train, test and validation crops come from
different seeds.

Model: ResNet-18 (He et al., 2016), 11.7M parameters and 1.8 GMAC per image, the usual
latency yardstick for CNN deployment. No pretrained weights ship offline, so its
convolutions keep their seeded He initialisation, batch-norm statistics are measured
on the train crops, and the linear head is fitted (multinomial logistic regression) on
the pooled features: a classifier with real margins on real images, whose latency is
ResNet-18's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeopt.core.data import Dataset, Split
from edgeopt.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, normalise

GRID = (2, 3)
SIZE = 224


def load_photo_crops_dataset(train: int = 256, test: int = 256, validation: int = 128) -> Dataset:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    splits = {
        name: Split(*_crops(photos, count, np.random.default_rng(seed)))
        for seed, (name, count) in enumerate((("train", train), ("test", test), ("validation", validation)))
    }
    return Dataset(name="photo-crops", **splits)


def _crops(photos, count: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from PIL import Image

    rows, columns = GRID
    preprocess = Preprocess(resize=SIZE, crop=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    images = np.empty((count, 3, SIZE, SIZE), np.float32)
    labels = np.empty(count, np.int64)
    for index in range(count):
        photo_index = int(rng.integers(len(photos)))
        photo = photos[photo_index]
        height, width = photo.shape[:2]
        region = int(rng.integers(rows * columns))
        row, column = divmod(region, columns)
        side = int(rng.integers(96, 200))
        centre_y = (row + 0.5) * height / rows + rng.normal(0, height / rows / 8)
        centre_x = (column + 0.5) * width / columns + rng.normal(0, width / columns / 8)
        top = int(np.clip(centre_y - side / 2, 0, height - side))
        left = int(np.clip(centre_x - side / 2, 0, width - side))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((SIZE, SIZE), Image.BILINEAR)
        images[index] = normalise(np.asarray(crop), preprocess)
        labels[index] = photo_index * rows * columns + region
    return {"image": images}, labels


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, classes: int = 1000, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width, 1)))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(image)).mean(dim=(2, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


def photo_resnet18() -> ResNet18:
    return ResNet18(classes=GRID[0] * GRID[1] * 2)


def photo_resnet18_narrow() -> ResNet18:
    """ResNet-18 at a quarter of its width: 0.14 GMAC per image, a few milliseconds a call
    on one CPU core, the size of model the benchmark's own check times (recipes/bench.yaml)."""
    return ResNet18(classes=GRID[0] * GRID[1] * 2, widths=(16, 32, 64, 128))


def fit_head(module: ResNet18, train: Split, *, seed: int, on_epoch=None, batch_size: int = 32) -> ResNet18:
    """Batch-norm statistics from the train crops, then the head fitted on pooled features.
    One thread, as for the digits: the same weights for a seed on any machine."""
    from sklearn.linear_model import LogisticRegression

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = torch.from_numpy(train.inputs["image"])
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.reset_running_stats()
                layer.momentum = None  # a cumulative average over every batch
        module.train()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                module(images[start : start + batch_size])
        module.eval()
        with torch.inference_mode():
            features = torch.cat(
                [module.features(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
            ).numpy()
    finally:
        torch.set_num_threads(threads)
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    probe = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit((features - mean) / std, train.labels)
    coef, intercept = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # binary: one row scores the second class against the first
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    # the standardisation folds into the head; a class absent from the train crops gets a
    # constant logit below every fitted bias (not -inf, which would wreck INT8 ranges)
    weight = np.zeros(tuple(module.head.weight.shape))
    fitted = intercept - (coef / std) @ mean
    bias = np.full(module.head.bias.shape, fitted.min() - 10.0)
    weight[probe.classes_], bias[probe.classes_] = coef / std, fitted
    with torch.no_grad():
        module.head.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        module.head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    if on_epoch is not None:
        on_epoch()
    return module
