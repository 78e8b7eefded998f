"""The ResNet-class built-in: real photograph crops and a head fitted on them."""

import numpy as np
import torch

from edgeopt.demo.photos import ResNet18, fit_head, load_photo_crops_dataset


def test_photo_crops_are_labelled_disjoint_splits():
    dataset = load_photo_crops_dataset(train=12, test=6, validation=6)
    for split in (dataset.train, dataset.test, dataset.validation):
        assert split.inputs["image"].shape[1:] == (3, 224, 224) and split.inputs["image"].dtype == np.float32
        assert split.labels.min() >= 0 and split.labels.max() < 12
    assert not np.array_equal(dataset.train.inputs["image"][:6], dataset.test.inputs["image"])
    again = load_photo_crops_dataset(train=12, test=6, validation=6)
    np.testing.assert_array_equal(again.test.inputs["image"], dataset.test.inputs["image"])


def test_fitted_head_separates_the_train_crops():
    dataset = load_photo_crops_dataset(train=24, test=2, validation=2)
    torch.manual_seed(0)
    module = fit_head(ResNet18(classes=12, widths=(8, 16, 32, 64)), dataset.train, seed=0)
    with torch.inference_mode():
        predicted = module(torch.from_numpy(dataset.train.inputs["image"])).argmax(1).numpy()
    assert (predicted == dataset.train.labels).mean() == 1.0
    assert not module.training
