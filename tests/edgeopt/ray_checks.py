"""What tests/edgeopt/test_ray.py checks, run inside the namespaces of tests/ray_cluster.py.

Each check drives edgeopt as a user would (`python -m edgeopt.cli run ... --ray ADDRESS`,
a separate driver process) or calls the device-job API, and returns JSON facts for the
test to assert on. The cluster: a head without CPUs offering device:local, and two worker
nodes of one CPU each, w1 offering device:edge-a and w2 device:edge-b.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

DRIVER_TIMEOUT_S = 300


def check_cluster(ctx) -> dict:
    """Every check on one cluster (each start costs a quarter of a minute on 2 cores); the
    node-death check comes last, as it takes a worker away."""
    facts = {"nodes": {name: node_id[:8] for name, node_id in ctx.node_ids.items()}}
    for name, check in (
        ("fan_out", _fan_out),
        ("failing_variant", _failing_variant),
        ("unreachable", _unreachable),
        ("devices", _devices),
        ("missing_device", _missing_device),
        ("interrupt", _interrupt),
        ("ssh_device", _ssh_device),
        ("node_death", _node_death),
    ):
        try:
            facts[name] = check(ctx)
        except Exception:
            facts[name] = {"error": traceback.format_exc()}
    return facts


def check_local(ctx) -> dict:
    """`--ray local` in bare namespaces: edgeopt starts its own cluster, and leaves nothing."""
    before = set(os.listdir("/tmp"))
    out = Path(ctx.args["workdir"], "ray-local")
    run = _driver(ctx, ["run", ctx.args["recipe"], "--ray", "local", "--output", str(out)])
    time.sleep(2)  # what Ray leaves would still be exiting
    return {
        **run,
        **_results(out),
        "ray_processes_left": _processes("raylet", "gcs_server", "ray::"),
        "tmp_left": sorted(name for name in set(os.listdir("/tmp")) - before if "ray" in name),
    }


def _fan_out(ctx) -> dict:
    out = Path(ctx.args["workdir"], "ray-run")
    first = _driver(ctx, ["run", ctx.args["recipe"], "--ray", ctx.address, "--output", str(out)])
    facts = {"first": first, **_results(out)}
    facts["rerun"] = _driver(ctx, ["run", ctx.args["recipe"], "--ray", ctx.address, "--output", str(out)])
    return facts


def _failing_variant(ctx) -> dict:
    """The recipe plus a variant that fails its verification, and one made from it: the run
    goes on past them, writes the report, and ends failed. (The others are cached.)"""
    out = Path(ctx.args["workdir"], "failing")
    shutil.copytree(Path(ctx.args["workdir"], "ray-run"), out)
    recipe = Path(ctx.args["workdir"], "failing.yaml")
    text = Path(ctx.args["recipe"]).read_text().replace("name: fanout", "name: failing")
    text = text.replace("variants:\n", "variants:\n" + FAILING, 1)
    recipe.write_text(text)
    run = _driver(ctx, ["run", str(recipe), "--ray", ctx.address, "--output", str(out)])
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return {
        **run,
        "skipped": [s for s in results.get("skipped", []) if s["runtime"] is None],
        "measured": sorted({row["variant"] for row in results.get("rows", [])}),
    }


FAILING = """\
  exact: {stage: convert_fp16, from: simplified, options: {tolerance: {atol: 0, rtol: 0, min_cosine: 1}}}
  exact-simplified: {stage: simplify, from: exact}
"""


def _unreachable(ctx) -> dict:
    return _driver(ctx, ["run", ctx.args["recipe"], "--ray", "127.0.0.1:1", "--output", str(Path(ctx.args["workdir"], "none"))])  # fmt: skip


def _devices(ctx) -> dict:
    """Two measurements per device on two devices, submitted at once: each records when it
    held its device. The measurement is the real local benchmark of one artifact."""
    from edgeopt.core.artifact import Artifact
    from edgeopt.executor import DeviceJob
    from edgeopt.measure import benchmark
    from edgeopt.ray_devices import run_on_ray
    from edgeopt.recipe import load_recipe
    from edgeopt.sources import run_data

    loaded = load_recipe(Path(ctx.args["recipe"]))
    results = json.loads(Path(ctx.args["workdir"], "ray-run", "results.json").read_text())
    store = Path(ctx.args["workdir"], "ray-run")
    artifacts = {
        name: Artifact.load(store / results["artifacts"][name]["cache_key"][:12]) for name in ("model", "onnx")
    }
    dataset = run_data(loaded).dataset
    jobs = [DeviceJob(device, benchmark, (loaded, artifacts, dataset)) for device in ("edge-a", "edge-b") * 2]
    runs = run_on_ray(jobs)
    return {
        "runs": [
            {"device": r.device, "measured_on": r.measured_on, "started": r.started, "finished": r.finished}
            for r in runs
        ],
        "rows": [len(r.measured.rows) for r in runs],
    }


def _ssh_device(ctx) -> dict:
    """A device over SSH measured by a device task: the node offering device:edge-a (w1)
    drives an sshd the check starts on this namespace's loopback."""
    sys.path.insert(0, str(Path(__file__).parents[2]))
    from tests import sshd

    if sshd.missing():
        return {"skipped": sshd.missing()}
    out = Path(ctx.args["workdir"], "ray-ssh")
    with sshd.sshd_server() as server:
        device = {
            "ssh": server.destination,
            "python": sys.executable,
            "host_key": server.host_key_fingerprint,
            "identity": str(server.key),
            "workdir": str(server.workdir / "cache"),
            "timeouts": {"connect": 5, "round": 60, "heartbeat": 10},
        }
        devices = Path(ctx.args["workdir"], "ray-devices.yaml")
        devices.write_text(json.dumps({"devices": {"edge-a": device}}))
        args = ["run", ctx.args["recipe"], "--ray", ctx.address, "--devices", str(devices), "--device", "edge-a"]
        run = _driver(ctx, [*args, "--output", str(out)])
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return {
        **run,
        "rows_devices": sorted({row["device"] for row in results.get("rows", [])}),
        "devices": [
            {k: d.get(k) for k in ("name", "kind", "status", "measured_on")} for d in results.get("devices", [])
        ],
    }


def _missing_device(ctx) -> dict:
    code = (
        "import sys\n"
        "from edgeopt.ray_cluster import connect\n"
        "from edgeopt.core.errors import ClusterError\n"
        "try:\n"
        "    with connect(sys.argv[1], ['local', 'edge-z'], False):\n"
        "        print('connected')\n"
        "except ClusterError as err:\n"
        "    print(err)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, ctx.address], capture_output=True, text=True, timeout=120, check=False
    )
    return {"returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-2000:]}


def _interrupt(ctx) -> dict:
    """Ctrl-C while the source model trains on a worker."""
    out = Path(ctx.args["workdir"], "interrupt")
    driver = _start_driver(ctx, ["run", ctx.args["recipe"], "--ray", ctx.address, "--output", str(out)])
    building = _wait_for(lambda: _temporary(out), 120)
    at = time.monotonic()
    driver.send_signal(signal.SIGINT)
    ended = _finish(driver, timeout=120)
    exited_s = time.monotonic() - at
    still_building = _wait_for(lambda: not _processes("ray::build"), 30) is None
    return {
        "building_seen": bool(building),
        "returncode": ended["returncode"],
        "exited_s": round(exited_s, 1),
        "stderr_last": ended["stderr"].strip().splitlines()[-1:],
        "still_building": still_building,
        "temporary_left": _temporary(out),
        "incomplete": _incomplete(out),
    }


def _node_death(ctx) -> dict:
    """Kill the worker node that is building the source model: its task runs again on the other."""
    out = Path(ctx.args["workdir"], "node-death")
    args = ["run", ctx.args["recipe"], "--ray", ctx.address, "--output", str(out)]
    driver = _start_driver(ctx, args)
    building = _wait_for(lambda: _temporary(out), 120)
    pid = int(building[0].split("-")[2].split(".")[0])  # .tmp-<key12>-<pid>.<attempt>-<host>
    victim = _wait_for(lambda: ctx.node_running(pid), 10)
    ctx.kill_node(victim)
    facts = {"victim": victim, **_finish(driver), **_results(out)}
    facts["temporary_after_run"] = _temporary(out)
    facts["rerun"] = _driver(ctx, args)
    facts["temporary_after_rerun"] = _temporary(out)
    facts["incomplete"] = _incomplete(out)
    return facts


# ---------------------------------------------------------------- helpers


def _start_driver(ctx, args: list[str]) -> subprocess.Popen:
    """The `edgeopt` command of this environment, as a user runs it."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "edgeopt"), *args],
        cwd=ctx.args["workdir"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _driver(ctx, args: list[str]) -> dict:
    return _finish(_start_driver(ctx, args))


def _finish(driver: subprocess.Popen, timeout: float = DRIVER_TIMEOUT_S) -> dict:
    try:
        stdout, stderr = driver.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        driver.kill()
        stdout, stderr = driver.communicate()
    return {"returncode": driver.returncode, "stderr": stderr[-4000:], "stdout": stdout[-2000:]}


def _results(out: Path) -> dict:
    path = out / "results.json"
    if not path.is_file():
        return {}
    results = json.loads(path.read_text())
    artifacts = results["artifacts"]
    return {
        "sha256": {name: a["sha256"] for name, a in artifacts.items()},
        "built_on": {name: a["facts"].get("built_on") for name, a in artifacts.items()},
        "measured_on": sorted({row["measured_on"] for row in results["rows"]}),
        "executor": results["executor"],
        "report_has_placement": "## Where it ran" in (out / "report.md").read_text(),
    }


def _temporary(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob(".tmp-*")) if out.is_dir() else []


def _incomplete(out: Path) -> list[str]:
    return sorted(
        p.name for p in out.iterdir() if p.is_dir() and len(p.name) == 12 and not (p / "artifact.json").is_file()
    )


def _processes(*markers: str) -> list[str]:
    """Command lines of this PID namespace's processes that hold any marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in command for marker in markers):
            found.append(command.strip()[:120])
    return found


def _wait_for(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None
