"""A device over SSH, against a real OpenSSH server the tests start (tests/sshd.py): the
digits model timed there, its cache, its host key, and each fault it can have."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.device_client import RemoteDevice
from bench.isolated import Job, pool
from bench.latency import LatencySettings
from bench.remote import RemoteRun, measure_remote, probe_remote
from bench.ssh import SshTarget
from tests import sshd

pytestmark = pytest.mark.usefixtures("sshd_here")

QUICK = LatencySettings(warmup_runs=2, min_runs=5, min_duration_s=0.0)


@pytest.fixture
def server():
    with sshd.sshd_server() as started:
        yield started
        # nothing a session started outlives the test's own use of it
        sshd.wait_until(lambda: not started.session_pids(), 15, "the device's processes to end")


def device_for(server: sshd.Server, **target) -> RemoteDevice:
    options = {
        "connect_timeout_s": 5,
        "heartbeat_s": 4,
        "host_key": server.host_key_fingerprint,
        "identity": server.key,
    }
    ssh = SshTarget("local-ssh", server.destination, **(options | target))
    return RemoteDevice(ssh, sys.executable, str(server.workdir / "cache"), round_timeout_s=60)


def digits_run(artifact, digits, rounds: int = 3) -> RemoteRun:
    jobs = [Job("onnx", "ort-cpu", 1, artifact.directory, (1, 4)), Job("onnx", "ort-cpu", 2, artifact.directory, (1,))]
    feeds = {"b1__image": digits.test.inputs["image"][:1], "b4__image": digits.test.inputs["image"][:4]}
    test = {"image": digits.test.inputs["image"]}
    return RemoteRun(jobs, {artifact.directory: artifact}, feeds, QUICK, rounds, test=test, predict={jobs[0]: 64})


def test_measure_remote_times_the_digits_model_there_and_reuses_its_cache(server, digits_onnx, digits):
    run = digits_run(digits_onnx, digits)
    outcome = measure_remote(device_for(server), run)
    assert outcome.status == "ok" and outcome.faults == () and outcome.shipped == 1
    measured = pool(outcome.collected).measured
    assert set(measured) == {(run.jobs[0], 1), (run.jobs[0], 4), (run.jobs[1], 1)}
    one = measured[(run.jobs[0], 1)]
    assert len(one.round_p50_ms) == 3 and one.latency.p50_ms > 0 and one.peak_rss_mb > one.baseline_rss_mb > 0
    outputs = outcome.predictions[run.jobs[0]]["logits"]
    assert outputs.shape == (len(digits.test), 10)
    assert (outputs.argmax(axis=1) == digits.test.labels).mean() > 0.9  # the model's real accuracy, computed there
    again = measure_remote(device_for(server), run)
    assert again.status == "ok" and again.shipped == 0  # the artifact was in the device's cache
    entries = server.workdir / "cache" / "entries"
    assert not [p for p in entries.iterdir() if p.name.startswith(".tmp")]


def test_device_info_reports_the_fingerprint_and_runtimes(server):
    probed = probe_remote(device_for(server))
    info = probed.info
    assert probed.status == "ok" and info.python == sys.executable and info.missing == []
    assert info.fingerprint.arch and info.fingerprint.cpu_flags is not None
    assert info.runtimes["ort-cpu"].ok and info.disk_free_bytes > 0


def test_a_host_key_other_than_the_pinned_one_is_refused_and_not_retried(server, tmp_path):
    sshd.keygen(tmp_path / "other")
    other = sshd.fingerprint(tmp_path / "other.pub")
    probed = probe_remote(device_for(server, host_key=other))
    assert probed.info is None and probed.status == "host-key" and len(probed.faults) == 1
    assert (
        "its host key is not trusted" in probed.faults[0] and f"does not offer the pinned {other}" in probed.faults[0]
    )


def test_known_hosts_decide_by_default_and_accept_new_only_when_asked(server, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    unknown = probe_remote(device_for(server, host_key=None, known_hosts=known))
    assert unknown.status == "host-key" and "host key is not trusted" in unknown.faults[0]
    accepted = probe_remote(device_for(server, host_key="accept-new", known_hosts=known))
    assert accepted.status == "ok" and server.host_key.read_text().split()[1] in known.read_text()
    assert probe_remote(device_for(server, host_key=None, known_hosts=known)).status == "ok"
    sshd.keygen(tmp_path / "other")
    blob = (tmp_path / "other.pub").read_text().split()[1]
    known.write_text(f"[{server.host}]:{server.port} ssh-ed25519 {blob}\n")  # the device's key changed
    changed = probe_remote(device_for(server, host_key="accept-new", known_hosts=known))
    assert changed.status == "host-key" and "its host key changed" in changed.faults[0]


def test_a_connect_timeout_is_recorded_and_retried_once():
    with sshd.unresponsive_port() as port:
        target = SshTarget("dead", f"ssh://root@127.0.0.1:{port}", connect_timeout_s=2, heartbeat_s=4)
        probed = probe_remote(RemoteDevice(target, sys.executable))
    assert probed.info is None and probed.status == "connect-timeout" and len(probed.faults) == 2
    assert all("connect timed out" in fault and "(connect timeout 2 s)" in fault for fault in probed.faults)


def _once(action):
    """An on_progress hook that injects a fault at the first round of the first attempt."""
    done = []

    def hook(finished: int, total: int) -> None:
        if not done:
            done.append(finished)
            action()

    return hook


def test_a_stopped_session_hits_the_heartbeat_timeout_and_the_run_is_retried(server, digits_onnx, digits):
    stopped = []

    def stop() -> None:
        stopped.extend(server.session_process("bench.device_session"))
        os.kill(stopped[0], signal.SIGSTOP)

    outcome = measure_remote(device_for(server), digits_run(digits_onnx, digits), _once(stop))
    assert outcome.status == "retried" and len(outcome.faults) == 1
    assert "stopped answering: no heartbeat for 4 s" in outcome.faults[0]
    assert len(pool(outcome.collected).measured) == 3  # the second attempt's rounds, whole
    sshd.wait_until(lambda: not sshd.alive(stopped[0]), 10, "the stopped session to be killed")


def test_sshd_killed_mid_run_is_recorded_and_the_run_retried(server, digits_onnx, digits):
    def kill_connection() -> None:
        session = server.session_process("bench.device_session")[0]
        os.kill(server.parent(session), signal.SIGKILL)  # the connection's sshd: the link drops

    outcome = measure_remote(device_for(server), digits_run(digits_onnx, digits), _once(kill_connection))
    assert (
        outcome.status == "retried" and len(outcome.faults) == 1 and outcome.faults[0].startswith("device local-ssh: ")
    )
    assert len(pool(outcome.collected).measured) == 3


def test_a_worker_crash_there_is_recorded_and_the_run_retried(server, digits_onnx, digits):
    def crash() -> None:
        os.kill(server.session_process("bench.worker")[0], signal.SIGKILL)

    outcome = measure_remote(device_for(server), digits_run(digits_onnx, digits), _once(crash))
    assert outcome.status == "retried" and "exited -9" in outcome.faults[0]
    assert len(pool(outcome.collected).measured) == 3


def test_a_device_another_run_is_benchmarking_is_busy(server, digits_onnx, digits):
    cache = server.workdir / "cache"
    cache.mkdir()
    with open(cache / "lock", "a+") as lock:  # the device's lock, as a running session holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(json.dumps({"pid": os.getpid(), "client": "10.0.0.9", "since": 0}))
        lock.flush()
        outcome = measure_remote(device_for(server), digits_run(digits_onnx, digits))
    assert outcome.collected is None and outcome.status == "busy" and len(outcome.faults) == 1
    assert "busy: another edgeopt run is benchmarking it" in outcome.faults[0] and "10.0.0.9" in outcome.faults[0]


def test_a_device_python_without_onnxruntime_reports_the_runtime_missing(server, tmp_path):
    python = sshd.python_without(tmp_path / "venv", keep=("numpy", "psutil"))
    probed = probe_remote(dataclasses.replace(device_for(server), python=str(python)))
    assert probed.status == "ok" and probed.info.python == str(python)
    assert (
        not probed.info.runtimes["ort-cpu"].ok
        and "onnxruntime: not installed" in probed.info.runtimes["ort-cpu"].reason
    )


def test_a_device_python_without_numpy_is_a_setup_fault(server, tmp_path):
    python = sshd.python_without(tmp_path / "bare", keep=())
    probed = probe_remote(dataclasses.replace(device_for(server), python=str(python)))
    assert probed.info is None and probed.status == "setup" and len(probed.faults) == 1
    assert "lacks numpy, psutil" in probed.faults[0] and "set python:" in probed.faults[0]


def test_ctrl_c_ends_the_session_on_the_device_too(server, digits_onnx, tmp_path):
    devices = tmp_path / "devices.yaml"
    spec = {
        "ssh": server.destination,
        "python": sys.executable,
        "host_key": server.host_key_fingerprint,
        "identity": str(server.key),
        "workdir": str(server.workdir / "cache"),
    }
    devices.write_text(json.dumps({"devices": {"local-ssh": spec}}))  # JSON is YAML
    command = [sys.executable, "-m", "edgeopt.cli", "bench", str(digits_onnx.directory), "--min-duration", "120"]
    command += ["--device", "local-ssh", "--devices", str(devices)]
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sshd.wait_until(lambda: server.session_process("bench.worker"), 60, "the benchmark to start on the device")
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
    assert cli.returncode == 130 and "interrupted" in err and "Traceback" not in err
    sshd.wait_until(lambda: not server.session_pids(), 10, "the device's session and workers to end")


def test_the_device_store_keeps_nothing_of_a_transfer_cut_short(tmp_path):
    import io

    from bench import device_store
    from bench.shipping import arrays_entry

    entry = arrays_entry("feeds.npz", {"x": np.arange(1000, dtype=np.float32)})
    header = json.dumps({"entries": [entry.header()]}).encode() + b"\n"
    data = entry.files[0].read()
    with pytest.raises(ValueError, match="the transfer ended early"):
        device_store.receive(str(tmp_path), io.BytesIO(header + data[:100]))
    with pytest.raises(ValueError, match="arrived damaged"):
        device_store.receive(str(tmp_path), io.BytesIO(header + bytes(len(data))))
    assert list((tmp_path / "entries").iterdir()) == []
    answer = device_store.receive(str(tmp_path), io.BytesIO(header + data))
    assert answer == {"received": {entry.id: {"feeds.npz": entry.files[0].sha256}}}
    assert device_store.have(str(tmp_path), {"entries": {entry.id: entry.manifest()}})["present"] == [entry.id]
    (tmp_path / "entries" / entry.id / "feeds.npz").write_bytes(b"changed")  # a damaged cache is sent again
    assert device_store.have(str(tmp_path), {"entries": {entry.id: entry.manifest()}})["present"] == []


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", ""])
def test_the_device_store_refuses_paths_that_leave_its_entry(tmp_path, path):
    import io

    from bench import device_store

    header = {"entries": [{"id": "0" * 64, "files": [{"path": path, "size": 0, "sha256": "0" * 64}]}]}
    with pytest.raises(ValueError, match="unsafe path"):
        device_store.receive(str(tmp_path), io.BytesIO(json.dumps(header).encode() + b"\n"))


def test_the_harness_archive_is_deterministic_and_runs_on_its_own(tmp_path):
    import tarfile

    from bench.harness_archive import closure, harness_archive

    archive = harness_archive()
    harness_archive.cache_clear()
    assert harness_archive().sha256 == archive.sha256
    assert "bench/worker.py" in archive.files and "runtimes/ort.py" in archive.files
    assert not any(name.startswith(("exporter/", "compress/", "bench/report/")) for name in archive.files)
    assert len(closure()) == len(archive.files)
    code = tmp_path / "code"
    with tarfile.open(fileobj=__import__("io").BytesIO(archive.data), mode="r:gz") as tar:
        tar.extractall(code, filter="data")
    # from the archive alone: no repository on the path, the cwd elsewhere
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(code), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.device_info", str(tmp_path / "root")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    info = json.loads(done.stdout)
    assert info["missing"] == [] and info["runtimes"]["ort-cpu"]["ok"]


def test_device_answers_that_are_not_edgeopts_are_refused():
    from bench.device_replies import Message, Result, decode_outputs, parse, to_collected
    from bench.ssh import DeviceFault

    for line, said in (
        (b"rm -rf /\n", "not JSON"),
        (b'{"hb": 1, "run": "code"}', "run: Extra inputs are not permitted"),
        (b'{"progress": -1}', "progress: Input should be greater than or equal to 0"),
        (b'{"error": "x", "kind": "exec"}', "kind: Input should be"),
    ):
        with pytest.raises(DeviceFault, match=said) as refused:
            parse(line, Message, "edge")
        assert refused.value.status == "bad-reply" and "\n" not in str(refused.value)
    job = Job("onnx", "ort-cpu", 1, Path("a"), (1,))
    round_ = {"samples_ns": [1000, 1100], "warmup_runs": 1}
    whole = {"rounds": [{"job": 0, "batch": 1, "answers": [round_, round_]}], "processes": [{"job": 0, "load_s": 0.1, "baseline_rss_bytes": 1, "peak_rss_bytes": 2}], "overheads": [], "served": [], "steady": [], "predictions": []}  # fmt: skip
    assert to_collected(Result.model_validate(whole), [job], 2, "edge").rounds[(job, 1)] == [round_, round_]
    with pytest.raises(DeviceFault, match="an incomplete answer"):  # a round short: never pooled
        to_collected(Result.model_validate(whole), [job], 3, "edge")
    with pytest.raises(DeviceFault, match="an answer for job 1 of 1"):
        to_collected(
            Result.model_validate({**whole, "rounds": [{"job": 1, "batch": 1, "answers": []}]}), [job], 2, "edge"
        )
    output = {"name": "logits", "dtype": "float32", "shape": [2, 3], "data": "AAAA"}
    with pytest.raises(DeviceFault, match="does not fill its shape"):
        decode_outputs([output], "edge")
    data = __import__("base64").b64encode(np.arange(6, dtype=np.float32).tobytes()).decode()
    assert decode_outputs([{**output, "data": data}], "edge")["logits"].tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("host_key", [None, "accept-new", "SHA256:" + "A" * 43])
def test_ssh_options_never_skip_the_host_key_check_or_prompt(host_key):
    from bench.ssh import ssh_options

    options = ssh_options(SshTarget("edge", "edge", host_key=host_key), "/tmp/eocmXXXXXXXX/%C")
    values = options[1::2]
    assert "BatchMode=yes" in values and "StrictHostKeyChecking=no" not in values
    assert ("StrictHostKeyChecking=accept-new" in values) == (host_key == "accept-new")
    assert len("/tmp/eocmXXXXXXXX/") + 40 <= 90  # the control socket's path fits sun_path with ssh's suffix


@pytest.mark.parametrize(
    ("stderr", "code", "status", "retry"),
    [
        ("Host key verification failed.\r\n", 255, "host-key", False),
        ("root@127.0.0.1: Permission denied (publickey).\r\n", 255, "auth", False),
        ("ssh: connect to host 10.0.0.3 port 22: Connection timed out\r\n", 255, "connect-timeout", True),
        ("Connection timed out during banner exchange\r\n", 255, "connect-timeout", True),
        ("ssh: connect to host 127.0.0.1 port 9: Connection refused\r\n", 255, "unreachable", True),
        ("Timeout, server 10.77.3.2 not responding.\r\n", 255, "link-down", True),
        ("Connection to 127.0.0.1 closed by remote host.\r\n", 255, "link-down", True),
        ("bash: line 1: /opt/venv/bin/python: No such file or directory\n", 127, "setup", False),
    ],
)
def test_ssh_failures_are_told_apart(stderr, code, status, retry):
    from bench.ssh import describe_failure

    fault = describe_failure(SshTarget("edge", "edge"), code, stderr)
    assert (fault.status, fault.retry) == (status, retry) and str(fault).startswith("device edge: ")
    assert "\r" not in str(fault) and "\n" not in str(fault)
