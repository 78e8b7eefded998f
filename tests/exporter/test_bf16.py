"""convert_bf16: BF16 weights read through Casts, verified by BF16 arithmetic on any CPU."""

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.report.markdown import verification_cell
from edgeopt.core.artifact import Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import RecipeError
from exporter.bf16 import ConvertBf16Options, bf16_arithmetic, convert_bf16, store_weights_bf16
from runtimes import RUNTIMES, load
from runtimes.ort import open_model
from runtimes.tensorrt_settings import build_flags


def _bf16(values: np.ndarray) -> np.ndarray:
    return values.astype(ml_dtypes.bfloat16).astype(np.float32)


def test_bf16_digits_stores_weight_matrices_in_bf16_and_verifies_in_bf16_arithmetic(digits_onnx, digits, tmp_path):
    result = convert_bf16(digits_onnx, ConvertBf16Options(), StageContext(tmp_path, digits.probe()))
    assert result.precision is Precision.BF16
    assert result.verification.passed and "BF16 arithmetic simulated" in result.verification.reference
    model = onnx.load(str(result.path))
    matrices = [t for t in model.graph.initializer if len(t.dims) >= 2]
    assert matrices and {t.data_type for t in matrices} == {TensorProto.BFLOAT16}
    assert result.facts["bf16_weights"] == len(matrices)
    assert result.facts["size_bytes"] < 0.6 * digits_onnx.facts["size_bytes"]
    assert [s.dtype for s in result.io.inputs] == ["float32"] and [s.dtype for s in result.io.outputs] == ["float32"]
    assert not (tmp_path / ".simulated").exists()
    assert verification_cell(result.to_json()).endswith("on 8 samples, BF16 arithmetic simulated")
    with load("ort-cpu", digits_onnx) as fp32, load("ort-cpu", result) as bf16:
        feeds = digits.test.inputs
        assert (bf16.run(feeds)["logits"].argmax(1) == fp32.run(feeds)["logits"].argmax(1)).mean() >= 0.99


def test_bf16_bert_keeps_cosine(bert_onnx, bert_probe, tmp_path):
    result = convert_bf16(bert_onnx, ConvertBf16Options(), StageContext(tmp_path, bert_probe))
    assert result.verification.passed
    assert min(o.cosine_min for o in result.verification.outputs) >= 0.999


def test_bf16_arithmetic_rounds_every_input_and_every_value_a_node_makes():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((3, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["product"]), helper.make_node("Add", ["product", "x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert store_weights_bf16(model.graph) == ["w"]
    simulated = bf16_arithmetic(model, {"x", "product", "y"})
    onnx.checker.check_model(simulated, full_check=True)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    (y,) = open_model(simulated.SerializeToString(), "cpu").run({"x": x}).values()
    product = _bf16(_bf16(x) * _bf16(weight))
    np.testing.assert_array_equal(y, _bf16(product + _bf16(x)))
    (plain,) = open_model(model.SerializeToString(), "cpu").run({"x": x}).values()
    np.testing.assert_array_equal(plain, x * _bf16(weight) + x)  # the artifact itself: FP32 on BF16 weights


def test_bf16_rows_record_what_each_runtime_computes():
    assert RUNTIMES["ort-cpu"].row_precision("bf16") == "fp32"
    assert RUNTIMES["ov-cpu"].row_precision("bf16") == "fp32"
    assert RUNTIMES["ov-cpu-bf16"].row_precision("bf16") == "bf16"


def test_bf16_artifacts_are_not_built_into_engines():
    with pytest.raises(RecipeError, match="build from its FP32 parent"):
        build_flags("10.13.2", Precision.BF16, fp16=False)


def test_bf16_artifact_runs_on_openvino_as_on_onnx_runtime(digits_onnx, digits, tmp_path):
    """OpenVINO reads the BF16 weights through their Casts; on a CPU without BF16 both
    runtimes compute FP32 on the same rounded weights."""
    result = convert_bf16(digits_onnx, ConvertBf16Options(), StageContext(tmp_path, digits.probe()))
    feeds = digits.test.take(0, 32)
    with load("ort-cpu", result) as ort_session, load("ov-cpu", result) as ov_session:
        np.testing.assert_allclose(ov_session.run(feeds)["logits"], ort_session.run(feeds)["logits"], atol=1e-3)
