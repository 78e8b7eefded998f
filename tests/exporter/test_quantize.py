import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bench.accuracy import predict, score
from edgeopt.artifact import Precision
from edgeopt.context import StageContext
from exporter.calibration import SplitReader
from exporter.quantize import (
    CalibrationMethod,
    QuantizeDynamicOptions,
    QuantizeInt8Options,
    Target,
    choose_flavour,
    quantize_dynamic,
    quantize_int8,
)
from runtimes import load


def _context(tmp_path, digits):
    return StageContext(tmp_path, digits.probe(), calibration=digits.train)


def _zero_points(path) -> list[np.ndarray]:
    model = onnx.load(str(path))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [initializers[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]


@pytest.fixture(scope="module")
def digits_simplified(tmp_path_factory, digits_onnx, digits):
    from exporter.simplify import SimplifyOptions, simplify

    return simplify(digits_onnx, SimplifyOptions(), StageContext(tmp_path_factory.mktemp("simple"), digits.probe()))


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory, digits_simplified, digits):
    """As in the demo recipe: the simplified graph, quantized for this CPU."""
    return quantize_int8(digits_simplified, QuantizeInt8Options(), _context(tmp_path_factory.mktemp("int8"), digits))


def test_quantize_int8_digits_keeps_top1_and_shrinks_to_a_third(digits_int8, digits_simplified, digits):
    assert digits_int8.precision is Precision.INT8_QDQ and digits_int8.verification.passed
    assert digits_int8.facts["size_bytes"] <= digits_simplified.facts["size_bytes"] / 3
    with load("ort-cpu", digits_simplified) as fp32, load("ort-cpu", digits_int8) as int8:
        reference = predict(fp32, digits.test, 64)
        quantized = predict(int8, digits.test, 64)
    drop = score(reference, digits.test.labels, None).top1 - score(quantized, digits.test.labels, None).top1
    assert drop <= 0.005


def test_quantize_int8_cpu_flavour_uses_unsigned_activations_and_signed_weights(digits_int8):
    model = onnx.load(str(digits_int8.path))
    assert {z.dtype for z in _zero_points(digits_int8.path)} == {np.dtype(np.uint8)}
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    stored = {
        initializers[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in initializers
    }
    assert stored == {onnx.TensorProto.INT8, onnx.TensorProto.INT32}  # weights INT8, biases INT32
    assert digits_int8.facts["flavour"]["activations"] == "uint8"


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_quantize_int8_tensorrt_flavour_is_symmetric_int8_for_every_method(method, digits_onnx, digits, tmp_path):
    options = QuantizeInt8Options(method=method, target=Target.TENSORRT)
    result = quantize_int8(digits_onnx, options, _context(tmp_path, digits))
    zero_points = _zero_points(result.path)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert result.verification.passed and "QDQ simulated" in result.verification.reference
    assert result.facts["method"] == method and result.facts["flavour"]["symmetric_activations"]


def test_quantize_int8_entropy_and_percentile_find_other_ranges_than_minmax(digits_onnx, digits, tmp_path):
    scales = {}
    for method in CalibrationMethod:
        (tmp_path / method).mkdir()
        result = quantize_int8(digits_onnx, QuantizeInt8Options(method=method), _context(tmp_path / method, digits))
        model = onnx.load(str(result.path))
        initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        scales[method] = [float(initializers[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert scales["entropy"] != scales["minmax"] and scales["percentile"] != scales["minmax"]


def test_quantize_int8_raises_an_old_opset_to_13(digits_cnn, digits, tmp_path_factory, tmp_path):
    from edgeopt.store import Store
    from exporter.torch_export import Exporter, ExportOnnxOptions, export_onnx

    store = Store(tmp_path_factory.mktemp("opset11"))
    options = ExportOnnxOptions(exporter=Exporter.TORCHSCRIPT, opset=11)
    old = store.build("4" * 64, lambda out: export_onnx(digits_cnn, options, StageContext(out, digits.probe())))
    assert old.facts["opset"] == 11
    result = quantize_int8(old, QuantizeInt8Options(), _context(tmp_path, digits))
    assert result.facts["opset"] >= 13 and result.verification.passed
    onnx.checker.check_model(str(result.path))


def test_quantize_dynamic_bert_keeps_cosine(bert_onnx, bert_probe, tmp_path):
    result = quantize_dynamic(bert_onnx, QuantizeDynamicOptions(), StageContext(tmp_path, bert_probe))
    assert result.precision is Precision.INT8_DYNAMIC and result.verification.passed
    ops = set(result.facts["op_histogram"])
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops or "DynamicQuantizeMatMul" in ops
    assert result.facts["size_bytes"] < 0.5 * bert_onnx.facts["size_bytes"]


@pytest.mark.parametrize(
    ("target", "flags", "reduce_range", "activations"),
    [
        (Target.CPU, ["avx", "avx2", "fma"], True, "uint8"),
        (Target.CPU, ["avx2", "avx512f", "avx512_vnni"], False, "uint8"),
        (Target.CPU, ["avx2", "avx_vnni"], False, "uint8"),
        (Target.TENSORRT, ["avx2"], False, "int8"),
    ],
)
def test_choose_flavour_reads_the_cpu_instructions(target, flags, reduce_range, activations):
    flavour = choose_flavour(target, flags)
    assert (flavour.reduce_range, flavour.activations) == (reduce_range, activations)


def test_calibration_reader_is_seeded_and_feeds_whole_batches(digits, digits_onnx):
    first = SplitReader(digits.train, digits_onnx.io.inputs, samples=100, seed=1, batch_size=16)
    again = SplitReader(digits.train, digits_onnx.io.inputs, samples=100, seed=1, batch_size=16)
    other = SplitReader(digits.train, digits_onnx.io.inputs, samples=100, seed=2, batch_size=16)
    batches = list(iter(first.get_next, None))
    assert [len(b["image"]) for b in batches] == [16] * 6
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(batches, iter(again.get_next, None), strict=True))
    assert not np.array_equal(batches[0]["image"], other.get_next()["image"])
    first.rewind()
    assert np.array_equal(first.get_next()["image"], batches[0]["image"])


def test_tight_budget_keeps_the_most_sensitive_nodes_in_float(digits_simplified, digits, tmp_path):
    from exporter.quantize import Budget
    from exporter.sensitivity import quantized_nodes

    options = QuantizeInt8Options(budget=Budget(metric="cosine", max_drop=0.0001))
    context = StageContext(tmp_path, digits.probe(), calibration=digits.train, evaluation=digits.test)
    result = quantize_int8(digits_simplified, options, context)
    budget = result.facts["budget"]
    assert budget["met"] and budget["float"] - budget["int8"] <= 0.0001
    assert budget["float"] - budget["steps"][0]["metric"] > 0.0001, "all-INT8 misses the budget: the fallback must act"
    kept = {k["node"] for k in budget["kept_float"]}
    model = onnx.load(str(result.path))
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    weights = {n.name: n.input[1] for n in model.graph.node if n.name in kept}
    assert kept and set(weights) == kept and all(w in floats for w in weights.values()), "kept nodes keep float weights"
    assert set(quantized_nodes(model)) - kept, "the other nodes stay quantized"
    assert [k["local_error"] for k in budget["kept_float"]] == sorted(
        (k["local_error"] for k in budget["kept_float"]), reverse=True
    )


def test_loose_budget_keeps_everything_int8(digits_simplified, digits, tmp_path):
    from exporter.quantize import Budget

    options = QuantizeInt8Options(budget=Budget(metric="cosine", max_drop=0.01))
    context = StageContext(tmp_path, digits.probe(), calibration=digits.train, evaluation=digits.test)
    budget = quantize_int8(digits_simplified, options, context).facts["budget"]
    assert budget["met"] and budget["kept_float"] == [] and budget["int8"] > 0.99


def test_budget_on_top1_needs_labels(digits_simplified, digits, tmp_path):
    from edgeopt.data import Split
    from edgeopt.errors import DataError
    from exporter.quantize import Budget

    unlabelled = Split(digits.test.inputs, None)
    context = StageContext(tmp_path, digits.probe(), calibration=digits.train, evaluation=unlabelled)
    with pytest.raises(DataError, match="needs labelled evaluation samples"):
        quantize_int8(digits_simplified, QuantizeInt8Options(budget=Budget()), context)


def test_rank_nodes_scores_every_quantized_node(digits_int8, digits_simplified, digits, tmp_path):
    from exporter.sensitivity import quantized_nodes, rank_nodes

    ranked = rank_nodes(digits_simplified.path, digits_int8.path, digits.train.take(0, 32), tmp_path / "scratch")
    assert {name for name, _, _ in ranked} == set(quantized_nodes(onnx.load(str(digits_int8.path))))
    errors = [error for _, _, error in ranked]
    assert errors == sorted(errors, reverse=True) and all(e >= 0 for e in errors) and errors[0] > 0
