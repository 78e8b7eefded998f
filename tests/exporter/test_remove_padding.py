import numpy as np
import onnx
import pytest

from edgeopt.core.context import StageContext
from edgeopt.core.errors import ExportError, RecipeError
from edgeopt.core.torch_artifact import load_module
from exporter.remove_padding import RemovePaddingOptions, remove_padding
from runtimes import load
from runtimes.base import SessionOptions
from tests.conftest import BERT_INPUTS, build_factory, build_stage


@pytest.fixture(scope="module")
def pooled_torch(tmp_path_factory, bert_probe):
    return build_factory(tmp_path_factory, "factories:tiny_bert_pooled", BERT_INPUTS, bert_probe)


@pytest.fixture(scope="module", params=["per_row", "padded"])
def packed(request, tmp_path_factory, pooled_torch, bert_probe):
    return build_stage(tmp_path_factory, "remove_padding", pooled_torch, {"attention": request.param}, bert_probe)


def _ragged(rows: int = 5, length: int = 16) -> dict:
    """Rows of 16, 9, 1 real tokens padded at the end, one padded at the start, one without padding."""
    rng = np.random.default_rng(1)
    mask = np.ones((rows, length), np.int64)
    mask[1, 9:] = 0
    mask[2, 1:] = 0
    mask[3, :6] = 0
    return {
        "input_ids": rng.integers(0, 1000, (rows, length)).astype(np.int64) * mask,
        "attention_mask": mask,
        "token_type_ids": np.zeros((rows, length), np.int64),
    }


def test_packed_encoder_answers_as_the_padded_one(pooled_torch, packed):
    import torch

    assert packed.verification.passed, "the rebuilt module is the one the stage checked"
    assert packed.sha256 != pooled_torch.sha256, "the same weights run another way are another artifact"
    assert packed.facts["padding_removed"]["encoders"] == ["encoder.bert"]
    feeds = _ragged()
    with torch.inference_mode():
        expected = load_module(pooled_torch)(*(torch.from_numpy(feeds[s.name]) for s in BERT_INPUTS))
        actual = load_module(packed)(*(torch.from_numpy(feeds[s.name]) for s in BERT_INPUTS))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_packed_export_gathers_the_real_tokens_for_its_linears(tmp_path_factory, pooled_torch, packed, bert_probe):
    exported = build_stage(tmp_path_factory, "export_onnx", packed, {"exporter": "torchscript"}, bert_probe)
    padded = build_stage(tmp_path_factory, "export_onnx", pooled_torch, {"exporter": "torchscript"}, bert_probe)
    assert exported.verification.passed
    graph = onnx.load(str(exported.path)).graph
    ops = {node.op_type for node in graph.node}
    assert "NonZero" in ops
    assert ("Loop" in ops) == (packed.options["attention"] == "per_row"), "row by row: a Loop over the rows"
    weights = {initializer.name for initializer in graph.initializer}
    linear_inputs = [
        node.input[0] for node in graph.node if node.op_type in ("Gemm", "MatMul") and node.input[1] in weights
    ]
    assert len(linear_inputs) == 2 * 6, "six Linears per layer"
    feeds = _ragged()
    model = onnx.load(str(exported.path))
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in linear_inputs)
    from runtimes.ort import open_model

    scratch = tmp_path_factory.mktemp("exposed") / "exposed.onnx"
    onnx.save(model, str(scratch))
    outputs = open_model(scratch, "cpu", SessionOptions(threads=1)).run(feeds)
    real = int(feeds["attention_mask"].sum())
    assert {outputs[name].shape for name in linear_inputs} == {(real, 64), (real, 128)}, "real tokens alone"
    with load("ort-cpu", padded, SessionOptions(threads=1)) as session:
        expected = session.run(feeds)
        nothing = {key: np.zeros_like(value[:1]) for key, value in feeds.items()}
        expected_nothing = session.run(nothing)
    name = exported.io.outputs[0].name
    np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5)
    one_row = {key: value[1:2] for key, value in feeds.items()}  # 9 real tokens
    with load("ort-cpu", exported, SessionOptions(threads=1)) as session:
        np.testing.assert_allclose(session.run(nothing)[name], expected_nothing[name], atol=1e-5)
        np.testing.assert_allclose(session.run(one_row)[name], expected[name][1:2], atol=1e-5)
    # plain ONNX (NonZero, Gather): OpenVINO reads and runs it too
    with load("ov-cpu", exported, SessionOptions(threads=1)) as session:
        np.testing.assert_allclose(session.run(feeds)[name], expected[name], atol=1e-4)


def test_a_batch_of_padding_alone_answers_as_the_padded_model(pooled_torch, packed):
    import torch

    feeds = {name: torch.zeros(3, 8, dtype=torch.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    feeds["attention_mask"][1, :2] = 1  # one row with two real tokens, after a row of padding
    for batch in (feeds, {name: value[:1] for name, value in feeds.items()}):
        with torch.inference_mode():
            expected = load_module(pooled_torch)(*batch.values())
            actual = load_module(packed)(*batch.values())
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_outputs_per_token_are_refused(bert_torch, bert_probe, tmp_path):
    with pytest.raises(ExportError, match="is per token"):
        remove_padding(bert_torch, RemovePaddingOptions(), StageContext(tmp_path, bert_probe))
    assert list(tmp_path.iterdir()) == []


def test_pooling_that_reads_the_padding_is_refused(tmp_path_factory, bert_probe, tmp_path):
    unmasked = build_factory(tmp_path_factory, "factories:tiny_bert_pooled", BERT_INPUTS, bert_probe, {"masked": False})
    with pytest.raises(ExportError, match="removing padding changes the outputs"):
        remove_padding(unmasked, RemovePaddingOptions(), StageContext(tmp_path, bert_probe))


def test_a_model_without_a_bert_style_encoder_is_refused(digits_cnn, digits, tmp_path):
    with pytest.raises(RecipeError, match="no BERT-style encoder"):
        remove_padding(digits_cnn, RemovePaddingOptions(), StageContext(tmp_path, digits.probe()))
