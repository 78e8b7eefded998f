import dataclasses
import json
import os
import socket

import pytest

from bench.results import SCHEMA_VERSION
from edgeopt import stages
from edgeopt.cli import main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("edgeopt: error: "), err
    return lines[-1]


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_cli_run_writes_report_and_second_run_rebuilds_nothing(mlp_recipe, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(mlp_recipe), "--output", str(out)]) == 0
    first = capsys.readouterr()
    assert "report: " in first.out and "PASSED" in first.err
    assert "The pick per target (device · runtime · threads)" in first.out  # the report's first screen
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION
    here = socket.gethostname()
    assert results["executor"] == {"kind": "local"}
    assert {r["measured_on"] for r in results["rows"]} == {here}
    assert {a["facts"]["built_on"] for a in results["artifacts"].values()} == {here}
    assert results["summary"]["machine_steadiness"]["slices"] >= 2 and "the machine itself: " in first.out
    rows = {(r["variant"], r["runtime"], r["batch"]) for r in results["rows"]}
    assert rows == {(v, rt, b) for v, rt in (("model", "torch-cpu"), ("onnx", "ort-cpu")) for b in (1, 4)}
    assert results["artifacts"]["onnx"]["verification"]["passed"]
    assert results["artifacts"]["onnx"]["parent"] == results["artifacts"]["model"]["sha256"]
    report = (out / "report.md").read_text()
    assert report.count("| onnx | ort-cpu |") == 2

    assert main(["run", str(mlp_recipe), "--output", str(out)]) == 0
    second = capsys.readouterr().err
    assert second.count("cached") == 2
    again = json.loads((out / "results.json").read_text())
    assert {k: a["sha256"] for k, a in again["artifacts"].items()} == {
        k: a["sha256"] for k, a in results["artifacts"].items()
    }
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_run_demo_recipe_meets_the_bar(tmp_path, capsys):
    from pathlib import Path

    recipe = Path(__file__).parents[2] / "recipes" / "demo.yaml"
    out = tmp_path / "demo"
    assert main(["-q", "run", str(recipe), "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    # the CPU rows: a machine with a GPU or more CPU runtimes adds rows of its own
    cpu_rows = [r for r in results["rows"] if r["runtime"] in ("torch-cpu", "ort-cpu")]
    rows = {(r["variant"], r["runtime"], r["batch"]) for r in cpu_rows}
    variants = ("onnx", "simplified", "fp16", "int8", "int8-budget")
    expected = {("model", "torch-cpu")} | {(v, "ort-cpu") for v in variants}
    assert rows == {(variant, runtime, batch) for variant, runtime in expected for batch in (1, 32)}
    assert all(r["accuracy"]["top1"] >= 0.95 for r in cpu_rows)
    assert all(r["latency"]["p50_ms"] <= r["latency"]["p90_ms"] <= r["latency"]["p99_ms"] for r in results["rows"])
    assert all(results["artifacts"][v]["verification"]["passed"] for v in ("onnx", "simplified", "fp16"))
    fp16 = results["artifacts"]["fp16"]
    assert fp16["precision"] == "fp16" and fp16["verification"]["outputs"][0]["cosine_min"] >= 0.999
    simplified = results["artifacts"]["simplified"]["facts"]
    assert simplified["node_count"] <= simplified["before"]["node_count"]
    report = (out / "report.md").read_text()
    assert "## Graphs" in report
    top1 = {r["variant"]: r["accuracy"]["top1"] for r in cpu_rows}
    assert top1["simplified"] - top1["int8"] <= 0.005
    # INT8 for this host (the recipe's target is auto), and the budget's fallback at work
    host = results["machine"]["target"]
    assert results["artifacts"]["int8"]["target"] == host and results["artifacts"]["int8-trt"]["target"] == "tensorrt"
    budget = results["artifacts"]["int8-budget"]["facts"]["budget"]
    assert budget["float"] - budget["steps"][0]["metric"] > budget["max_drop"], "all-INT8 already meets the budget"
    assert budget["met"] and budget["kept_float"] and budget["float"] - budget["int8"] <= budget["max_drop"]
    assert f"int8-budget: budget cosine drop ≤ {budget['max_drop']:.5f} met" in report
    assert f"int8: minmax calibration on 256 samples, built for {host}" in report
    sizes = {name: a["facts"]["size_bytes"] for name, a in results["artifacts"].items()}
    assert sizes["int8"] <= sizes["simplified"] / 3
    # a pick per CPU target (runtime × thread count) and scenario, each within the budget, each
    # compared with the source model's plain export there (the source model itself on torch-cpu)
    picks = [p for p in results["recommendations"] if p["runtime"] in ("torch-cpu", "ort-cpu")]
    assert {(p["runtime"], p["threads"], p["scenario"]) for p in picks} == {
        (r, t, s) for r in ("torch-cpu", "ort-cpu") for t in (1, 2) for s in ("single-stream", "offline")
    }
    assert all(abs(p["pick"]["accuracy_change"]) <= 0.01 for p in picks)
    assert {p["runtime"]: p["baseline"]["variant"] for p in picks} == {"torch-cpu": "model", "ort-cpu": "onnx"}
    assert report.index("## Recommendation") < report.index("## Artifacts")
    # every row timed in the default 20 interleaved rounds, in a process that loaded only its artifact
    assert all(len(r["round_p50_ms"]) == 20 and r["peak_rss_mb"] > r["baseline_rss_mb"] > 0 for r in results["rows"])
    assert "bar" not in capsys.readouterr().out


def test_cli_run_target_builds_int8_for_it_under_its_own_key(mlp_recipe, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    mlp_recipe.write_text(
        mlp_recipe.read_text().replace("runtimes:", "  int8: {stage: quantize_int8, from: onnx}\nruntimes:")
    )
    out = tmp_path / "out"
    built = {}
    for target in ("x86-avx2", "x86-vnni"):
        assert main(["run", str(mlp_recipe), "--output", str(out), "--target", target]) == 0
        results = json.loads((out / "results.json").read_text())
        int8 = results["artifacts"]["int8"]
        assert int8["target"] == target and int8["options"]["target"] == target
        model = onnx.load(str(out / int8["cache_key"][:12] / "model.onnx"))
        weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        built[target] = (int8["sha256"], max(int(abs(w.astype(int)).max()) for w in weights))
        report = (out / "report.md").read_text()
        assert f"| int8 | quantize_int8 | onnx | int8-qdq | {target} |" in report
        if target != results["machine"]["target"]:
            assert (
                f"**int8 was built for {target} but measured on this {results['machine']['target']} machine**" in report
            )
    assert built["x86-avx2"][1] == 64 and built["x86-vnni"][1] == 127  # 7-bit weights without VNNI
    assert built["x86-avx2"][0] != built["x86-vnni"][0]
    assert len([p for p in out.iterdir() if p.is_dir()]) == 4  # model, onnx, and one int8 per target
    assert "target: x86-vnni" in capsys.readouterr().err


def test_cli_run_interrupted_then_resumed_reuses_the_finished_stage(mlp_recipe, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = stages.STAGES["export_onnx"]

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(stages.STAGES, "export_onnx", dataclasses.replace(real, function=interrupted))
    assert main(["run", str(mlp_recipe), "--output", str(out)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not (out / "results.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]

    monkeypatch.setitem(stages.STAGES, "export_onnx", real)
    assert main(["run", str(mlp_recipe), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "load_model" in err and err.count("cached") == 1
    assert (out / "results.json").exists()


def test_cli_run_fails_the_stage_past_tolerance(mlp_recipe, tmp_path, capsys):
    # FP16 weights move the logits on every CPU (an FP32 export can match PyTorch bit for bit)
    text = mlp_recipe.read_text().replace(
        "options: {exporter: torchscript}}",
        "options: {exporter: torchscript}}\n"
        "  fp16: {stage: convert_fp16, from: onnx, options: {tolerance: {atol: 0, rtol: 0, min_cosine: 1}}}",
    )
    mlp_recipe.write_text(text)
    assert main(["run", str(mlp_recipe), "--output", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "variants.fp16: convert_fp16 output differs from its reference: logits max_abs" in line
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: verb"),
        (["run"], "the following arguments are required: recipe"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["export", "factories:tiny_mlp", "-o", "m.onnx", "--input", "image:batch,0,8:float32"], "dim '0' is neither"),
        (
            ["export", "factories:tiny_mlp", "-o", "m.onnx", "--input", "image:batch,8:complex"],
            "dtype 'complex' is not one of",
        ),
        (["export", "factories:tiny_mlp", "-o", "m.onnx"], "needs --input NAME:SHAPE:DTYPE"),
        (["export", "digits-cnn", "-o", "m.onnx", "--opset", "3"], "--opset: opset 3 is outside 9.."),
        (["bench", "absent.onnx"], "absent.onnx: not found"),
        (["simplify", "digits.npz", "-o", "s.onnx"], "not an .onnx file, an .engine file or an artifact directory"),
        (["simplify", "absent.onnx", "-o", "s.onnx"], "absent.onnx: not found"),
        (["fp16", "factories.py", "-o", "h.onnx"], "not an .onnx file, an .engine file or an artifact directory"),
        (["simplify", "digits.npz", "-o", "no/such/dir/s.onnx"], "not an .onnx file, an .engine file"),
        (
            ["export", "factories:tiny_mlp", "-o", "new/dir/m.onnx", "--input", "image:batch,1,8,9:float32"],
            "the model fails on the sample inputs",
        ),
        (["export", "factories:tiny_mlp", "-o", ".", "--input", "image:batch,1,8,8:float32"], "is a folder"),
        (["bench", "digits.npz"], "not an .onnx file, an .engine file or an artifact directory"),
        (["bench", "digits.npz", "--runtime", "tflite"], "runtime 'tflite' is not one of"),
        (["run", "recipe.yaml", "--ray", "head"], "--ray 'head': a Ray address is auto"),
    ],
)
def test_cli_usage_errors_get_one_line_and_exit_2(argv, expected, factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    before = sorted(factory_dir.rglob("*"))
    assert main(argv) == 2
    assert expected in _one_error_line(capsys)
    assert sorted(factory_dir.rglob("*")) == before  # folders made for the output are gone again


def test_cli_creates_the_output_folder(factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    argv = ["export", "factories:tiny_mlp", "-o", "out/onnx/m.onnx", "--input", "image:batch,1,8,8:float32"]
    assert main(argv) == 0
    assert "verified against PyTorch" in capsys.readouterr().out
    assert [p.name for p in (factory_dir / "out" / "onnx").iterdir()] == ["m.onnx"]
    assert main(["simplify", "out/onnx/m.onnx", "-o", "out/simple/s.onnx"]) == 0
    assert [p.name for p in (factory_dir / "out" / "simple").iterdir()] == ["s.onnx"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_refuses_a_read_only_output_folder(factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    (factory_dir / "locked").mkdir(mode=0o555)
    argv = ["export", "factories:tiny_mlp", "-o", "locked/sub/m.onnx", "--input", "image:batch,1,8,8:float32"]
    assert main(argv) == 2
    assert "cannot write there" in _one_error_line(capsys)
    assert not (factory_dir / "locked" / "sub").exists()


def test_cli_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", "run", str(tmp_path / "absent.yaml")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_cli_export_factory_model_writes_a_verified_onnx(factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    argv = ["export", "factories:two_outputs", "-o", "two.onnx", "--input", "image:batch,1,8,8:float32"]
    assert main(argv) == 0
    assert "verified against PyTorch" in capsys.readouterr().out
    assert sorted(
        p.name for p in factory_dir.iterdir() if p.suffix in (".onnx", ".data") or p.name.startswith(".edgeopt")
    ) == ["two.onnx"]
    import onnx

    model = onnx.load("two.onnx")
    assert [o.name for o in model.graph.output] == ["output_0", "output_1"]


def test_cli_bench_times_an_onnx_file(digits_onnx, capsys):
    argv = ["bench", str(digits_onnx.path), "--batch", "1", "--batch", "4", "--threads", "1", "--min-duration", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("model.onnx") == 2 and "ort-cpu" in out


def test_cli_doctor_says_what_runs_here_and_why_not(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "cpu " in out and "flags" in out
    for runtime_id in ("ort-cpu", "ort-cuda", "torch-cpu", "torch-cuda"):
        assert runtime_id in out
    from runtimes.cuda import backend_summary, driver

    lines = out.splitlines()
    assert f"driver    {driver().reason}" in lines  # asked of the driver library itself
    assert f"cuda      {backend_summary()}" in lines  # the binding TensorRT sessions use
    assert "onnxrt    onnxruntime 1.32.0 (CPU build; edgeopt[gpu] for the GPU one)" in lines
    openvino = next(line for line in lines if line.startswith("openvino  "))
    # the plugin lists what this CPU computes: BF16 and FP16 too on some
    capabilities = openvino.removeprefix("openvino  openvino 2026.4.1 (CPU plugin: ").split(")")[0].split(", ")
    assert {"FP32", "INT8"} <= set(capabilities) and openvino.endswith("nncf 3.4.0")
    for runtime_id in ("ov-cpu", "ov-cpu-bf16"):
        assert any(line.split()[:1] == [runtime_id] for line in lines)


def test_cli_with_both_onnxruntime_builds_installed_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    """onnxruntime and onnxruntime-gpu write the same folder; a mix of the two loses the
    CUDA provider or worse."""
    from runtimes import ort_providers

    monkeypatch.setattr(ort_providers, "owners", lambda: ("onnxruntime", "onnxruntime-gpu"))
    assert main(["simplify", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgeopt: error: onnxruntime and onnxruntime-gpu are both installed")
    assert main(["doctor"]) == 0  # doctor still says what is wrong
    assert "onnxrt    onnxruntime and onnxruntime-gpu are both installed" in capsys.readouterr().out


def test_cli_run_an_onnx_file_source_benchmarks_it_on_onnx_runtime(digits_onnx, factory_dir, tmp_path, capsys):
    import shutil

    shutil.copy(digits_onnx.path, factory_dir / "digits.onnx")
    recipe = factory_dir / "onnx.yaml"
    recipe.write_text(
        "name: from-onnx\nmodel: {onnx: digits.onnx}\ndata: {npz: digits.npz}\n"
        "bench: {batch_sizes: [2], threads: [1], warmup_runs: 0, min_runs: 2, min_duration_s: 0}\n"
    )
    assert main(["run", str(recipe), "--output", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["variant"], r["runtime"]) for r in results["rows"]] == [("model", "ort-cpu")]
    assert results["rows"][0]["accuracy"]["top1"] >= 0.95
    assert results["artifacts"]["model"]["facts"]["node_count"] == digits_onnx.facts["node_count"]


def test_cli_simplify_fp16_and_bf16_write_verified_models(digits_onnx_torchscript, factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    source = str(digits_onnx_torchscript.path)
    assert main(["simplify", source, "-o", "simple.onnx", "--probe", "digits.npz"]) == 0
    assert "verified against the input" in capsys.readouterr().out
    assert main(["fp16", "simple.onnx", "-o", "half.onnx", "--keep-op", "Gemm"]) == 0
    out = capsys.readouterr().out
    assert "half.onnx:" in out and "min cosine" in out
    import onnx

    half = onnx.load("half.onnx")
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert main(["bf16", "simple.onnx", "-o", "brain.onnx", "--probe", "digits.npz"]) == 0
    assert "brain.onnx:" in capsys.readouterr().out
    brain = onnx.load("brain.onnx")
    assert {t.data_type for t in brain.graph.initializer if len(t.dims) >= 2} == {onnx.TensorProto.BFLOAT16}
    assert not [p.name for p in factory_dir.iterdir() if p.name.startswith(".")]


def test_cli_quantize_writes_a_calibrated_int8_model(digits_onnx, factory_dir, capsys, monkeypatch):
    monkeypatch.chdir(factory_dir)
    source = str(digits_onnx.path)
    assert main(["quantize", source, "--calibration", "digits.npz", "-o", "q.onnx", "--method", "percentile"]) == 0
    assert main(["quantize", source, "--calibration", "digits.npz", "-o", "t.onnx", "--target", "tensorrt"]) == 0
    assert main(["quantize", source, "--dynamic", "-o", "d.onnx"]) == 0
    out = capsys.readouterr().out
    assert out.count("verified against the input") == 3 and "t.onnx: built for tensorrt;" in out
    assert "q.onnx: built for x86-" in out and "(auto: this host)" in out
    import onnx

    ops = {n.op_type for n in onnx.load("q.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not [p.name for p in factory_dir.iterdir() if p.name.startswith(".")]
