import dataclasses

import numpy as np
import onnx
import pytest

from edgeopt.core.artifact import Format, Precision
from edgeopt.core.context import StageContext
from edgeopt.core.numeric import Tolerance, compare_outputs
from exporter.torch_export import Exporter, ExportOnnxOptions, export_onnx
from runtimes import load


def test_export_onnx_digits_is_verified_and_recorded(digits_onnx, digits_cnn):
    assert digits_onnx.format is Format.ONNX and digits_onnx.precision is Precision.FP32
    assert digits_onnx.parent == digits_cnn.sha256
    assert digits_onnx.verification.passed
    assert digits_onnx.verification.samples == 8
    check = digits_onnx.verification.outputs[0]
    assert check.name == "logits" and check.max_abs < 1e-4 and check.cosine_min > 0.9999
    assert digits_onnx.facts["node_count"] > 0 and digits_onnx.facts["opset"] == 18


def test_export_onnx_graph_keeps_symbolic_batch_dim(digits_onnx):
    model = onnx.load(str(digits_onnx.path))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 8, 8]
    onnx.checker.check_model(model)


@pytest.mark.parametrize("batch", [1, 7, 33])
def test_export_onnx_runs_at_batch_sizes_it_was_not_traced_with(digits_onnx, digits_cnn, digits, batch):
    feeds = digits.test.take(0, batch)
    with load("torch-cpu", digits_cnn) as reference, load("ort-cpu", digits_onnx) as candidate:
        expected, actual = reference.run(feeds), candidate.run(feeds)
    assert actual["logits"].shape == (batch, 10)
    np.testing.assert_allclose(actual["logits"], expected["logits"], atol=1e-4, rtol=1e-4)


def test_export_onnx_torchscript_exporter_agrees(tmp_path, digits_cnn, digits):
    options = ExportOnnxOptions(exporter=Exporter.TORCHSCRIPT, opset=17)
    exported = export_onnx(digits_cnn, options, StageContext(tmp_path, digits.probe()))
    assert exported.verification.passed
    assert exported.facts["exporter"] == "torchscript" and exported.facts["opset"] == 17


def test_export_onnx_impossible_tolerance_is_recorded_as_failed(tmp_path, digits_cnn, digits):
    strict = ExportOnnxOptions(exporter=Exporter.TORCHSCRIPT, tolerance=Tolerance(atol=0, rtol=0, min_cosine=1))
    exported = export_onnx(digits_cnn, strict, StageContext(tmp_path, digits.probe()))
    assert not exported.verification.passed
    assert exported.verification.outputs[0].max_abs > 0


def test_compare_outputs_agrees_with_numpy_allclose():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((16, 10)).astype(np.float32)
    for noise in (0.0, 1e-6, 1e-3):
        candidate = reference + noise * rng.standard_normal(reference.shape).astype(np.float32)
        verification = compare_outputs(
            {"y": reference}, {"y": candidate}, Tolerance(atol=1e-4, rtol=1e-4, min_cosine=-1), "r"
        )
        assert verification.passed == np.allclose(candidate, reference, atol=1e-4, rtol=1e-4)
        assert verification.outputs[0].max_abs == pytest.approx(np.abs(candidate - reference).max())


def test_compare_outputs_fails_on_non_finite_values():
    reference = np.ones((2, 3), np.float32)
    candidate = reference.copy()
    candidate[0, 0] = np.nan
    verification = compare_outputs({"y": reference}, {"y": candidate}, Tolerance(), "r")
    assert not verification.passed


def test_verification_round_trips_through_artifact_json(digits_onnx):
    from edgeopt.core.artifact import Artifact

    reloaded = Artifact.load(digits_onnx.directory)
    assert reloaded == digits_onnx
    assert dataclasses.asdict(reloaded.verification) == dataclasses.asdict(digits_onnx.verification)


def test_export_onnx_bytes_hold_no_local_paths(digits_onnx):
    """Exports from two checkouts of the same code must be byte-identical."""
    from pathlib import Path

    import edgeopt

    checkout = str(Path(edgeopt.__file__).resolve().parents[1]).encode()
    assert checkout not in digits_onnx.path.read_bytes()
    model = onnx.load(str(digits_onnx.path))
    assert any(p.key == "pkg.torch.onnx.name_scopes" for n in model.graph.node for p in n.metadata_props)
