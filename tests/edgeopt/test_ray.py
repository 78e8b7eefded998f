"""`edgeopt run --ray`: on a real multi-node Ray cluster, started by the test in network and
PID namespaces of its own (tests/ray_cluster.py), so all its traffic stays on a loopback
nothing else shares. The checks run there (tests/edgeopt/ray_checks.py); here they are judged.

Marked slow (the cluster and its runs take minutes on 2 cores); `.ci/run` runs them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from edgeopt.cli import main
from tests.requires import require

HERE = Path(__file__).parent
CHECKS = HERE / "ray_checks.py"
pytestmark = [pytest.mark.ray, pytest.mark.slow]

# the digits CNN, two exports side by side, then FP16 and INT8 side by side: branches that
# two workers build at once; a benchmark small enough for a test
RECIPE = """\
name: fanout
model: {builtin: digits-cnn}
data: {builtin: digits}
variants:
  onnx: {stage: export_onnx, options: {exporter: torchscript}}
  onnx-dynamo: {stage: export_onnx}
  simplified: {stage: simplify, from: onnx}
  fp16: {stage: convert_fp16, from: simplified}
  int8: {stage: quantize_int8, from: simplified, options: {method: minmax}}
runtimes: [ort-cpu]
bench: {batch_sizes: [1], threads: [1], warmup_runs: 1, min_runs: 3, min_duration_s: 0, rounds: 2, server: null}
"""
CLUSTER = {
    "head": {"num_cpus": 0, "resources": {"device:local": 1}},
    "nodes": (
        {"name": "w1", "num_cpus": 1, "resources": {"device:edge-a": 1}},
        {"name": "w2", "num_cpus": 1, "resources": {"device:edge-b": 1}},
    ),
}


def _available_cluster():
    ray_cluster = _ray_cluster()
    why = ray_cluster.unavailable()
    require(f"ray cluster: {why}" if why else None)
    return ray_cluster


def _ray_cluster():
    spec = importlib.util.spec_from_file_location("ray_cluster", HERE.parent / "ray_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The recipe run here without Ray: the hashes a cluster must reproduce."""
    folder = tmp_path_factory.mktemp("ray")
    (folder / "fanout.yaml").write_text(RECIPE)
    assert main(["-q", "run", str(folder / "fanout.yaml"), "--output", str(folder / "local")]) == 0
    results = json.loads((folder / "local" / "results.json").read_text())
    return folder, {name: artifact["sha256"] for name, artifact in results["artifacts"].items()}


@pytest.fixture(scope="module")
def cluster_run(reference):
    ray_cluster = _available_cluster()
    folder, _ = reference
    args = {"recipe": str(folder / "fanout.yaml"), "workdir": str(folder)}
    return ray_cluster.run_in_cluster(f"{CHECKS}:check_cluster", args=args, timeout=900, **CLUSTER)


def _node(built_on: str) -> str:
    return re.search(r"ray node ([0-9a-f]{8})", built_on).group(1)


def test_ray_run_builds_across_workers_with_the_local_hashes(cluster_run, reference):
    facts = cluster_run.result["fan_out"]
    assert facts["first"]["returncode"] == 0, facts["first"]["stderr"]
    assert facts["sha256"] == reference[1]
    nodes = cluster_run.result["nodes"]
    builders = {_node(where) for where in facts["built_on"].values()}
    assert builders == {nodes["w1"], nodes["w2"]}  # the head has no CPU: it builds nothing
    assert facts["measured_on"] and all(_node(where) == nodes["head"] for where in facts["measured_on"])
    assert facts["executor"]["kind"] == "ray" and facts["executor"]["nodes"] == 3
    assert facts["report_has_placement"]
    rerun = facts["rerun"]
    assert rerun["returncode"] == 0 and rerun["stderr"].count("cached") == 1 + 5, rerun["stderr"]


def test_ray_run_goes_on_past_a_failed_build_and_ends_failed(cluster_run):
    facts = cluster_run.result["failing_variant"]
    assert facts["returncode"] == 2, facts["stderr"]
    last = facts["stderr"].strip().splitlines()[-1]
    assert last.startswith("edgeopt: error: 1 variant(s) failed to build (the report covers the rest): "), last
    assert "variants.exact: convert_fp16 output differs from its reference" in last
    reasons = {s["variant"]: s["reason"] for s in facts["skipped"]}
    assert reasons["exact"].startswith("build failed: convert_fp16 output differs")
    assert reasons["exact-simplified"] == "not built: 'exact', which it is made from, failed"
    assert facts["measured"] == ["fp16", "int8", "onnx", "onnx-dynamo", "simplified"]


def test_ray_unreachable_cluster_is_one_line(cluster_run):
    facts = cluster_run.result["unreachable"]
    assert facts["returncode"] == 2
    lines = facts["stderr"].strip().splitlines()
    assert lines[-1].startswith("edgeopt: error: Ray cluster at 127.0.0.1:1: nothing answers at 127.0.0.1:1 ("), lines
    assert "Traceback" not in facts["stderr"]


def test_ray_run_writes_nothing_of_rays_under_home(cluster_run):
    # (matplotlib's font cache is the report's, with or without Ray)
    assert [f for f in cluster_run.home_files if "matplotlib" not in f and f not in (".cache", ".config")] == []


def test_ray_device_jobs_hold_their_device_one_at_a_time(cluster_run):
    facts = cluster_run.result["devices"]
    assert "error" not in facts, facts.get("error")
    runs = facts["runs"]
    assert len(runs) == 4 and all(count > 0 for count in facts["rows"])
    nodes = cluster_run.result["nodes"]
    for run in runs:
        assert _node(run["measured_on"]) == nodes["w1" if run["device"] == "edge-a" else "w2"]

    def overlap(a, b):
        return a["started"] < b["finished"] and b["started"] < a["finished"]

    same = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if a["device"] == b["device"]]
    across = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :] if a["device"] != b["device"]]
    assert len(same) == 2 and not any(overlap(a, b) for a, b in same), runs
    assert any(overlap(a, b) for a, b in across), runs


def test_ray_device_over_ssh_is_measured_by_the_task_holding_it(cluster_run):
    facts = cluster_run.result["ssh_device"]
    require(facts.get("skipped"))
    assert facts.get("returncode") == 0, facts.get("stderr") or facts.get("error")
    assert facts["rows_devices"] == ["edge-a"]
    (device,) = facts["devices"]
    assert device["kind"] != "local" and device["status"] in ("ok", "retried")
    assert _node(device["measured_on"]) == cluster_run.result["nodes"]["w1"]


def test_ray_device_no_node_offers_fails_in_one_line(cluster_run):
    facts = cluster_run.result["missing_device"]
    assert facts["returncode"] == 0, facts["stderr"]
    assert "no node offers device:edge-z" in facts["stdout"] and "connected" not in facts["stdout"]
    assert len(facts["stdout"].strip().splitlines()) == 1


def test_ray_ctrl_c_cancels_the_cluster_tasks(cluster_run):
    facts = cluster_run.result["interrupt"]
    assert facts["building_seen"], facts
    assert facts["returncode"] == 130 and "interrupted" in facts["stderr_last"][0], facts
    assert not facts["still_building"], facts
    assert facts["incomplete"] == [], facts


def test_ray_node_death_retries_its_build_elsewhere(cluster_run):
    facts = cluster_run.result["node_death"]
    assert facts.get("returncode") == 0, facts.get("stderr") or facts.get("error")
    nodes = cluster_run.result["nodes"]
    survivor = {"w1": "w2", "w2": "w1"}[facts["victim"]]
    assert _node(facts["built_on"]["model"]) == nodes[survivor]
    assert facts["incomplete"] == []
    assert facts["rerun"]["returncode"] == 0 and facts["temporary_after_rerun"] == []


def test_ray_local_starts_a_cluster_for_the_run_and_leaves_nothing(reference):
    ray_cluster = _available_cluster()
    folder, hashes = reference
    args = {"recipe": str(folder / "fanout.yaml"), "workdir": str(folder)}
    run = ray_cluster.run_in_cluster(f"{CHECKS}:check_local", args=args, head=None, timeout=600)
    facts = run.result
    assert facts["returncode"] == 0, facts["stderr"]
    assert facts["sha256"] == hashes
    assert facts["executor"]["asked"] == "local"
    assert facts["ray_processes_left"] == [] and facts["tmp_left"] == []
    assert [f for f in run.home_files if "matplotlib" not in f and f not in (".cache", ".config")] == []
