import numpy as np
import onnx
import pytest

from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError
from exporter.trim_padding import TrimPaddingOptions, trim_padding
from runtimes import load
from runtimes.base import SessionOptions
from tests.conftest import BERT_INPUTS, build_factory, build_stage


@pytest.fixture(scope="module")
def pooled_onnx(tmp_path_factory, bert_probe):
    """The BERT-style encoder with a mean-pooling head: one embedding per sentence."""
    torch_model = build_factory(tmp_path_factory, "factories:tiny_bert_pooled", BERT_INPUTS, bert_probe)
    return build_stage(tmp_path_factory, "export_onnx", torch_model, {"exporter": "torchscript"}, bert_probe)


def _padded(bert_probe, length: int) -> dict:
    """The probe's sentences padded with zeros to `length` tokens."""
    return {name: np.pad(array, ((0, 0), (0, length - array.shape[1]))) for name, array in bert_probe.items()}


def test_trimmed_model_computes_on_the_real_tokens_and_answers_alike(pooled_onnx, bert_probe, tmp_path):
    trimmed = trim_padding(pooled_onnx, TrimPaddingOptions(), StageContext(tmp_path, bert_probe))
    assert trimmed.verification.passed
    assert trimmed.facts["trimmed_inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {"trt", "ort-trt"} <= set(trimmed.not_for)
    feeds = _padded(bert_probe, 40)
    model = onnx.load(str(trimmed.path))
    model.graph.output.append(onnx.ValueInfoProto(name="input_ids.trimmed"))
    exposed = tmp_path / "exposed.onnx"
    onnx.save(model, str(exposed))
    from runtimes.ort import open_model

    outputs = open_model(exposed, "cpu", SessionOptions(threads=1)).run(feeds)
    assert outputs["input_ids.trimmed"].shape == (4, 11), "the padding past the longest sentence is cut"
    with load("ort-cpu", pooled_onnx, SessionOptions(threads=1)) as session:
        untrimmed = session.run(feeds)
    name = pooled_onnx.io.outputs[0].name
    np.testing.assert_allclose(outputs[name], untrimmed[name], atol=1e-5)
    # only the fourth sentence, four tokens long
    one = {key: value[3:] for key, value in feeds.items()}
    assert open_model(exposed, "cpu", SessionOptions(threads=1)).run(one)["input_ids.trimmed"].shape == (1, 4)


def test_a_batch_of_padding_alone_keeps_one_token(pooled_onnx, bert_probe, tmp_path):
    trimmed = trim_padding(pooled_onnx, TrimPaddingOptions(), StageContext(tmp_path, bert_probe))
    feeds = {name: np.zeros_like(array) for name, array in bert_probe.items()}
    with load("ort-cpu", trimmed, SessionOptions(threads=1)) as session:
        embedding = session.run(feeds)[trimmed.io.outputs[0].name]
    assert embedding.shape == (4, 64) and np.isfinite(embedding).all()


def test_outputs_per_token_are_refused(bert_onnx, bert_probe, tmp_path):
    with pytest.raises(ExportError, match="has the sequence axis"):
        trim_padding(bert_onnx, TrimPaddingOptions(), StageContext(tmp_path, bert_probe))
    assert not (tmp_path / "model.onnx").exists()


def test_a_mask_the_model_does_not_take_is_named(pooled_onnx, bert_probe, tmp_path):
    with pytest.raises(ExportError, match=r"reads the mask from input 'mask'.*input_ids"):
        trim_padding(pooled_onnx, TrimPaddingOptions(mask="mask"), StageContext(tmp_path, bert_probe))
