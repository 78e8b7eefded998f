"""The quantize_nncf stage on the digits CNN: NNCF's INT8 as OpenVINO IR, verified,
reproducible, quiet, and run on OpenVINO in INT8."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from bench.accuracy import predict
from edgeopt.core.artifact import Artifact, Format, Precision, directory_sha256
from edgeopt.core.context import StageContext
from edgeopt.core.data import Split
from edgeopt.core.errors import DataError, ExportError
from edgeopt.core.numeric import Tolerance
from edgeopt.stages import STAGES
from exporter.quantize_nncf import QuantizeNncfOptions, calibration_items, quantize_nncf
from runtimes import load
from runtimes.openvino import runtime_precisions

# the digits CNN's logits: per-sample cosine dips on a few small-logit images while the
# predicted class holds (see the agreement below)
DIGITS = QuantizeNncfOptions(samples=200, tolerance=Tolerance(atol=2.0, rtol=2.0, min_cosine=0.9))


def _build(tmp_path_factory, digits_onnx, digits, name: str):
    from edgeopt.store import Store

    store = Store(tmp_path_factory.mktemp(name))
    context = lambda out: StageContext(out, digits.probe(), calibration=digits.train)  # noqa: E731
    return store.build("4" * 64, lambda out: quantize_nncf(digits_onnx, DIGITS, context(out)))


@pytest.fixture(scope="module")
def digits_nncf(tmp_path_factory, digits_onnx, digits):
    return _build(tmp_path_factory, digits_onnx, digits, "nncf")


def test_quantize_nncf_writes_a_verified_openvino_ir(digits_nncf, digits_onnx):
    assert digits_nncf.format is Format.OPENVINO and digits_nncf.precision is Precision.INT8_QDQ
    assert sorted(p.name for p in digits_nncf.directory.iterdir()) == ["artifact.json", "model.bin", "model.xml"]
    assert digits_nncf.path.name == "model.xml" and digits_nncf.parent == digits_onnx.sha256
    assert digits_nncf.sha256 == directory_sha256(digits_nncf.directory)
    assert digits_nncf.io == digits_onnx.io  # names and symbolic dims kept
    assert digits_nncf.verification.passed and digits_nncf.verification.reference.startswith("export_onnx")
    facts = digits_nncf.facts
    assert facts["op_histogram"]["FakeQuantize"] >= 4 and facts["calibration_samples"] == 200
    assert facts["nncf_version"] == "3.4.0" and facts["openvino_version"].startswith("2026.")
    assert facts["size_bytes"] == sum(p.stat().st_size for p in digits_nncf.directory.glob("model.*"))
    assert Artifact.load(digits_nncf.directory) == digits_nncf


def test_quantize_nncf_runs_in_int8_on_openvino_and_keeps_the_predictions(digits_nncf, digits_onnx, digits):
    with load("ort-cpu", digits_onnx) as session:
        reference = predict(session, digits.test, 64)["logits"].argmax(1)
    with load("ov-cpu", digits_nncf) as session:
        quantized = predict(session, digits.test, 64)["logits"].argmax(1)
        layers = runtime_precisions(session)
    assert layers.get("Convolution:u8") == 3, layers
    assert (quantized == reference).mean() >= 0.97


def test_quantize_nncf_is_reproducible_and_prints_nothing(tmp_path_factory, digits_onnx, digits, digits_nncf, capfd):
    again = _build(tmp_path_factory, digits_onnx, digits, "nncf-again")
    assert again.sha256 == digits_nncf.sha256
    out, _ = capfd.readouterr()
    assert out == ""  # NNCF's progress bars are kept off stdout, which carries results


def test_quantize_nncf_refuses_what_it_cannot_quantize(digits_onnx, digits, tmp_path):
    import dataclasses

    with pytest.raises(DataError, match="needs calibration samples"):
        quantize_nncf(digits_onnx, DIGITS, StageContext(tmp_path, digits.probe()))
    fp16 = dataclasses.replace(digits_onnx, precision=Precision.FP16)
    with pytest.raises(ExportError, match="takes an fp32 model, this one is fp16"):
        quantize_nncf(fp16, DIGITS, StageContext(tmp_path, digits.probe(), calibration=digits.train))
    with pytest.raises(ValidationError):
        QuantizeNncfOptions(model_type="cnn")
    with pytest.raises(ValidationError):
        QuantizeNncfOptions(subset_size=10)


def test_calibration_items_are_single_samples_drawn_by_seed(digits_onnx, digits):
    items = calibration_items(digits.train, digits_onnx.io, 5, seed=0)
    assert len(items) == 5 and all(item["image"].shape == (1, 1, 8, 8) for item in items)
    assert all(item["image"].dtype == np.float32 for item in items)
    again = calibration_items(digits.train, digits_onnx.io, 5, seed=0)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(items, again, strict=True))
    with pytest.raises(DataError, match="no array for input"):
        calibration_items(Split({"pixels": digits.train.inputs["image"]}, None), digits_onnx.io, 5, 0)


def test_quantize_nncf_is_a_calibrated_stage_that_needs_openvino():
    stage = STAGES["quantize_nncf"]
    assert stage.accepts is Format.ONNX and stage.produces is Format.OPENVINO
    assert stage.calibrated and stage.requires == "ov-cpu"


def test_nncfs_log_goes_to_ours_not_to_stdout(capfd, caplog):
    import logging

    import nncf  # noqa: F401  (installs its stdout handler)

    from exporter.quantize_nncf import quiet_nncf

    logger = logging.getLogger("nncf")
    handlers = logger.handlers[:]
    with caplog.at_level(logging.INFO), quiet_nncf(verbose=False):
        logger.info("Statistics collection")
        logger.warning("a node left in float")
        print("a progress bar")
    assert capfd.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records if r.name == "nncf"] == ["a node left in float"]
    assert logger.handlers == handlers  # NNCF's own again afterwards
