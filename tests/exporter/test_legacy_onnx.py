"""Older ONNX models as the classic model zoo holds them (IR version 3, opset 7 to 9, every
weight also a graph input, fixed batch of one): simplified, converted to FP16 and
quantized, what was upgraded recorded, and each result verified against the legacy graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.cli import main
from edgeopt.commands import open_artifact
from edgeopt.core.context import StageContext
from edgeopt.core.onnx_model import describe_upgrade
from exporter.fp16 import ConvertFp16Options, convert_fp16
from exporter.quantize import QuantizeInt8Options, quantize_int8
from exporter.simplify import SimplifyOptions, simplify

GRAPHS = [
    "resnet50",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "alexnet",
    "zfnet512",
    "upsampling_opset7",
    "upsampling_opset9",
]


def _save(legacy, name: str, folder) -> object:
    model = legacy.upsampling_head(int(name[-1])) if name.startswith("upsampling") else legacy.ZOO[name]()
    assert model.ir_version == 3 and {i.name for i in model.graph.initializer} < {i.name for i in model.graph.input}
    path = folder / f"{name}.onnx"
    onnx.save(model, path)
    return open_artifact(path)


def _context(folder, legacy, **splits):
    folder.mkdir()
    return StageContext(folder, legacy.probe(), **splits)


@pytest.mark.parametrize("name", GRAPHS)
def test_legacy_graph_simplifies_and_converts_to_fp16_verified(name, legacy, tmp_path):
    source = _save(legacy, name, tmp_path)
    simplified = simplify(source, SimplifyOptions(), _context(tmp_path / "simple", legacy))
    half = convert_fp16(simplified, ConvertFp16Options(), _context(tmp_path / "half", legacy))
    for result in (simplified, half):
        model = onnx.load(str(result.path))
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version >= 4 and not {i.name for i in model.graph.initializer} & {
            i.name for i in model.graph.input
        }
        assert result.verification.passed, result.verification
    assert simplified.facts["node_count"] <= simplified.facts["before"]["node_count"]
    # FP16 adds Casts only: at the FP32 inputs and outputs, and around ops kept FP32 (Upsample)
    assert half.facts["node_count"] - half.facts["op_histogram"]["Cast"] == simplified.facts["node_count"]
    assert simplified.facts["upgraded"]["ir_version"] == [3, 4]
    assert simplified.facts["upgraded"]["weights_unlisted"] == len(onnx.load(str(source.path)).graph.initializer)
    assert "upgraded" not in half.facts  # its input was already modern


def test_legacy_graph_converts_to_fp16_directly(legacy, tmp_path):
    """No Cast per weight: the weights stop being graph inputs before the conversion."""
    source = _save(legacy, "resnet50", tmp_path)
    half = convert_fp16(source, ConvertFp16Options(), _context(tmp_path / "half", legacy))
    assert half.verification.passed
    assert half.facts["op_histogram"].get("Cast", 0) == 2  # the input's and the output's
    assert half.facts["upgraded"] == {"weights_unlisted": 48, "ir_version": [3, 4]}


def test_legacy_resnet_quantizes_and_its_int8_runs_on_onnx_runtime(legacy, tmp_path):
    import onnxruntime as ort

    from edgeopt.core.data import Split

    source = _save(legacy, "resnet50", tmp_path)
    calibration = Split(legacy.probe(32, seed=1), None)
    result = quantize_int8(
        source, QuantizeInt8Options(samples=32), _context(tmp_path / "int8", legacy, calibration=calibration)
    )
    assert result.verification.passed, result.verification
    assert result.facts["upgraded"]["opset"] == [9, 13] and result.facts["upgraded"]["ir_version"] == [3, 7]
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 5
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    feeds = legacy.probe(1, seed=2)
    (int8,) = session.run(None, feeds)
    (fp32,) = ort.InferenceSession(str(source.path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert int8.shape == (1, 10) and int8.argmax() == fp32.argmax()


def test_keep_initializers_as_inputs_lists_the_surviving_weights(legacy, tmp_path):
    source = _save(legacy, "vgg19", tmp_path)
    options = SimplifyOptions(keep_initializers_as_inputs=True)
    result = simplify(source, options, _context(tmp_path / "simple", legacy))
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    weights = {i.name for i in model.graph.initializer}
    listed = {i.name for i in model.graph.input} & weights
    assert listed and result.facts["upgraded"]["weights_kept_listed"] == len(listed)
    assert [spec.name for spec in result.io.inputs] == ["data_0"]  # listed weights are not inputs to feed
    assert result.verification.passed
    assert "kept as graph inputs" in describe_upgrade(result.facts["upgraded"])


def test_simplify_command_says_what_it_upgraded(legacy, tmp_path, capsys, monkeypatch):
    _save(legacy, "squeezenet", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["simplify", "squeezenet.onnx", "-o", "s.onnx"]) == 0
    out = capsys.readouterr().out
    assert "upgraded IR version 3 → 4, 17 weights no longer graph inputs" in out
    assert onnx.load("s.onnx").ir_version == 4


def test_quantize_command_on_a_legacy_graph(legacy, tmp_path, capsys, monkeypatch):
    _save(legacy, "resnet50", tmp_path)
    monkeypatch.chdir(tmp_path)
    np.savez("cal.npz", **legacy.probe(16, seed=3))
    assert main(["quantize", "resnet50.onnx", "--calibration", "cal.npz", "-o", "q.onnx"]) == 0
    assert "opset 9 → 13" in capsys.readouterr().out


def test_recipe_on_a_legacy_graph_reports_what_was_upgraded(legacy, tmp_path, capsys, monkeypatch):
    """A fixed batch of one, verified a sample at a time; the graph table names the upgrade."""
    _save(legacy, "inception_v2", tmp_path)
    monkeypatch.chdir(tmp_path)
    np.savez("data.npz", **legacy.probe(12, seed=4), labels=np.arange(12) % 10)
    Path("legacy.yaml").write_text(
        "name: legacy\nmodel: {onnx: inception_v2.onnx}\ndata: {npz: data.npz}\n"
        "variants: {simple: {stage: simplify}, half: {stage: convert_fp16, from: simple}}\nruntimes: [ort-cpu]\n"
        "bench: {batch_sizes: [1, 4], warmup_runs: 1, min_runs: 2, min_duration_s: 0, rounds: 2, server: null}\n"
    )
    assert main(["run", "legacy.yaml", "--output", "out"]) == 0
    assert "upgraded IR version 3 → 4, 78 weights no longer graph inputs" in capsys.readouterr().err
    report = Path("out/report.md").read_text()
    assert "| simple | 59 → " in report and "upgraded IR version 3 → 4, 78 weights no longer graph inputs;" in report
    assert "batch 4: the model's batch dim is fixed at 1" in report
