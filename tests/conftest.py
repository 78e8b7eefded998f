"""Session fixtures that build in seconds: digits data, a tiny MLP, the digits CNN and its export.

`gpu` and `tensorrt` tests skip with the runtime probe's own reason; `slow` runs with --run-slow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

FACTORIES = Path(__file__).parent / "factories.py"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    from runtimes import probe

    reasons = {}
    gpu = probe("torch-cuda")
    reasons["gpu"] = None if gpu.ok else f"no GPU: {gpu.reason}"
    import importlib.util

    trt_missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    reasons["tensorrt"] = f"{', '.join(trt_missing)}: not importable" if trt_missing else None
    reasons["slow"] = None if config.getoption("--run-slow") else "slow: run with --run-slow"
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def digits():
    from edgeopt.demo.digits import load_digits_dataset

    return load_digits_dataset()


@pytest.fixture
def factory_dir(tmp_path: Path, digits) -> Path:
    """A folder as a user would have it: a factory module and an .npz of real digits."""
    shutil.copy(FACTORIES, tmp_path / "factories.py")
    np.savez(tmp_path / "digits.npz", image=digits.test.inputs["image"][:64], labels=digits.test.labels[:64])
    return tmp_path


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory, digits):
    """The trained built-in digits CNN as a torch artifact."""
    from edgeopt.context import StageContext
    from edgeopt.models import BUILTIN_MODELS, train_builtin
    from edgeopt.store import Store

    spec = BUILTIN_MODELS["digits-cnn"]
    store = Store(tmp_path_factory.mktemp("digits-cnn"))
    return store.build(
        "0" * 64,
        lambda out: train_builtin("digits-cnn", spec.inputs, spec.outputs, digits, StageContext(out, digits.probe())),
    )


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory, digits, digits_cnn):
    """The digits CNN exported with the default (dynamo) exporter."""
    from edgeopt.context import StageContext
    from edgeopt.store import Store
    from exporter.torch_export import ExportOnnxOptions, export_onnx

    store = Store(tmp_path_factory.mktemp("digits-onnx"))
    return store.build(
        "1" * 64, lambda out: export_onnx(digits_cnn, ExportOnnxOptions(), StageContext(out, digits.probe()))
    )


MLP_RECIPE = """\
name: mlp
model:
  factory: factories:tiny_mlp
  kwargs: {hidden: 16}
inputs:
  - {name: image, shape: [batch, 1, 8, 8], dtype: float32}
outputs: [logits]
data:
  npz: digits.npz
variants:
  onnx: {stage: export_onnx, options: {exporter: torchscript}}
runtimes: [torch-cpu, ort-cpu]
bench: {batch_sizes: [1, 4], threads: [1], warmup_runs: 1, min_runs: 3, min_duration_s: 0}
"""


@pytest.fixture
def mlp_recipe(factory_dir: Path) -> Path:
    """A factory-model recipe with a tiny benchmark, beside its factory and data."""
    path = factory_dir / "recipe.yaml"
    path.write_text(MLP_RECIPE)
    return path
