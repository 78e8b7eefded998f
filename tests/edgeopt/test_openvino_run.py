"""A transformer recipe measured on ONNX Runtime and OpenVINO side by side: NNCF's INT8 as an
OpenVINO IR on OpenVINO only, the fused graph's dynamic INT8 (QAttention) listed as not
measured there with the reason, BF16 measured or skipped with the CPU's reason."""

from __future__ import annotations

import json

import yaml

from edgeopt.cli import main
from runtimes import probe


def test_a_transformer_run_holds_nncfs_int8_beside_ours_on_both_runtimes(bert_dir, tmp_path):
    recipe = {
        "name": "ov",
        "model": {"huggingface": str(bert_dir)},
        "data": {"text": {"max_length": 32, "samples": 40, "queries": 10, "calibration": 32, "validation": 32}},
        "variants": {
            "onnx": {"stage": "export_onnx", "options": {"exporter": "torchscript", "opset": 17}},
            "fused": {"stage": "optimize_transformer", "from": "onnx", "options": {"num_heads": 4, "hidden_size": 64}},
            "int8-fused": {"stage": "quantize_dynamic", "from": "fused", "options": {"per_channel": True}},
            "int8-qdq": {"stage": "quantize_int8", "from": "onnx", "options": {"op_types": ["MatMul"], "samples": 32}},
            "int8-nncf": {
                "stage": "quantize_nncf",
                "from": "onnx",
                "options": {"model_type": "transformer", "samples": 32},
            },
        },
        "runtimes": ["ort-cpu", "ov-cpu", "ov-cpu-bf16"],
        "bench": {
            "batch_sizes": [1, 4],
            "threads": [1],
            "min_runs": 2,
            "min_duration_s": 0,
            "warmup_runs": 0,
            "rounds": 2,
            "server": None,
        },
    }
    path = tmp_path / "ov.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(path), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    artifacts = results["artifacts"]
    assert artifacts["int8-nncf"]["format"] == "openvino" and artifacts["int8-nncf"]["verification"]["passed"]
    assert artifacts["int8-nncf"]["facts"]["op_histogram"]["FakeQuantize"] > 0
    measured = {(row["variant"], row["runtime"]) for row in results["rows"] if row["batch"] == 1}
    on_ort = {"onnx", "fused", "int8-fused", "int8-qdq"}
    assert {(name, "ort-cpu") for name in on_ort} <= measured
    assert {(name, "ov-cpu") for name in ("onnx", "fused", "int8-qdq", "int8-nncf")} <= measured
    assert ("int8-nncf", "ort-cpu") not in measured and ("int8-fused", "ov-cpu") not in measured
    skipped = {(s["variant"], s["runtime"]): s["reason"] for s in results["skipped"]}
    assert "com.microsoft.QAttention" in skipped[("int8-fused", "ov-cpu")]
    report = (out / "report.md").read_text()
    assert "OpenVINO cannot read: com.microsoft.QAttention" in report
    rows = {(row["variant"], row["runtime"]): row for row in results["rows"] if row["batch"] == 1}
    assert rows[("onnx", "ov-cpu")]["accuracy"]["cosine_mean"] > 0.9999  # OpenVINO's FP32 is ONNX Runtime's
    assert rows[("int8-nncf", "ov-cpu")]["accuracy"]["cosine_mean"] > 0.95
    bf16 = probe("ov-cpu-bf16")
    if bf16.ok:  # a CPU with AVX-512-BF16 or AMX: float artifacts' rows are BF16 ones
        assert rows[("onnx", "ov-cpu-bf16")]["precision"] == "bf16"
        assert rows[("int8-nncf", "ov-cpu-bf16")]["precision"] == "int8-qdq"
    else:
        assert skipped[("onnx", "ov-cpu-bf16")] == bf16.reason
