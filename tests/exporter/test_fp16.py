import numpy as np
import onnx

from edgeopt.core.artifact import Precision
from edgeopt.core.context import StageContext
from exporter.fp16 import ConvertFp16Options, convert_fp16
from runtimes import load


def _initializer_types(path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer if t.data_type in (1, 10)}


def test_fp16_digits_keeps_cosine_and_top1(digits_onnx, digits, tmp_path):
    result = convert_fp16(digits_onnx, ConvertFp16Options(), StageContext(tmp_path, digits.probe()))
    assert result.precision is Precision.FP16
    assert result.verification.passed and result.verification.outputs[0].cosine_min >= 0.999
    assert _initializer_types(result.path) == {onnx.TensorProto.FLOAT16}
    assert [s.dtype for s in result.io.inputs] == ["float32"] and [s.dtype for s in result.io.outputs] == ["float32"]
    assert result.facts["size_bytes"] < 0.6 * digits_onnx.facts["size_bytes"]
    assert result.facts["before"]["node_count"] == digits_onnx.facts["node_count"] < result.facts["node_count"]
    with load("ort-cpu", digits_onnx) as fp32, load("ort-cpu", result) as fp16:
        feeds = digits.test.inputs
        assert (fp16.run(feeds)["logits"].argmax(1) == fp32.run(feeds)["logits"].argmax(1)).mean() >= 0.99


def test_fp16_bert_keeps_cosine(bert_onnx, bert_probe, tmp_path):
    result = convert_fp16(bert_onnx, ConvertFp16Options(), StageContext(tmp_path, bert_probe))
    assert result.verification.passed
    assert min(o.cosine_min for o in result.verification.outputs) >= 0.999


def test_fp16_io_option_makes_the_inputs_half(digits_onnx, digits, tmp_path):
    result = convert_fp16(digits_onnx, ConvertFp16Options(keep_io_types=False), StageContext(tmp_path, digits.probe()))
    assert [s.dtype for s in result.io.inputs] == ["float16"]
    assert result.verification.passed


def test_fp16_keeps_listed_ops_in_fp32(digits_onnx, digits, tmp_path):
    result = convert_fp16(digits_onnx, ConvertFp16Options(keep_ops=("Conv",)), StageContext(tmp_path, digits.probe()))
    model = onnx.shape_inference.infer_shapes(onnx.load(str(result.path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
    relus = [n.output[0] for n in model.graph.node if n.op_type == "Relu"]
    assert {types[name] for name in convs} == {onnx.TensorProto.FLOAT}
    assert {types[name] for name in relus} == {onnx.TensorProto.FLOAT16}
    assert result.facts["fp32_ops_listed"] == ["Conv"] * len(convs)
    assert result.verification.passed


def test_fp16_keeps_nodes_whose_values_overflow_half_in_fp32(overflow_onnx, digits, tmp_path):
    result = convert_fp16(overflow_onnx, ConvertFp16Options(), StageContext(tmp_path, digits.probe()))
    assert result.facts["fp32_nodes_overflow"], "the ×1e5 node must be found"
    assert result.verification.passed
    with load("ort-cpu", result) as session:
        assert np.isfinite(session.run(digits.test.take(0, 16))["output"]).all()
