"""ONNX Runtime's GPU providers, checked with the real (CPU) onnxruntime: a session whose
provider did not start is refused rather than measured under the wrong name, the probe
starts the provider instead of trusting the build's list, the two onnxruntime builds in
one folder are caught, and the TensorRT provider gets its caches and profile."""

import warnings

import numpy as np
import pytest

from edgeopt.core.errors import RuntimeUnavailable
from runtimes import ort, ort_providers
from runtimes.base import SessionOptions


@pytest.fixture
def gpu_build(monkeypatch):
    """What onnxruntime-gpu reports on any machine, GPU or not: the CUDA and TensorRT
    providers built in (get_available_providers lists what the wheel was built with)."""
    import onnxruntime

    built = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: built)
    warnings.filterwarnings("ignore", message="Specified provider", category=UserWarning)


@pytest.mark.parametrize("device", ["cuda", "trt"])
def test_a_session_whose_provider_did_not_start_is_refused_not_run_on_the_cpu(gpu_build, digits_onnx, device):
    """ONNX Runtime registers the next provider that starts (here the CPU) and says so only
    in its log: the row would be a CPU measurement labelled ort-cuda."""
    with pytest.raises(RuntimeUnavailable) as refused:
        ort.open_model(digits_onnx.path, device, SessionOptions(threads=1))
    provider = ort.PROVIDERS[device]
    assert str(refused.value).startswith(f"ort-{device}: {provider} did not start; the session would run on CPU")


def test_probe_starts_the_provider_instead_of_trusting_the_build_list(gpu_build):
    """The probe opens a one-node session on the provider alone, in a child process."""
    availability = ort.probe("cuda")
    assert not availability.ok
    assert availability.reason.startswith("CUDAExecutionProvider did not start; a session gets CPUExecutionProvider")
    assert ort.probe("cpu").ok


def test_probe_of_a_provider_the_build_lacks_says_so_without_starting_it():
    assert ort.probe("trt").reason == f"onnxruntime {_version()} has no TensorrtExecutionProvider (install edgeopt[gpu] on a CUDA machine)"  # fmt: skip


def _version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def test_onnxruntime_builds_sharing_one_folder_are_caught():
    assert ort_providers.owners() == ("onnxruntime",)  # this environment: the CPU build alone
    both = ort_providers.install_problem(("onnxruntime", "onnxruntime-gpu"))
    assert both == (
        "onnxruntime and onnxruntime-gpu are both installed and write the same onnxruntime/ folder: "
        "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install 'edgeopt[cpu]', "
        "or 'edgeopt[gpu]' on an NVIDIA machine"
    )
    assert ort_providers.install_problem((), importable=False).startswith(
        "onnxruntime: not installed (pip install 'edgeopt[cpu]'"
    )
    assert ort_providers.install_problem(("onnxruntime",)) is None
    assert ort_providers.problem_here() is None


def test_placement_problems_name_where_the_nodes_went():
    wanted = "TensorrtExecutionProvider"
    assert ort_providers.registered_problem(wanted, [wanted, "CUDAExecutionProvider"], {wanted: 40, "CUDA": 2}) is None
    assert ort_providers.registered_problem(wanted, [wanted, "CUDAExecutionProvider"], {}) is None  # not recorded
    assert ort_providers.registered_problem(wanted, [wanted], {"CUDAExecutionProvider": 42}) == (
        "TensorrtExecutionProvider took none of the model's nodes (42 on CUDAExecutionProvider)"
    )


def test_placement_reads_onnxruntimes_record_of_where_each_node_runs(digits_onnx):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    session = onnxruntime.InferenceSession(str(digits_onnx.path), options, providers=["CPUExecutionProvider"])
    counts = ort_providers.placement(session)
    assert list(counts) == ["CPUExecutionProvider"] and counts["CPUExecutionProvider"] > 0


def test_onnxruntimes_reason_is_read_from_its_log():
    """A line onnxruntime-gpu 1.31.1 wrote on a machine without CUDA's libraries."""
    line = (
        "\x1b[1;31m2026-11-30 07:16:02.965451749 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
        "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& "
        "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
        "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: "
        "No such file or directory\x1b[m\n"
    )
    assert ort_providers._why(line) == (
        " (Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: "
        "cannot open shared object file: No such file or directory)"
    )


def test_tensorrt_provider_caches_engines_per_version_and_profile(tmp_path):
    profile = {"input_ids": ((1, 128), (32, 128), (64, 128)), "image": ((1, 3, 8, 8), (8, 3, 8, 8), (8, 3, 8, 8))}
    options = ort_providers.tensorrt_options(tmp_path, profile)
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
    assert options["trt_profile_min_shapes"] == "image:1x3x8x8,input_ids:1x128"
    assert options["trt_profile_opt_shapes"] == "image:8x3x8x8,input_ids:32x128"
    assert options["trt_profile_max_shapes"] == "image:8x3x8x8,input_ids:64x128"
    folder = options["trt_engine_cache_path"]
    assert folder == options["trt_timing_cache_path"] and folder.startswith(str(tmp_path / f"ort-{_version()}-trt-"))
    assert ort_providers.tensorrt_options(tmp_path, profile)["trt_engine_cache_path"] == folder
    other = {**profile, "image": ((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8))}
    assert ort_providers.tensorrt_options(tmp_path, other)["trt_engine_cache_path"] != folder
    assert "trt_profile_min_shapes" not in ort_providers.tensorrt_options(tmp_path, None)


def test_ort_trt_session_options_cache_beside_the_store_with_the_dynamic_inputs_profile(digits_onnx):
    profile = {"image": ((1, 1, 8, 8), (32, 1, 8, 8), (32, 1, 8, 8)), "unknown": ((1,), (1,), (1,))}
    options = ort.tensorrt_session_options(digits_onnx, SessionOptions(profile=profile))
    assert options.cache_dir == digits_onnx.directory.parent / ort.RUNTIME_CACHE
    assert options.profile == {"image": profile["image"]}
    providers = ort._providers("trt", options)
    assert providers[0][0] == "TensorrtExecutionProvider" and providers[1:] == ["CUDAExecutionProvider"]
    assert providers[0][1]["trt_profile_max_shapes"] == "image:32x1x8x8"


def test_cpu_sessions_still_run_with_fallback_off(digits_onnx, digits):
    with ort.open_model(digits_onnx.path, "cpu", SessionOptions(threads=1)) as session:
        assert session.run(digits.test.take(0, 2))["logits"].shape == (2, 10)
        assert np.isfinite(session.run(digits.test.take(0, 2))["logits"]).all()


def test_a_run_lists_a_session_whose_provider_did_not_start_as_not_measured(
    gpu_build, monkeypatch, mlp_recipe, tmp_path
):
    """The probe passed (the provider starts on a one-node model) but this model's session
    fell back to the CPU: one line under "Not built or not measured", no ort-cuda row."""
    import json

    from edgeopt.cli import main
    from runtimes.base import Availability

    monkeypatch.setattr(ort, "probe", lambda device: Availability(True, "started on a one-node model"))
    mlp_recipe.write_text(
        mlp_recipe.read_text().replace("runtimes: [torch-cpu, ort-cpu]", "runtimes: [ort-cpu, ort-cuda]")
    )
    assert main(["-q", "run", str(mlp_recipe), "--output", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {row["runtime"] for row in results["rows"]} == {"ort-cpu"}
    reason = (
        "CUDAExecutionProvider did not start; the session would run on CPUExecutionProvider (edgeopt doctor says why)"
    )
    assert {"variant": "onnx", "runtime": "ort-cuda", "reason": reason, "device": "local"} in results["skipped"]
    assert f"- onnx on ort-cuda: {reason}" in (tmp_path / "run" / "report.md").read_text()
