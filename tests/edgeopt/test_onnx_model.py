import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.core import onnx_model
from edgeopt.core.errors import ModelLoadError
from edgeopt.core.onnx_model import load_onnx, save_onnx


def _matmul_model(weight_count: int = 4096) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.linspace(-1, 1, weight_count, dtype=np.float32).reshape(-1, 64), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weight_count // 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _with_location(tmp_path, location: str):
    model = _matmul_model()
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    on_disk = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for entry in on_disk.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(on_disk, str(folder / "m.onnx"))
    return folder / "m.onnx"


def test_save_onnx_large_models_keep_weights_in_one_data_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_model, "EXTERNAL_DATA_BYTES", 1000)
    save_onnx(_matmul_model(), tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    loaded = load_onnx(tmp_path / "big.onnx")
    np.testing.assert_array_equal(
        numpy_helper.to_array(loaded.graph.initializer[0]), numpy_helper.to_array(_matmul_model().graph.initializer[0])
    )


def test_stages_carry_external_data_through_simplify_and_fp16(tmp_path, monkeypatch):
    from edgeopt.commands import open_artifact
    from edgeopt.core.context import StageContext
    from exporter.fp16 import ConvertFp16Options, convert_fp16
    from exporter.simplify import SimplifyOptions, simplify

    monkeypatch.setattr(onnx_model, "EXTERNAL_DATA_BYTES", 1000)
    save_onnx(_matmul_model(), tmp_path / "big.onnx")
    probe = {"x": np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)}
    for folder in ("simple", "half"):
        (tmp_path / folder).mkdir()
    simplified = simplify(
        open_artifact(tmp_path / "big.onnx"), SimplifyOptions(), StageContext(tmp_path / "simple", probe)
    )
    half = convert_fp16(simplified, ConvertFp16Options(), StageContext(tmp_path / "half", probe))
    assert (tmp_path / "simple" / "model.onnx.data").is_file() and simplified.verification.passed
    assert half.verification.passed and half.facts["size_bytes"] < simplified.facts["size_bytes"]


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_load_onnx_refuses_external_data_outside_the_folder(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16384)
    path = _with_location(tmp_path, location)
    with pytest.raises(ModelLoadError, match="points outside the model's folder"):
        load_onnx(path)


def test_load_onnx_refuses_a_symlink_leading_out_of_the_folder(tmp_path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16384)
    path = _with_location(tmp_path, "link.bin")
    os.symlink(tmp_path / "secret.bin", path.parent / "link.bin")
    with pytest.raises(ModelLoadError, match="points outside the model's folder"):
        load_onnx(path)


def test_load_onnx_names_a_missing_data_file(tmp_path):
    path = _with_location(tmp_path, "m.data")
    (path.parent / "m.data").unlink()
    with pytest.raises(ModelLoadError, match=r"external data file 'm\.data' is missing"):
        load_onnx(path)


def _huge_model(folder, rows: int = 3_000_000, width: int = 64, tables: int = 3):
    """2.3 GB of embedding tables written straight to one data file (no single tensor, and
    no protobuf message, can pass 2 GB), gathered and summed."""
    initializers, offset = [], 0
    with (folder / "huge.onnx.data").open("wb") as data:
        for index in range(tables):
            table = np.full((rows, width), index + 1, np.float32)
            table[:, 0] = np.arange(rows, dtype=np.float32) / rows
            data.write(table.tobytes())
            tensor = TensorProto(name=f"w{index}", data_type=TensorProto.FLOAT, dims=[rows, width])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "huge.onnx.data"), ("offset", str(offset)), ("length", str(table.nbytes))):
                tensor.external_data.add(key=key, value=value)
            offset += table.nbytes
            initializers.append(tensor)
    nodes = [helper.make_node("Gather", [f"w{i}", "ids"], [f"g{i}"], name=f"gather{i}") for i in range(tables)]
    nodes += [
        helper.make_node("Add", ["g0", "g1"], ["s1"], name="add1"),
        helper.make_node("Add", ["s1", "g2"], ["y"], name="add2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", width])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / "huge.onnx"))
    return folder / "huge.onnx"


@pytest.mark.slow
def test_models_over_2gb_round_trip_through_simplify_and_fp16(tmp_path):
    from edgeopt.commands import open_artifact
    from edgeopt.core.context import StageContext
    from exporter.fp16 import ConvertFp16Options, convert_fp16
    from exporter.simplify import SimplifyOptions, simplify

    source = _huge_model(tmp_path)
    assert (tmp_path / "huge.onnx.data").stat().st_size > 2**31
    probe = {"ids": np.array([[0, 5, 2_999_999]], np.int64)}
    for folder in ("simple", "half"):
        (tmp_path / folder).mkdir()
    simplified = simplify(open_artifact(source), SimplifyOptions(), StageContext(tmp_path / "simple", probe))
    assert simplified.verification.passed
    assert (tmp_path / "simple" / "model.onnx.data").stat().st_size > 2**31
    half = convert_fp16(simplified, ConvertFp16Options(), StageContext(tmp_path / "half", probe))
    assert half.verification.passed and half.facts["size_bytes"] < 0.6 * simplified.facts["size_bytes"]


def test_sort_topologically_puts_what_a_subgraph_reads_before_its_node():
    """A Loop's body reads `doubled` from the main graph: ONNX Runtime's optimizer and
    quantizer sort without such reads and can leave its producer after the Loop."""
    import onnxruntime as ort

    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "doubled"], ["acc_out"]),
            helper.make_node("Identity", ["cond"], ["again"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("step", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("again", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body),
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array(3, np.int64), "trips"), numpy_helper.from_array(np.float32(2), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    onnx_model.sort_topologically(model.graph)
    assert [node.op_type for node in model.graph.node] == ["Mul", "Loop"]
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": np.array([1, -1], np.float32)})[0], [7, -7])
