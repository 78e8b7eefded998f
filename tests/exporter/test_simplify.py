import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from edgeopt.core.context import StageContext
from exporter.simplify import Simplifier, SimplifyOptions, simplify


@pytest.fixture(params=["digits-dynamo", "digits-torchscript", "bert"])
def exported(request, digits_onnx, digits_onnx_torchscript, bert_onnx, digits, bert_probe):
    """Every test model with its probe: our CNN by both exporters, and the BERT-style
    encoder by both (bert_onnx is parametrized over the exporter)."""
    return {
        "digits-dynamo": (digits_onnx, digits.probe()),
        "digits-torchscript": (digits_onnx_torchscript, digits.probe()),
        "bert": (bert_onnx, bert_probe),
    }[request.param]


@pytest.mark.parametrize("simplifier", list(Simplifier))
def test_simplify_never_grows_the_graph_and_keeps_the_outputs(exported, simplifier, tmp_path):
    artifact, probe = exported
    result = simplify(artifact, SimplifyOptions(simplifier=simplifier), StageContext(tmp_path, probe))
    assert result.facts["node_count"] <= result.facts["before"]["node_count"] == artifact.facts["node_count"]
    assert result.verification.passed
    assert all(o.max_abs <= 1e-4 for o in result.verification.outputs)
    assert result.parent == artifact.sha256 and result.precision == artifact.precision
    onnx.checker.check_model(str(result.path))


def test_simplify_bert_has_fewer_nodes_than_either_export(bert_onnx, bert_probe, tmp_path):
    result = simplify(bert_onnx, SimplifyOptions(), StageContext(tmp_path, bert_probe))
    assert result.facts["node_count"] < bert_onnx.facts["node_count"]
    assert result.verification.passed


def test_simplify_folds_constants_and_drops_dead_nodes(tmp_path):
    from onnx import TensorProto, helper

    from edgeopt.commands import open_artifact

    constant = helper.make_tensor("c", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c1"], value=constant),
            helper.make_node("Add", ["c1", "c1"], ["c2"]),  # foldable
            helper.make_node("Relu", ["c2"], ["unused"]),  # dead
            helper.make_node("Mul", ["x", "c2"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    source = tmp_path / "hand.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    (tmp_path / "out").mkdir()
    probe = {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}
    result = simplify(open_artifact(source), SimplifyOptions(), StageContext(tmp_path / "out", probe))
    assert [n.op_type for n in onnx.load(str(result.path)).graph.node] == ["Mul"]
    assert result.facts["before"]["op_histogram"] == {"Add": 1, "Constant": 1, "Mul": 1, "Relu": 1}
    (actual,) = ReferenceEvaluator(str(result.path)).run(None, probe)
    np.testing.assert_array_equal(actual, probe["x"] * np.array([2, 4, 6, 8], np.float32))


def test_simplified_graph_agrees_with_the_onnx_reference_evaluator(digits_onnx_torchscript, digits, tmp_path):
    """An oracle outside ONNX Runtime: onnx's own reference implementation of each op."""
    result = simplify(digits_onnx_torchscript, SimplifyOptions(), StageContext(tmp_path, digits.probe()))
    feeds = digits.test.take(0, 5)
    (expected,) = ReferenceEvaluator(str(digits_onnx_torchscript.path)).run(None, feeds)
    (actual,) = ReferenceEvaluator(str(result.path)).run(None, feeds)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
