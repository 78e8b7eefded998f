"""OpenVINO sessions (ov-cpu, ov-cpu-bf16) on real OpenVINO: ONNX files and IR, settings
read back, feeds checked as ONNX Runtime checks them, static shapes, INT8 that runs in INT8,
BF16 refused where the CPU has none."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core.artifact import IO, Artifact, Format, Precision
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable
from runtimes import RUNTIMES, load, probe
from runtimes.base import SessionOptions
from runtimes.openvino import open_model, runtime_precisions
from runtimes.openvino_bf16 import bf16_availability
from runtimes.openvino_settings import compile_config, message


def _save(graph, path, domains=()):
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """BERT-like int64 inputs: ids and mask [batch, sequence] → Gather(table, ids) * mask."""
    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    axis = numpy_helper.from_array(np.array([-1], np.int64), "axis")
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["hidden"]),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", 4])
    graph = helper.make_graph(nodes, "tokens", inputs, [output], [table, axis])
    return _save(graph, tmp_path_factory.mktemp("tokens") / "model.onnx")


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory, digits_onnx, digits):
    """Our static QDQ INT8 of the digits CNN, for this CPU."""
    from edgeopt.core.context import StageContext
    from exporter.quantize import QuantizeInt8Options, quantize_int8

    context = StageContext(tmp_path_factory.mktemp("int8"), digits.probe(), calibration=digits.train)
    return quantize_int8(digits_onnx, QuantizeInt8Options(), context)


@pytest.fixture(scope="module")
def digits_fp16(tmp_path_factory, digits_onnx, digits):
    from edgeopt.core.context import StageContext
    from exporter.fp16 import ConvertFp16Options, convert_fp16

    return convert_fp16(
        digits_onnx, ConvertFp16Options(), StageContext(tmp_path_factory.mktemp("fp16"), digits.probe())
    )


def _feeds(batch=2, sequence=5):
    rng = np.random.default_rng(0)
    mask = np.ones((batch, sequence), np.int64)
    mask[-1, 3:] = 0
    return {"input_ids": rng.integers(0, 10, (batch, sequence)).astype(np.int64), "attention_mask": mask}


def _expected(feeds):
    return np.arange(40, dtype=np.float32).reshape(10, 4)[feeds["input_ids"]] * feeds["attention_mask"][..., None]


def test_probe_names_the_version_and_only_the_cpu():
    assert probe("ov-cpu").ok and probe("ov-cpu").reason.startswith("openvino 20")
    from runtimes import openvino

    assert not openvino.probe("cuda").ok and "ov-cpu only" in openvino.probe("cuda").reason


def test_ov_cpu_runs_onnx_and_openvino_ir_and_records_bf16_rows():
    assert RUNTIMES["ov-cpu"].runs(Format.ONNX) and RUNTIMES["ov-cpu"].runs(Format.OPENVINO)
    assert not RUNTIMES["ort-cpu"].runs(Format.OPENVINO)
    bf16 = RUNTIMES["ov-cpu-bf16"]
    assert [bf16.row_precision(p) for p in ("fp32", "fp16", "int8-qdq")] == ["bf16", "bf16", "int8-qdq"]
    assert RUNTIMES["ov-cpu"].row_precision(Precision.FP32) == "fp32"
    assert RUNTIMES["torch-cuda-fp16"].row_precision("fp32") == "fp16" and RUNTIMES["torch-cuda-fp16"].half


def test_session_runs_int64_inputs(token_model):
    with open_model(token_model, options=SessionOptions(threads=1)) as session:
        assert [(s.name, s.shape, s.dtype) for s in session.inputs] == [
            ("input_ids", ("?", "?"), "int64"),
            ("attention_mask", ("?", "?"), "int64"),
        ]
        assert (session.outputs[0].name, session.outputs[0].dtype) == ("hidden", "float32")
        np.testing.assert_array_equal(session.run(_feeds())["hidden"], _expected(_feeds()))


def test_outputs_are_owned_not_overwritten_by_the_next_call(token_model):
    with open_model(token_model) as session:
        other = _feeds()
        other["input_ids"] = (other["input_ids"] + 1) % 10
        first = session.run(_feeds())["hidden"]
        kept = first.copy()
        session.run(other)
    assert first.flags.owndata
    np.testing.assert_array_equal(first, kept)


def test_settings_are_explicit_and_read_back(token_model):
    with open_model(token_model, options=SessionOptions(threads=1)) as session:
        assert session.settings == {
            "INFERENCE_NUM_THREADS": "1",
            "NUM_STREAMS": "1",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "EXECUTION_MODE_HINT": "PERFORMANCE",
            "ENABLE_CPU_PINNING": "False",
            "SCHEDULING_CORE_TYPE": "ANY_CORE",
        }
    with open_model(token_model, options=SessionOptions(optimize=False)) as session:
        assert session.settings["EXECUTION_MODE_HINT"] == "ACCURACY"


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda f: {"input_ids": f["input_ids"]}, "missing attention_mask"),
        (lambda f: {**f, "token_type_ids": f["input_ids"]}, "unknown token_type_ids"),
        (lambda f: {**f, "input_ids": f["input_ids"].astype(np.int32)}, "is int32, the model takes int64"),
        (lambda f: {**f, "input_ids": f["input_ids"].astype(np.float32)}, "is float32, the model takes int64"),
        (lambda f: {**f, "input_ids": f["input_ids"][None]}, "has 3 dims, the model takes 2"),
        (lambda f: {**f, "attention_mask": f["attention_mask"][:1]}, "has batch 1, another input 2"),
    ],
)
def test_feeds_openvino_would_take_are_refused(token_model, change, problem):
    """OpenVINO itself would reuse the last call's tensor for a missing input, convert the
    dtype, and broadcast a batch-1 mask; ONNX Runtime refuses these, and so does the session."""
    with open_model(token_model) as session:
        session.run(_feeds())  # a previous call, whose tensors must not stand in for missing ones
        with pytest.raises(DataError, match=problem):
            session.run(change(_feeds()))


def test_dims_with_one_size_in_the_profile_are_compiled_static(token_model):
    profile = {name: ((1, 5), (2, 5), (2, 5)) for name in ("input_ids", "attention_mask")}
    with open_model(token_model, options=SessionOptions(profile=profile)) as session:
        assert [s.shape for s in session.inputs] == [("?", 5), ("?", 5)]  # the batch varies: left symbolic
        np.testing.assert_array_equal(session.run(_feeds(1))["hidden"], _expected(_feeds(1)))
        with pytest.raises(DataError, match="axis 1 is 6, the model takes 5"):
            session.run(_feeds(2, 6))


def test_ir_runs_and_an_ir_without_its_weights_is_refused(token_model, tmp_path):
    import openvino as ov

    xml = tmp_path / "model.xml"
    ov.save_model(ov.Core().read_model(str(token_model)), str(xml), compress_to_fp16=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
    with open_model(xml) as session:
        np.testing.assert_array_equal(session.run(_feeds())["hidden"], _expected(_feeds()))
    (tmp_path / "model.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"no model\.bin beside it"):
        open_model(xml)


def test_a_contrib_operator_it_cannot_convert_is_unavailable_not_a_crash(tmp_path):
    node = helper.make_node("QAttention", ["x"], ["y"], domain="com.microsoft", num_heads=1)
    tensor = helper.make_tensor_value_info
    graph = helper.make_graph([node], "contrib", [tensor("x", 1, [1, 4])], [tensor("y", 1, [1, 4])])
    path = _save(graph, tmp_path / "contrib.onnx", domains=("com.microsoft",))
    with pytest.raises(
        RuntimeUnavailable, match=r"No conversion rule found for operations: com\.microsoft\.QAttention"
    ):
        open_model(path)


def test_external_data_outside_the_models_folder_is_refused(tmp_path):
    (tmp_path / "secret.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    weight = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../secret.bin")
    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [tensor("x", 1, [1, 4])], [tensor("y", 1, [1, 4])], [weight]
    )
    (tmp_path / "sub").mkdir()
    with pytest.raises(ModelLoadError, match="outside the base directory"):
        open_model(_save(graph, tmp_path / "sub" / "model.onnx"))


def test_load_takes_onnx_artifacts_and_refuses_torch_ones(digits_onnx, digits_cnn, digits):
    images = digits.test.inputs["image"][:16]
    with load("ort-cpu", digits_onnx) as session:
        expected = session.run({"image": images})["logits"]
    with load("ov-cpu", digits_onnx, SessionOptions(threads=1)) as session:
        assert session.inputs[0].dtype == "float32"
        np.testing.assert_allclose(session.run({"image": images})["logits"], expected, atol=1e-4)
    with pytest.raises(RuntimeUnavailable, match="ov-cpu: cannot run a torch artifact"):
        load("ov-cpu", digits_cnn)


def test_our_qdq_int8_runs_in_int8_on_openvino(digits_int8, digits):
    images = digits.test.inputs["image"]
    with load("ort-cpu", digits_int8) as session:
        on_ort = session.run({"image": images})["logits"].argmax(1)
    with load("ov-cpu", digits_int8) as session:
        on_ov = session.run({"image": images})["logits"].argmax(1)
        layers = runtime_precisions(session)
    assert layers.get("Convolution:u8") == 3 and "Convolution:f32" not in layers, layers
    assert (on_ov == on_ort).mean() > 0.98


def test_fp16_artifact_runs_close_to_fp32(digits_onnx, digits_fp16, digits):
    images = digits.test.inputs["image"][:32]
    with load("ov-cpu", digits_onnx) as session:
        expected = session.run({"image": images})["logits"]
    with load("ov-cpu", digits_fp16) as session:
        np.testing.assert_allclose(session.run({"image": images})["logits"], expected, atol=0.05)


def test_bf16_is_asked_for_and_never_recorded_where_the_cpu_computes_f32(digits_onnx, digits):
    assert compile_config(SessionOptions(bf16=True))["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config(SessionOptions(threads=2))["INFERENCE_NUM_THREADS"] == 2
    availability = probe("ov-cpu-bf16")
    if not availability.ok:  # this CPU: OpenVINO would compile f32 and say nothing
        assert availability.reason.startswith("no BF16 on this CPU: OpenVINO's CPU plugin lists FP32")
        with pytest.raises(RuntimeUnavailable, match="asked for bf16, the CPU plugin compiled f32"):
            load("ov-cpu-bf16", digits_onnx)
        return
    with load("ov-cpu-bf16", digits_onnx) as session:  # a CPU with AVX-512-BF16 or AMX
        assert session.settings["INFERENCE_PRECISION_HINT"] == "bf16"
        assert session.run({"image": digits.test.inputs["image"][:4]})["logits"].shape == (4, 10)


def test_bf16_availability_follows_the_plugins_capabilities():
    yes = bf16_availability(["FP32", "BF16", "INT8"], ["avx512_bf16", "amx_bf16"], "openvino 2026.4.1 on X")
    assert yes.ok and yes.reason == "openvino 2026.4.1 on X, BF16 (avx512_bf16, amx_bf16)"
    no = bf16_availability(["FP32", "INT8", "BIN", "EXPORT_IMPORT"], ["avx2"], "openvino 2026.4.1 on Y")
    assert not no.ok and "needs avx512_bf16 or amx_bf16" in no.reason


def test_load_refuses_an_artifact_of_another_format(digits_onnx):
    import dataclasses

    engine = dataclasses.replace(digits_onnx, format=Format.TRT_ENGINE)
    with pytest.raises(RuntimeUnavailable, match="cannot run a trt-engine artifact"):
        load("ov-cpu", engine)
    bare = Artifact(digits_onnx.path, Format.ONNX, Precision.FP32, "file", {}, None, IO((), ()))
    with load("ov-cpu", bare) as session:
        assert session.inputs[0].name == "image"


def test_error_messages_lose_openvinos_source_locations():
    error = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'false' failed at src/frontends/common/src/frontend.cpp:47:\n"
        "Loading input model\nPath '../x.bin' resolves to '/x.bin' which is outside the base directory '/m'\n"
    )
    assert message(error).startswith("Loading input model Path '../x.bin'")


def test_threads_calling_one_session_at_once_each_get_their_own_answers(digits_onnx, digits):
    """The server scenario's threads share a session: OpenVINO's infer request serves one
    call at a time ("Infer Request is busy"), so each thread has its own."""
    import threading

    images = digits.test.inputs["image"][:4]
    with load("ov-cpu", digits_onnx, SessionOptions(threads=1)) as session:
        expected = [session.run({"image": images[i : i + 1]})["logits"] for i in range(4)]
        start, answers, failures = threading.Barrier(4), {}, []

        def serve(index):
            start.wait()
            try:
                answers[index] = [session.run({"image": images[index : index + 1]})["logits"] for _ in range(100)]
            except Exception as err:
                failures.append(err)

        threads = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    for index in range(4):
        for answer in answers[index]:
            np.testing.assert_array_equal(answer, expected[index])
