import subprocess
import sys

import numpy as np
import pytest

from edgeopt.core.errors import RuntimeUnavailable
from runtimes import RUNTIMES, available, load, probe
from runtimes.base import SessionOptions


def test_available_gives_a_reason_for_every_runtime():
    report = available()
    assert set(report) == set(RUNTIMES)
    assert report["ort-cpu"].ok and report["torch-cpu"].ok
    assert all(a.reason for a in report.values())


def test_ort_session_describes_and_runs_the_model(digits_onnx, digits):
    with load("ort-cpu", digits_onnx, SessionOptions(threads=1)) as session:
        assert [(s.name, s.shape, s.dtype) for s in session.inputs] == [("image", ("batch", 1, 8, 8), "float32")]
        assert session.outputs[0].name == "logits"
        outputs = session.run(digits.test.take(0, 5))
        session.sync()
    assert outputs["logits"].shape == (5, 10) and outputs["logits"].dtype == np.float32


def test_ort_cpu_keeps_residual_add_and_layernorm_apart(tmp_path, monkeypatch):
    """ORT's SkipLayerNormFusion is off on the CPU (its kernel is slower than the two ops);
    the graph ORT optimises at load, written out, still has the Add and the LayerNorm."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from runtimes.ort import open_model

    hidden = helper.make_tensor_value_info
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "residual"], ["sum"]),
            helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], epsilon=1e-12),
        ],
        "residual",
        [hidden("x", TensorProto.FLOAT, [2, 4, 8]), hidden("residual", TensorProto.FLOAT, [2, 4, 8])],
        [hidden("y", TensorProto.FLOAT, [2, 4, 8])],
        [
            numpy_helper.from_array(np.ones(8, np.float32), "gamma"),
            numpy_helper.from_array(np.zeros(8, np.float32), "beta"),
        ],
    )
    source = tmp_path / "residual.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), source)
    written = tmp_path / "optimized.onnx"

    class WritingOptions(ort.SessionOptions):
        def __init__(self):
            super().__init__()
            self.optimized_model_filepath = str(written)

    monkeypatch.setattr(ort, "SessionOptions", WritingOptions)
    x = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    with open_model(source, "cpu", SessionOptions(threads=1)) as session:
        y = session.run({"x": x, "residual": x})["y"]
    assert [node.op_type for node in onnx.load(written).graph.node] == ["Add", "LayerNormalization"]
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-5)


def test_torch_session_returns_arrays_the_caller_owns(digits_cnn, digits):
    feeds = digits.test.take(0, 3)
    with load("torch-cpu", digits_cnn) as session:
        first = session.run(feeds)["logits"]
        snapshot = first.copy()
        session.run(digits.test.take(3, 6))
    np.testing.assert_array_equal(first, snapshot)


def test_load_refuses_an_artifact_of_another_format(digits_cnn):
    with pytest.raises(RuntimeUnavailable, match="ort-cpu: cannot run a torch artifact"):
        load("ort-cpu", digits_cnn)


def test_load_unknown_runtime_lists_the_known_ones(digits_onnx):
    with pytest.raises(RuntimeUnavailable, match="is not one of ort-cpu, ort-cuda"):
        load("tensorflow", digits_onnx)


@pytest.mark.skipif(
    probe("ort-cuda").ok, reason="this machine has CUDAExecutionProvider; the refusal path needs one without it"
)
def test_load_unavailable_runtime_says_why(digits_onnx):
    with pytest.raises(RuntimeUnavailable, match="has no CUDAExecutionProvider"):
        load("ort-cuda", digits_onnx)


# the gpu marker asks the driver; these need torch's CUDA build as well
TORCH_CUDA = probe("torch-cuda")
needs_torch_cuda = pytest.mark.skipif(not TORCH_CUDA.ok, reason=f"torch-cuda: {TORCH_CUDA.reason}")


@pytest.mark.gpu
@pytest.mark.parametrize(
    "runtime_id",
    [
        pytest.param("torch-cuda", marks=needs_torch_cuda),
        pytest.param("torch-cuda-fp16", marks=needs_torch_cuda),
        pytest.param(
            "ort-cuda",
            marks=pytest.mark.skipif(not probe("ort-cuda").ok, reason=f"CUDA: {probe('ort-cuda').reason}"),
        ),
    ],
)
def test_gpu_sessions_match_the_cpu(runtime_id, digits_cnn, digits_onnx, digits):
    artifact = digits_cnn if runtime_id.startswith("torch") else digits_onnx
    feeds = digits.test.take(0, 16)
    cpu_id = runtime_id.replace("cuda", "cpu").removesuffix("-fp16")
    tolerance = 0.05 if runtime_id.endswith("fp16") else 1e-3
    with load(cpu_id, artifact) as cpu, load(runtime_id, artifact) as gpu:
        on_gpu = gpu.run(feeds)["logits"]
        assert on_gpu.dtype == np.float32
        np.testing.assert_allclose(on_gpu, cpu.run(feeds)["logits"], atol=tolerance, rtol=tolerance)


@pytest.mark.gpu
@needs_torch_cuda
def test_torch_cuda_device_time_is_taken_between_cuda_events(digits_cnn, digits):
    from bench.latency import time_device_calls
    from runtimes.base import DeviceTimed

    with load("torch-cuda", digits_cnn) as session:
        assert isinstance(session, DeviceTimed)
        samples = time_device_calls(session, digits.test.take(0, 32), 10, 0.0)
    assert len(samples) == 10 and (samples > 0).all()


def test_cpu_sessions_offer_no_device_timing(digits_cnn, digits_onnx):
    from runtimes.base import DeviceTimed

    with load("torch-cpu", digits_cnn) as torch_cpu, load("ort-cpu", digits_onnx) as ort_cpu:
        assert not isinstance(torch_cpu, DeviceTimed) and not isinstance(ort_cpu, DeviceTimed)


def _fresh_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, **kwargs)


def test_import_edgeopt_and_runtimes_is_lean():
    result = _fresh_python(
        "import sys, edgeopt, runtimes, edgeopt.cli;"
        "print(sorted(m for m in ('torch', 'tensorrt', 'pycuda', 'cuda', 'onnxruntime', 'onnx') if m in sys.modules))"
    )
    assert result.stdout.strip() == "[]"


def test_probing_onnxruntime_writes_nothing_to_home_temp_or_cwd(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp")}
    for folder in ("home", "tmp", "cwd"):
        (tmp_path / folder).mkdir()
    _fresh_python("import runtimes; runtimes.available()", env=env, cwd=tmp_path / "cwd")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
