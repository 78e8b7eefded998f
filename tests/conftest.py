"""Session fixtures that build in seconds: digits data, a tiny MLP, the digits CNN and its export.

`gpu` and `tensorrt` tests skip with the runtime probe's own reason; `slow` runs with --run-slow.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.core.artifact import TensorSpec

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
sys.modules.setdefault("openvino_telemetry", None)  # as runtimes/__init__.py does: no ~/intel, no network

FACTORIES = Path(__file__).parent / "factories.py"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def marker_reasons(run_slow: bool) -> dict[str, str | None]:
    """Why each marker's tests skip here (None: they run). `gpu` asks the NVIDIA driver
    itself, not torch: edgeopt installs the CPU build of torch, GPU machines included."""
    from runtimes import probe
    from runtimes.cuda import driver

    gpu = driver()
    trt = probe("trt")
    return {
        "gpu": None if gpu.ok else f"no GPU: {gpu.reason}",
        "tensorrt": None if trt.ok else f"no TensorRT: {trt.reason}",
        "slow": None if run_slow else "slow: run with --run-slow",
    }


def pytest_collection_modifyitems(config, items):
    reasons = marker_reasons(config.getoption("--run-slow"))
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
    from edgeopt.models import BUILTIN_MODELS, train_builtin
    from edgeopt.store import Store

    spec = BUILTIN_MODELS["digits-cnn"]
    store = Store(tmp_path_factory.mktemp("digits-cnn"))
    return store.build("0" * 64, lambda out: train_builtin("digits-cnn", spec.inputs, digits, out, digits.probe()))


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory, digits, digits_cnn):
    """The digits CNN exported with the default (dynamo) exporter."""
    from edgeopt.core.context import StageContext
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


BERT_INPUTS = tuple(
    TensorSpec(name, ("batch", "sequence"), "int64") for name in ("input_ids", "attention_mask", "token_type_ids")
)


@pytest.fixture(scope="session")
def bert_probe():
    """Token ids for 4 sentences of 11 tokens, the last two padded."""
    rng = np.random.default_rng(0)
    mask = np.ones((4, 11), np.int64)
    mask[2, 7:] = 0
    mask[3, 4:] = 0
    return {
        "input_ids": rng.integers(0, 1000, (4, 11)).astype(np.int64),
        "attention_mask": mask,
        "token_type_ids": np.zeros((4, 11), np.int64),
    }


def build_factory(tmp_path_factory, factory: str, inputs, probe, kwargs: dict | None = None):
    """A factory model as a torch artifact in a store of its own."""
    from edgeopt.core.artifact import TorchSource
    from edgeopt.sources import load_factory
    from edgeopt.store import Store

    store = Store(tmp_path_factory.mktemp(factory.replace(":", "-")))
    source = TorchSource(factory, kwargs or {}, str(Path(__file__).parent))
    return store.build("2" * 64, lambda out: load_factory(source, None, inputs, None, out, probe))


def build_stage(tmp_path_factory, stage_name: str, parent, options: dict, probe):
    from edgeopt.core.context import StageContext
    from edgeopt.stages import STAGES
    from edgeopt.store import Store

    stage = STAGES[stage_name]
    store = Store(tmp_path_factory.mktemp(stage_name))
    parsed = stage.options.model_validate(options)
    return store.build("3" * 64, lambda out: stage.function(parent, parsed, StageContext(out, probe)))


@pytest.fixture(scope="session")
def bert_torch(tmp_path_factory, bert_probe):
    return build_factory(tmp_path_factory, "factories:tiny_bert", BERT_INPUTS, bert_probe)


@pytest.fixture(scope="session", params=["dynamo", "torchscript"])
def bert_onnx(request, tmp_path_factory, bert_torch, bert_probe):
    """The BERT-style encoder exported by each exporter."""
    return build_stage(tmp_path_factory, "export_onnx", bert_torch, {"exporter": request.param}, bert_probe)


@pytest.fixture(scope="session")
def digits_onnx_torchscript(tmp_path_factory, digits, digits_cnn):
    """The digits CNN exported by the TorchScript-based exporter: a second route into ONNX."""
    return build_stage(
        tmp_path_factory, "export_onnx", digits_cnn, {"exporter": "torchscript", "opset": 13}, digits.probe()
    )


@pytest.fixture(scope="session")
def overflow_onnx(tmp_path_factory, digits):
    """A model whose intermediate values pass FP16's range (see factories.overflows_fp16)."""
    inputs = (TensorSpec("image", ("batch", 1, 8, 8), "float32"),)
    torch_model = build_factory(tmp_path_factory, "factories:overflows_fp16", inputs, digits.probe())
    return build_stage(tmp_path_factory, "export_onnx", torch_model, {"exporter": "torchscript"}, digits.probe())


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """A real tokenizer.json (BERT-style WordPiece, 1,000 tokens) learnt offline from the corpus."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from edgeopt.text import pydoc_passages

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokenizer.train_from_iterator(pydoc_passages(), trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, tokenizer_dir):
    """A 2-layer BERT (random weights, seed 0) with the tokenizer beside it."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    folder = tmp_path_factory.mktemp("bert")
    BertModel(config, add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    shutil.copy(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    return folder


@pytest.fixture
def sshd_here():
    """Tests that start their own sshd (openssh-server, as root)."""
    from tests import sshd
    from tests.requires import require

    require(sshd.missing())


@pytest.fixture
def sshd_in_namespaces_here():
    """Tests that start sshd servers in network namespaces they create."""
    from tests import sshd
    from tests.requires import require

    require(sshd.missing(netns=True))
