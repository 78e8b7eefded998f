"""TrtSession and build_engine over stand-ins for TensorRT and each CUDA binding
(tests/runtimes/fake_gpu.py): what can go wrong around the GPU without one. The engines
themselves are tested in tests/exporter/test_engine.py where TensorRT and a GPU are."""

import logging

import numpy as np
import pytest

from edgeopt.core.artifact import IO, TensorSpec
from edgeopt.core.errors import DataError, ModelLoadError, RuntimeUnavailable
from runtimes.tensorrt_settings import BuildFlags
from tests.runtimes.fake_gpu import DataType, install

BINDINGS = ["cuda-python", "pycuda"]
IO_SPEC = IO(
    tuple(TensorSpec(name, ("batch", 4), "float32") for name in ("a", "b")),
    (TensorSpec("y", ("batch", 4), "float32"),),
)


def _feeds(batch: int, value: float = 1.0) -> dict[str, np.ndarray]:
    return {"a": np.full((batch, 4), value, np.float32), "b": np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)}


def _balanced(binding, module) -> bool:
    """Nothing left behind: pycuda's context stack empty and its retain given back; the
    runtime API's streams and events destroyed."""
    if binding == "pycuda":
        return module.stack == [] and module.retained == 0
    return module.streams == set()


@pytest.mark.parametrize("binding", BINDINGS)
def test_trt_session_runs_through_each_binding_and_hands_back_its_own_arrays(monkeypatch, binding):
    from runtimes.tensorrt_session import TrtSession

    _, _, module = install(monkeypatch, binding)
    with TrtSession(b"engine", IO_SPEC) as session:
        assert [s.name for s in session.inputs] == ["a", "b"] and session.outputs[0].shape == ("batch", 4)
        first = session.run(_feeds(3, 2.0))["y"]
        np.testing.assert_array_equal(first, 2.0 + np.arange(12, dtype=np.float32).reshape(3, 4))
        snapshot = first.copy()
        session.run(_feeds(5, 7.0))
        np.testing.assert_array_equal(first, snapshot)
    assert _balanced(binding, module)


@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize(
    ("engine", "error", "says"),
    [
        ({"dtype": DataType.BF16}, RuntimeUnavailable, "tensor 'a' is DataType.BF16, which numpy cannot hold"),
        ({"corrupt": True}, ModelLoadError, "cannot deserialize the engine"),
    ],
)
def test_trt_session_that_fails_to_open_gives_the_cuda_context_back(monkeypatch, binding, engine, error, says):
    """pycuda aborts the process at exit if a pushed context is left on the stack."""
    from runtimes.tensorrt_session import TrtSession

    _, _, module = install(monkeypatch, binding, **engine)
    with pytest.raises(error, match=says):
        TrtSession(b"engine", IO_SPEC)
    assert _balanced(binding, module)


@pytest.mark.parametrize("binding", BINDINGS)
def test_trt_shape_change_refused_half_way_is_bound_again_in_full(monkeypatch, binding):
    """TensorRT keeps the inputs set before the one it refuses: the next call with the old
    shapes must set them all again, not trust what was bound before."""
    from runtimes.tensorrt_session import TrtSession

    _, trt, _ = install(monkeypatch, binding, limits={"a": 8, "b": 4})
    with TrtSession(b"engine", IO_SPEC) as session:
        context = trt.Runtime.engines[-1].contexts[-1]
        expected = session.run(_feeds(2))["y"]
        with pytest.raises(DataError, match=r"input 'b' shape \(6, 4\) is outside the engine's profile"):
            session.run(_feeds(6))
        assert context.shapes["a"] == (6, 4)  # what TensorRT kept of the refused change
        np.testing.assert_array_equal(session.run(_feeds(2))["y"], expected)
        assert context.shapes == {"a": (2, 4), "b": (2, 4)}


@pytest.mark.parametrize("binding", BINDINGS)
def test_trt_session_called_from_another_thread_makes_its_context_current_there_and_back(monkeypatch, binding):
    """The server scenario calls one session from several threads."""
    import threading

    from runtimes.tensorrt_session import TrtSession

    _, _, module = install(monkeypatch, binding)
    with TrtSession(b"engine", IO_SPEC) as session:
        results = []
        worker = threading.Thread(target=lambda: results.append(session.run(_feeds(2))["y"]))
        worker.start()
        worker.join(timeout=30)
        assert len(results) == 1 and results[0].shape == (2, 4)
        if binding == "pycuda":
            assert len(module.stack) == 1  # the opening thread's push, nothing left by the other
    assert _balanced(binding, module)


@pytest.mark.parametrize("binding", BINDINGS)
def test_trt_device_timing_calls_run_through_each_binding(monkeypatch, binding):
    from runtimes.base import DeviceTimed
    from runtimes.tensorrt_session import TrtSession

    _, trt, _ = install(monkeypatch, binding)
    with TrtSession(b"engine", IO_SPEC) as session:
        assert isinstance(session, DeviceTimed)
        session.prepare(_feeds(4))
        start = session.record()
        session.enqueue()
        stop = session.record()
        stop.wait()
        assert start.done() and stop.ms_since(start) == 0.25
        assert trt.Runtime.engines[-1].contexts[-1].launches == 1


@pytest.mark.parametrize("binding", BINDINGS)
def test_here_names_the_gpu_through_the_chosen_binding(monkeypatch, binding):
    from runtimes.tensorrt import here

    install(monkeypatch, binding)
    device = here()
    assert (device.tensorrt_version, device.gpu, device.compute_capability) == (
        "10.13.3.9",
        "NVIDIA Stand-in 9000",
        "9.0",
    )


FLAGS = BuildFlags(strongly_typed=True, builder_flags=(), precision="fp32")
PROFILE = {"a": ((1, 4), (8, 4), (64, 4))}


def _build(tmp_path, cache_dir):
    from runtimes.tensorrt import build_engine

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    engine = tmp_path / "model.engine"
    device = build_engine(onnx_path, engine, FLAGS, PROFILE, 1 << 20, cache_dir)
    return engine, device


def _cache(cache_dir):
    from runtimes.tensorrt import here, timing_cache_name

    return cache_dir / timing_cache_name(here())


@pytest.mark.parametrize("saved", [b"timings:another-gpu", b"\x00garbage", None])
def test_build_engine_goes_on_when_the_timing_cache_is_refused_and_saves_a_fresh_one(
    monkeypatch, tmp_path, caplog, saved
):
    """TensorRT refuses a cache from another GPU or CUDA (set_timing_cache -> False) and
    one it cannot read (create_timing_cache -> None): the build goes on with a fresh one."""
    install(monkeypatch, "cuda-python")
    cache = _cache(tmp_path / "timing")
    if saved is not None:
        cache.parent.mkdir()
        cache.write_bytes(saved)
    (tmp_path / "build").mkdir()
    with caplog.at_level(logging.WARNING, logger="runtimes.tensorrt"):
        engine, _ = _build(tmp_path / "build", cache.parent)
    assert engine.read_bytes() == b"serialized engine"
    assert cache.read_bytes() == b"timings:+new"  # a fresh cache, timed here
    assert ("rejected this timing cache" in caplog.text) is (saved is not None)


def test_build_engine_reuses_a_timing_cache_taken_on_this_gpu(monkeypatch, tmp_path):
    install(monkeypatch, "pycuda")
    cache = _cache(tmp_path / "timing")
    cache.parent.mkdir()
    cache.write_bytes(b"timings:earlier")
    (tmp_path / "build").mkdir()
    _build(tmp_path / "build", cache.parent)
    assert cache.read_bytes() == b"timings:earlier+new"


def test_build_engine_keeps_the_engine_when_the_timing_cache_cannot_be_written(monkeypatch, tmp_path, caplog):
    install(monkeypatch, "cuda-python")
    blocked = tmp_path / "timing"
    blocked.write_text("a file where the cache folder should be")
    (tmp_path / "build").mkdir()
    with caplog.at_level(logging.WARNING, logger="runtimes.tensorrt"):
        engine, _ = _build(tmp_path / "build", blocked)
    assert engine.read_bytes() == b"serialized engine"
    assert "timing cache not saved" in caplog.text
    assert sorted(p.name for p in engine.parent.iterdir()) == ["model.engine", "model.onnx"]
