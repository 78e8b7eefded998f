"""Which ONNX Runtime contrib operators OpenVINO reads: the list against the installed
frontend, and the artifacts the stages mark not for the OpenVINO runtimes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from runtimes import load
from runtimes.openvino_ops import READABLE_CONTRIB_OPS, openvino_not_for, unreadable_ops

NO_RULE = "No conversion rule found"


def _frontend_error(op_type: str) -> str:
    """What OpenVINO's ONNX frontend says of a one-node graph of `op_type`: a converter
    that rejects these made-up inputs, or no converter at all."""
    import openvino as ov

    names = [f"x{i}" for i in range(3)]
    node = helper.make_node(op_type, names, ["y"], domain="com.microsoft")
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4]) for name in names]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    try:
        ov.Core().read_model(helper.make_model(graph, opset_imports=opsets).SerializeToString(), b"")
    except RuntimeError as err:
        return str(err)
    return ""


def test_every_contrib_operator_listed_readable_has_a_converter_in_the_installed_openvino():
    missing = [op for op in sorted(READABLE_CONTRIB_OPS) if NO_RULE in _frontend_error(op)]
    assert missing == []


@pytest.mark.parametrize("op_type", ["QAttention", "QEmbedLayerNormalization", "QGemm"])
def test_contrib_operators_left_off_the_list_have_no_converter(op_type):
    assert op_type not in READABLE_CONTRIB_OPS
    assert NO_RULE in _frontend_error(op_type)


def test_not_for_names_the_operators_for_both_openvino_runtimes():
    nodes = [
        helper.make_node("QAttention", ["a"], ["b"], domain="com.microsoft"),
        helper.make_node("Attention", ["a"], ["b"], domain="com.microsoft"),
        helper.make_node("QEmbedLayerNormalization", ["a"], ["b"], domain="com.microsoft"),
        helper.make_node("MatMul", ["a", "b"], ["c"]),
    ]
    assert unreadable_ops(nodes) == ["QAttention", "QEmbedLayerNormalization"]
    reason = "ONNX Runtime contrib operators OpenVINO cannot read: com.microsoft.QAttention, com.microsoft.QEmbedLayerNormalization"
    assert openvino_not_for(nodes) == {"ov-cpu": reason, "ov-cpu-bf16": reason}
    assert openvino_not_for(nodes[1:2] + nodes[3:]) == {}


@pytest.fixture(scope="module")
def bert_fused(tmp_path_factory, bert_probe):
    """A BERT-style encoder with eager attention, exported and fused as ONNX Runtime fuses
    it (Attention, SkipLayerNormalization, BiasGelu in com.microsoft)."""
    from pathlib import Path

    from edgeopt.core.artifact import TorchSource
    from edgeopt.core.context import StageContext
    from edgeopt.sources import load_factory
    from exporter.torch_export import ExportOnnxOptions, export_onnx
    from exporter.transformer import OptimizeTransformerOptions, optimize_transformer
    from tests.conftest import BERT_INPUTS

    folder = tmp_path_factory.mktemp("bert")
    source = TorchSource("factories:tiny_bert", {"attention": "eager"}, str(Path(__file__).parents[1]))
    (folder / "torch").mkdir()
    (folder / "onnx").mkdir()
    torch_model = load_factory(source, None, BERT_INPUTS, None, folder / "torch", bert_probe)
    options = ExportOnnxOptions(exporter="torchscript")
    exported = export_onnx(torch_model, options, StageContext(folder / "onnx", bert_probe))
    fusions = OptimizeTransformerOptions(num_heads=4, hidden_size=64)
    return optimize_transformer(exported, fusions, StageContext(tmp_path_factory.mktemp("fused"), bert_probe))


def test_the_fused_graph_runs_on_openvino_and_its_dynamic_int8_is_not_for_it(bert_fused, bert_probe, tmp_path):
    from edgeopt.core.context import StageContext
    from exporter.quantize import QuantizeDynamicOptions, quantize_dynamic

    assert bert_fused.not_for == {} and bert_fused.facts["op_histogram"]["Attention"] == 2
    with load("ort-cpu", bert_fused) as session:
        expected = session.run(bert_probe)
    with load("ov-cpu", bert_fused) as session:
        outputs = session.run(bert_probe)
    for name, array in expected.items():
        np.testing.assert_allclose(outputs[name], array, atol=1e-4)
    int8 = quantize_dynamic(bert_fused, QuantizeDynamicOptions(per_channel=True), StageContext(tmp_path, bert_probe))
    assert int8.facts["op_histogram"]["QAttention"] == 2
    assert int8.not_for["ov-cpu"].endswith("com.microsoft.QAttention, com.microsoft.QEmbedLayerNormalization")
    assert int8.not_for["ov-cpu-bf16"] == int8.not_for["ov-cpu"]
