"""The build_trt stage: the parts checked on any machine (which QDQ TensorRT takes,
option defaults, skipping where TensorRT is missing), and the engines themselves where
TensorRT and a GPU are there."""

import json
import shutil

import numpy as np
import onnx
import pytest

from edgeopt.core.artifact import Artifact, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.errors import DataError, RecipeError
from edgeopt.core.onnx_model import load_onnx
from edgeopt.core.targets import Target
from edgeopt.store import Store
from exporter.engine import (
    BuildTrtOptions,
    DimRangeOption,
    asymmetric_quantizers,
    build_trt,
    wide_dequantizers,
    with_batch_range,
)
from exporter.quantize import QuantizeInt8Options, quantize_int8
from runtimes import load, probe

NO_TENSORRT = probe("trt")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, digits_onnx, digits):
    """The digits export quantized for x86 (U8 with zero points) and for TensorRT (symmetric S8)."""
    store = Store(tmp_path_factory.mktemp("engine-int8"))
    built = {}
    for index, target in enumerate((Target.X86_AVX2, Target.TENSORRT)):
        options = QuantizeInt8Options(target=target, samples=64)
        built[target] = store.build(
            str(index) * 64,
            lambda out, o=options: quantize_int8(
                digits_onnx, o, StageContext(out, digits.probe(), calibration=digits.train)
            ),
        )
    return built


def test_asymmetric_quantizers_flags_the_cpu_flavour_and_passes_tensorrt_s8(quantized):
    assert asymmetric_quantizers(load_onnx(quantized[Target.X86_AVX2].path))
    assert asymmetric_quantizers(load_onnx(quantized[Target.TENSORRT].path)) == []


def test_tensorrt_flavour_leaves_biases_float_so_every_dequantizer_is_8_bit(quantized):
    """ONNX Runtime quantizes biases to int32 by default, which TensorRT's dequantize layer
    cannot take; the CPU flavour keeps them (its kernels want them), TensorRT's must not."""
    assert wide_dequantizers(load_onnx(quantized[Target.TENSORRT].path, load_weights=True)) == []
    assert wide_dequantizers(load_onnx(quantized[Target.X86_AVX2].path, load_weights=True))


def test_build_trt_refuses_int32_bias_dequantizers_in_one_line_before_tensorrt(tmp_path, digits):
    from onnx import TensorProto, helper, numpy_helper

    from edgeopt.core.artifact import IO, Format, TensorSpec
    from edgeopt.core.errors import ExportError

    constants = [
        numpy_helper.from_array(np.float32(0.05), "scale"),
        numpy_helper.from_array(np.int8(0), "zero"),
        numpy_helper.from_array(np.ones((4, 1, 3, 3), np.int8), "weight_q"),
        numpy_helper.from_array(np.ones(4, np.int32), "bias_q"),
        numpy_helper.from_array(np.float32(0.0025), "bias_scale"),
        numpy_helper.from_array(np.int32(0), "bias_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "scale", "zero"], ["image_q"], name="quantize"),
        helper.make_node("DequantizeLinear", ["image_q", "scale", "zero"], ["image_dq"], name="dequantize"),
        helper.make_node("DequantizeLinear", ["weight_q", "scale", "zero"], ["weight"], name="weight"),
        helper.make_node("DequantizeLinear", ["bias_q", "bias_scale", "bias_zero"], ["bias"], name="bias"),
        helper.make_node("Conv", ["image_dq", "weight", "bias"], ["logits"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "int32-bias",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 6, 6])],
        constants,
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    io = IO(
        (TensorSpec("image", ("batch", 1, 8, 8), "float32"),), (TensorSpec("logits", ("batch", 4, 6, 6), "float32"),)
    )
    artifact = Artifact(path, Format.ONNX, Precision.INT8_QDQ, "quantize_int8", {}, None, io)
    out = tmp_path / "engine"
    out.mkdir()
    with pytest.raises(ExportError, match=r"1 DequantizeLinear nodes \(first: bias\) dequantize int32"):
        build_trt(artifact, BuildTrtOptions(), StageContext(out, digits.probe()))
    assert list(out.iterdir()) == []


def test_with_batch_range_fills_the_batch_dim_and_keeps_a_given_range(digits_onnx):
    filled = with_batch_range(BuildTrtOptions(), digits_onnx, [1, 32], [1, 32, 64, 8])
    assert filled.dims == {"batch": DimRangeOption(min=1, opt=32, max=64)}
    given = BuildTrtOptions(dims={"batch": {"min": 2, "opt": 4, "max": 8}})
    assert with_batch_range(given, digits_onnx, [1, 32], [64]).dims == given.dims


def test_build_trt_options_refuse_an_unordered_range():
    with pytest.raises(ValueError, match="need min <= opt <= max, got 8/4/2"):
        BuildTrtOptions(dims={"batch": {"min": 8, "opt": 4, "max": 2}})


@pytest.mark.skipif(NO_TENSORRT.ok, reason="TensorRT is installed here; this checks the machines without it")
def test_recipe_with_engines_skips_them_with_the_reason_where_tensorrt_is_missing(mlp_recipe, tmp_path):
    from edgeopt.cli import main

    text = (
        mlp_recipe.read_text()
        .replace(
            "  onnx: {stage: export_onnx, options: {exporter: torchscript}}\n",
            "  onnx: {stage: export_onnx, options: {exporter: torchscript}}\n"
            "  engine: {stage: build_trt, from: onnx}\n"
            "  engine-fp16: {stage: build_trt, from: onnx, options: {precision: fp16}}\n",
        )
        .replace("runtimes: [torch-cpu, ort-cpu]", "runtimes: [torch-cpu, ort-cpu, trt]")
    )
    mlp_recipe.write_text(text)
    assert main(["-q", "run", str(mlp_recipe), "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    unbuilt = {s["variant"]: s["reason"] for s in results["skipped"] if s["runtime"] is None}
    assert unbuilt["engine"] == f"not built: trt: {NO_TENSORRT.reason}"
    assert set(unbuilt) == {"engine", "engine-fp16"}
    assert set(results["artifacts"]) == {"model", "onnx"}
    assert f"- engine: not built: trt: {NO_TENSORRT.reason}" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.skipif(NO_TENSORRT.ok, reason="TensorRT is installed here; this checks the machines without it")
def test_cli_build_without_tensorrt_says_why_in_one_line(digits_onnx, tmp_path, capsys):
    from edgeopt.cli import main

    assert main(["build", str(digits_onnx.path), "-o", str(tmp_path / "model.engine")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"edgeopt: error: build: {NO_TENSORRT.reason}"
    assert list(tmp_path.iterdir()) == []


# --- engines: TensorRT and an NVIDIA GPU --------------------------------------------------


def _engine(store: Store, source: Artifact, digits, key: str, **options) -> Artifact:
    parsed = with_batch_range(BuildTrtOptions(**options), source, [1, 32], [1, 32, 64])
    return store.build(
        key * 64, lambda out: build_trt(source, parsed, StageContext(out, digits.probe(), cache_dir=store.root))
    )


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_build_trt_engines_in_each_precision_verify_against_their_source(digits_onnx, quantized, digits, tmp_path):
    from exporter.fp16 import ConvertFp16Options, convert_fp16

    store = Store(tmp_path)
    fp16 = store.build(
        "f" * 64, lambda out: convert_fp16(digits_onnx, ConvertFp16Options(), StageContext(out, digits.probe()))
    )
    for key, source in (("a", digits_onnx), ("b", fp16), ("c", quantized[Target.TENSORRT])):
        engine = _engine(store, source, digits, key)
        assert engine.verification.passed, engine.verification
        assert engine.precision is source.precision and engine.engine["strongly_typed"]
        assert engine.engine["profile"]["image"]["max"] == [64, 1, 8, 8]
    assert list((tmp_path / "tensorrt-timing").glob("tensorrt-*.cache"))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_trt_session_runs_each_batch_size_and_matches_onnxruntime(digits_onnx, digits, tmp_path):
    engine = _engine(Store(tmp_path), digits_onnx, digits, "d")
    with load("trt", engine) as trt, load("ort-cpu", digits_onnx) as ort:
        for count in (1, 32, 7, 32):
            feeds = digits.test.take(0, count)
            first = trt.run(feeds)["logits"]
            np.testing.assert_allclose(first, ort.run(feeds)["logits"], atol=0.02, rtol=0.01)
        snapshot = first.copy()
        trt.run(digits.test.take(32, 64))
        np.testing.assert_array_equal(first, snapshot)  # outputs are the caller's copies
        with pytest.raises(DataError, match="outside the engine's profile"):
            trt.run(digits.test.take(0, 65))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_trt_device_time_is_taken_between_cuda_events(digits_onnx, digits, tmp_path):
    from bench.latency import time_calls, time_device_calls

    engine = _engine(Store(tmp_path), digits_onnx, digits, "e")
    with load("trt", engine) as session:
        feeds = [digits.test.take(0, 32)]
        device = time_device_calls(session, feeds, 20, 0.0)
        end_to_end = time_calls(session, feeds, 20, 0.0)
    assert len(device) == 20 and (device > 0).all()
    assert np.median(device) < np.median(end_to_end)  # the copies and the wait are outside the events


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_engine_from_another_gpu_is_refused_in_one_line_and_rebuilt_by_the_pipeline(digits_onnx, digits, tmp_path):
    from edgeopt.stages import STAGES
    from runtimes.tensorrt import EngineMismatch, meta_path

    engine = _engine(Store(tmp_path / "a"), digits_onnx, digits, "f")
    copy = tmp_path / "copy"
    shutil.copytree(engine.directory, copy)
    path = meta_path(copy / engine.path.name)
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "gpu": "NVIDIA Imaginary 9000"}))
    with pytest.raises(EngineMismatch, match=r"built with TensorRT .* on NVIDIA Imaginary 9000 .*rebuild it"):
        load("trt", Artifact.load(copy).moved_to(copy))
    assert "NVIDIA Imaginary 9000" in STAGES["build_trt"].stale(Artifact.load(copy))


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_fp16_flag_over_fp32_builds_on_tensorrt_10_and_is_refused_on_11(digits_onnx, digits, tmp_path):
    import tensorrt

    if tensorrt.__version__.startswith("10."):
        engine = _engine(Store(tmp_path), digits_onnx, digits, "g", precision="fp16")
        assert engine.precision is Precision.FP16 and engine.verification.passed
        assert engine.engine["builder_flags"] == ["FP16"]
    else:
        with pytest.raises(RecipeError, match=r"no BuilderFlag\.FP16"):
            _engine(Store(tmp_path), digits_onnx, digits, "g", precision="fp16")
