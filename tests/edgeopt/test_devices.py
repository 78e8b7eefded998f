"""Devices in recipes and on the command line: their schema, the target each one's CPU
decides, and whole runs measured on devices reached through real sshd servers the tests
start (tests/sshd.py): on 127.0.0.1, and in network namespaces joined by veth pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.device_replies import Fingerprint, Info
from edgeopt.cli import main
from edgeopt.core.targets import Target, host_target
from edgeopt.devices import Device, device_target, load_devices_file
from tests import sshd

ROOT = Path(__file__).parents[2]
needs_sshd = pytest.mark.usefixtures("sshd_here")
# the demo's model, data and variants, timed briefly
QUICK_BENCH = "bench: {batch_sizes: [1, 8], threads: [1], warmup_runs: 1, min_runs: 5, min_duration_s: 0.05, rounds: 2, server: null}\n"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("edgeopt: error: "), err
    return lines[-1]


def _fingerprint(arch: str, flags: list[str]) -> Fingerprint:
    return Fingerprint(
        cpu="cpu", cpu_flags=flags, arch=arch, target="?", target_reason="?", logical_cores=4, physical_cores=4,
        memory_gb=8.0, os="Linux", python="3.11.2", libraries={}, gpus=[], tensorrt_importable=False,
        pycuda_importable=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "flags", "expected"),
    [
        ("x86_64", ["avx2", "avx512f", "avx512_vnni"], Target.X86_VNNI),
        ("x86_64", ["avx", "avx2"], Target.X86_AVX2),
        ("aarch64", ["asimddp"], Target.ARM64),
    ],
)
def test_a_device_cpu_decides_the_int8_target_built_for_it(arch, flags, expected):
    from bench.device_client import RemoteDevice
    from bench.ssh import SshTarget

    device = Device("edge", RemoteDevice(SshTarget("edge", "edge")))
    info = Info(python="p", version="3.11.2", root="/r", disk_free_bytes=1, missing=[], fingerprint=_fingerprint(arch, flags))  # fmt: skip
    target, reason = device_target(Target.AUTO, device, info)
    assert target is expected and reason.startswith("device edge: ")
    assert device_target(Target.TENSORRT, device, info)[0] is Target.TENSORRT  # one asked for wins


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"ssh": "-oProxyCommand=x"}, "devices.edge.ssh: '-oProxyCommand=x' must be non-empty, not start with '-'"),
        ({"ssh": "h", "host_key": "no"}, "devices.edge.host_key: 'no' is neither a SHA256: fingerprint"),
        ({"ssh": "h", "timeouts": {"conect": 3}}, "devices.edge.timeouts.conect: unknown key (expected one of connect"),
        ({"ssh": "h", "threads": []}, "devices.edge.threads: List should have at least 1 item"),
        ({"python": "python3"}, "devices.edge.ssh: missing"),
    ],
)
def test_a_bad_device_is_refused_in_one_line(tmp_path, capsys, spec, message):
    devices = tmp_path / "devices.yaml"
    devices.write_text(json.dumps({"devices": {"edge": spec}}))
    assert main(["devices", "check", "--devices", str(devices)]) == 2
    assert message in _one_error_line(capsys)


def test_devices_in_a_recipe_are_checked_when_it_loads(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {builtin: digits-cnn}\ndevices:\n  local: {ssh: host}\n")
    assert main(["run", str(recipe)]) == 2
    assert "'local' names this machine" in _one_error_line(capsys)
    recipe.write_text("name: r\nmodel: {builtin: digits-cnn}\ndevices:\n  edge: {ssh: host}\n")
    assert main(["run", str(recipe), "--device", "nowhere"]) == 2
    assert "--device nowhere: not one of local, edge" in _one_error_line(capsys)
    assert load_devices_file(recipe)["edge"].python == "python3"  # a recipe is a devices file too


def _devices_file(folder: Path, servers: dict[str, sshd.Server], extra: dict | None = None) -> Path:
    devices = {
        name: {
            "ssh": server.destination,
            "python": sys.executable,
            "host_key": server.host_key_fingerprint,
            "identity": str(server.key),
            "workdir": str(server.workdir / "cache"),
            "timeouts": {"connect": 5, "round": 60, "heartbeat": 4},
        }
        for name, server in servers.items()
    }
    path = folder / "devices.yaml"
    path.write_text(json.dumps({"devices": devices | (extra or {})}))
    return path


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> Path:
    """The demo recipe, timed briefly; its run folder (beside it) is shared, so the
    artifacts are built once for the tests here."""
    folder = tmp_path_factory.mktemp("demo")
    recipe = folder / "demo.yaml"
    recipe.write_text((ROOT / "recipes" / "demo.yaml").read_text().split("\nbench:")[0] + "\n" + QUICK_BENCH)
    return recipe


@needs_sshd
def test_devices_check_and_a_run_measured_on_the_device(quick_demo, tmp_path, capsys):
    with sshd.sshd_server() as server:
        devices = _devices_file(tmp_path, {"local-ssh": server})
        assert main(["devices", "check", "--devices", str(devices)]) == 0
        checked = capsys.readouterr().out
        assert (
            checked.startswith(f"local-ssh  ok  ssh {server.destination}") and f"python    {sys.executable}" in checked
        )
        target, why = host_target()  # the device is this machine's CPU, reached over SSH
        assert f"target    {target} (device local-ssh: {why})" in checked and "ort-cpu         ok" in checked

        out = quick_demo.parent / "run"
        argv = ["run", str(quick_demo), "--devices", str(devices), "--device", "local-ssh", "--output", str(out)]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert "local-ssh" in printed and "report: " in printed
    results = json.loads((out / "results.json").read_text())
    [device] = results["devices"]
    assert device["name"] == "local-ssh" and device["kind"] == "ssh" and device["status"] == "ok"
    assert device["python"].startswith(sys.executable) and device["fingerprint"]["cpu_flags"] is not None
    assert device["target"] == str(target) and results["artifacts"]["int8"]["target"] == str(target)
    rows = results["rows"]
    assert rows and {r["device"] for r in rows} == {"local-ssh"}
    assert {r["variant"] for r in rows} == {"onnx", "simplified", "fp16", "int8", "int8-budget"}
    assert {r["runtime"] for r in rows} == {"ort-cpu", "ov-cpu"}  # OpenVINO measured there too
    assert all(r["accuracy"]["top1"] > 0.9 for r in rows)
    torch = [s for s in results["skipped"] if s["runtime"] == "torch-cpu"]
    assert torch and torch[0]["device"] == "local-ssh" and "measured on the host only" in torch[0]["reason"]
    report = (out / "report.md").read_text()
    section = report[report.index("## Device local-ssh") :]
    assert f"Over SSH at `{server.destination}`" in section and device["fingerprint"]["cpu"] in section
    assert f"INT8 built for its target {target}" in section and ": int8, int8-budget." in section
    assert "| int8 | ort-cpu | 1 | 1 |" in section
    assert "Device local-ssh" in (out / "report.html").read_text()


@needs_sshd
def test_devices_are_measured_apart_and_a_dead_one_leaves_the_others_results(quick_demo, tmp_path, capsys):
    with sshd.unresponsive_port() as port, sshd.sshd_server() as server:
        dead = {"ssh": f"ssh://root@127.0.0.1:{port}", "timeouts": {"connect": 2}}
        devices = _devices_file(tmp_path, {"local-ssh": server}, {"dead": dead})
        out = quick_demo.parent / "run"
        argv = ["-q", "run", str(quick_demo), "--devices", str(devices), "--output", str(out)]
        argv += ["--device", "local", "--device", "local-ssh", "--device", "dead"]
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "device dead: not measured (connect-timeout): device dead: connect timed out" in printed
    results = json.loads((out / "results.json").read_text())
    status = {d["name"]: (d["status"], len(d["faults"])) for d in results["devices"]}
    assert status == {"local": ("ok", 0), "local-ssh": ("ok", 0), "dead": ("connect-timeout", 2)}
    rows = results["rows"]
    assert {r["device"] for r in rows} == {"local", "local-ssh"}
    local = [r for r in rows if r["device"] == "local"]
    remote = [r for r in rows if r["device"] == "local-ssh"]
    # the same artifacts on two devices: two sets of rows, never pooled
    assert {(r["variant"], r["runtime"], r["batch"]) for r in remote} <= {(r["variant"], r["runtime"], r["batch"]) for r in local}  # fmt: skip
    assert all(r["speedup_vs_model"] is None for r in remote) and all(r["speedup_vs_model"] for r in local)
    assert {p["device"] for p in results["recommendations"]} == {"local", "local-ssh"}
    report = (out / "report.md").read_text()
    assert "## Device local\n" in report and "## Device local-ssh" in report and "## Device dead" in report
    assert "**Not measured (connect-timeout)**" in report
    assert main(["compare", str(out), str(out)]) == 0
    compared = capsys.readouterr().out
    assert "local-ssh" in compared and f"0 faster, 0 slower, {len(rows)} within noise" in compared


@needs_sshd
def test_cli_bench_times_an_onnx_file_on_the_device(digits_onnx, tmp_path, capsys):
    with sshd.sshd_server() as server:
        devices = _devices_file(tmp_path, {"local-ssh": server})
        argv = ["bench", str(digits_onnx.path), "--device", "local-ssh", "--devices", str(devices)]
        assert main([*argv, "--batch", "1", "--batch", "4", "--min-duration", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "random inputs, on device local-ssh" in out and out.count("model.onnx") == 2


@pytest.mark.usefixtures("sshd_in_namespaces_here")
def test_two_devices_in_namespaces_and_a_link_that_drops(digits_onnx, digits):
    """Two "devices", each an sshd in a network namespace joined to this host by a veth
    pair: one is timed, the other's link drops mid-run (all its traffic blackholed): a
    silent device, then one that cannot be reached, recorded; the first one's results kept."""
    from bench.device_client import RemoteDevice
    from bench.isolated import Job
    from bench.latency import LatencySettings
    from bench.remote import RemoteRun, measure_remote
    from bench.ssh import SshTarget

    sshd.remove_stale_namespaces()
    jobs = [Job("onnx", "ort-cpu", 1, digits_onnx.directory, (1,))]
    run = RemoteRun(jobs, {digits_onnx.directory: digits_onnx}, {"b1__image": digits.test.inputs["image"][:1]},
                    LatencySettings(2, 5, 0.0), 3)  # fmt: skip
    with (
        sshd.network_namespace() as a,
        sshd.network_namespace() as b,
        sshd.sshd_server(a) as server_a,
        sshd.sshd_server(b) as server_b,
    ):
        outcomes = {}
        for name, server, space in (("dev-a", server_a, None), ("dev-b", server_b, b)):
            target = SshTarget(name, server.destination, 3, 4, server.host_key_fingerprint, None, server.key)
            device = RemoteDevice(target, sys.executable, str(server.workdir / "cache"))
            dropped = []

            def drop(done, total, space=space, dropped=dropped):
                if space is not None and not dropped:
                    dropped.append(done)
                    space.blackhole()

            outcomes[name] = measure_remote(device, run, drop)
    assert outcomes["dev-a"].status == "ok" and outcomes["dev-a"].collected is not None
    lost = outcomes["dev-b"]
    assert lost.collected is None and len(lost.faults) == 2
    # ssh's keepalive or the session's heartbeat notices first, whichever
    assert "stopped answering" in lost.faults[0] or "the link dropped" in lost.faults[0]
    assert "connect timed out" in lost.faults[1] and lost.status == "connect-timeout"


def test_a_run_whose_only_device_cannot_be_reached_says_so_in_one_line(quick_demo, tmp_path, capsys):
    with sshd.unresponsive_port() as port:
        devices = tmp_path / "devices.yaml"
        devices.write_text(json.dumps({"devices": {"dead": {"ssh": f"ssh://root@127.0.0.1:{port}", "timeouts": {"connect": 2}}}}))  # fmt: skip
        out = tmp_path / "run"
        assert main(["run", str(quick_demo), "--devices", str(devices), "--device", "dead", "--output", str(out)]) == 2
    assert "edgeopt: error: device dead: connect timed out" in _one_error_line(capsys)
    results = json.loads((out / "results.json").read_text())  # the failure is recorded all the same
    assert results["rows"] == [] and results["devices"][0]["status"] == "connect-timeout"
    assert results["artifacts"] == {}  # nothing was built for a device that never answered
