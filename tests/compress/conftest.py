"""A small trained residual digits CNN as a torch artifact, and stage contexts over digits."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from compress.train import Training, fit
from edgeopt.core.artifact import TensorSpec, TorchSource
from edgeopt.core.context import StageContext
from edgeopt.demo.digits import load_digits_dataset
from edgeopt.sources import load_factory

INPUTS = (TensorSpec("image", ("batch", 1, 8, 8), "float32"),)
HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="session")
def make_context(tmp_path_factory, digits):
    """A fresh output folder per stage run, with the digits splits as the pipeline gives them."""
    counter = itertools.count()

    def make() -> StageContext:
        out_dir = tmp_path_factory.mktemp(f"stage{next(counter)}")
        return StageContext(
            out_dir, digits.probe(), calibration=digits.train, evaluation=digits.validation, training=digits.train
        )

    return make


def trained_artifact(make_context, digits, reference: str, kwargs: dict, epochs: int = 3):
    """Train the factory's module briefly and load it as the pipeline loads a factory source."""
    from edgeopt.core.factory import resolve_factory

    torch.manual_seed(0)
    module = resolve_factory(reference, HERE)(**kwargs)
    fit(module, digits.train, digits.validation, ["image"], Training(epochs=epochs))
    context = make_context()
    weights = context.out_dir / "trained.pt"
    torch.save(module.state_dict(), weights)
    out_dir = make_context().out_dir
    return load_factory(
        TorchSource(reference, kwargs, str(HERE)), weights, INPUTS, ("logits",), out_dir, digits.probe()
    )


@pytest.fixture(scope="session")
def resnet(make_context, digits):
    return trained_artifact(make_context, digits, "compress.models:DigitsResNet", {"width": 8})
