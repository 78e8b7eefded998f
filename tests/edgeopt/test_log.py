import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.log import NORMAL, VERBOSE, configure


@pytest.fixture
def listed_weights(tmp_path):
    """An IR version 4 model that still lists its weight as a graph input: ONNX Runtime
    warns about it, once per such initializer, on its default logger."""
    import numpy as np

    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "w")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [weight],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7), path)
    return path


def test_onnxruntime_warnings_reach_the_terminal_only_with_verbose(listed_weights, capfd):
    import onnxruntime as ort

    try:
        configure(NORMAL)
        ort.InferenceSession(str(listed_weights), providers=["CPUExecutionProvider"])
        assert "onnxruntime" not in capfd.readouterr().err
        configure(VERBOSE)
        ort.InferenceSession(str(listed_weights), providers=["CPUExecutionProvider"])
        assert "Initializer w appears in graph inputs" in capfd.readouterr().err
    finally:
        configure(NORMAL)
