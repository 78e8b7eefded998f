"""A throwaway multi-node Ray cluster for tests, isolated in namespaces the test creates.

    run = run_in_cluster("tests/edgeopt/ray_checks.py:check_devices", nodes=..., timeout=240)
    run.result  # what the target returned (JSON)

1. `ip netns add eoray-<pid>-<hex>` with only `lo` up: Ray's node-IP probe finds no route
   and falls back to 127.0.0.1, so every Ray socket is on that namespace's own loopback.
   (Outside one, Ray binds to the machine's address even when asked for 127.0.0.1.)
2. `ip netns exec NS unshare --pid --fork --kill-child --mount-proc PYTHON THIS --inner SPEC`:
   a PID namespace too, so killing `unshare` kills every process of the run (the kernel
   kills a PID namespace's members when its init dies): a bounded, hard teardown.
   `unshare --fork` ignores SIGTERM, so it is SIGKILLed.
3. Inside: `ray.cluster_utils.Cluster` (a head and worker nodes, each a real raylet with its
   own resources), `ray.init` in the same process, then `target(ctx)`; its JSON-able result
   comes back. With `head=None` no cluster is started (for `edgeopt run --ray local`).
4. A soft teardown inside under a SIGALRM deadline; the hard one outside after a grace.

HOME is an empty folder of the run: `home_files` lists what anything wrote there.
Needs Linux, root, iproute2's `ip`, util-linux's `unshare`, and ray; `unavailable()` says why not.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

MB = 1024 * 1024
PREFIX = "eoray-"
DEFAULT_HEAD = {"num_cpus": 0, "resources": {}}
# every node: no dashboard, a small object store, the loopback address named explicitly
NODE_DEFAULTS = {"include_dashboard": False, "object_store_memory": 80 * MB, "node_ip_address": "127.0.0.1"}
QUIET_RAY = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/"}
TEARDOWN_GRACE_S = 30


class ClusterRunError(RuntimeError):
    pass


@dataclasses.dataclass
class ClusterRun:
    result: object  # what the target returned
    timings: dict  # startup_s, target_s, teardown_s (inside), total_s (outside)
    home_files: list  # what was written under HOME
    log: str  # the inner process's output, last lines


@dataclasses.dataclass
class Context:
    """What a target gets, inside the namespaces."""

    cluster: object  # ray.cluster_utils.Cluster, or None
    address: str | None  # the GCS address, e.g. 127.0.0.1:43211
    nodes: dict  # name → ray._private.node.Node ("head" included)
    node_ids: dict  # name → node id (hex)
    args: dict

    def kill_node(self, name: str) -> None:
        """Remove a worker node at once: its raylet and workers are killed."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def name_of(self, node_id: str) -> str | None:
        return next((k for k, v in self.node_ids.items() if v == node_id), None)

    def node_running(self, pid: int) -> str | None:
        """The node whose raylet `pid` descends from."""
        import ray._private.ray_constants as constants

        for name, node in self.nodes.items():
            raylet = node.all_processes[constants.PROCESS_TYPE_RAYLET][0].process
            if pid in descendants(raylet.pid):
                return name
        return None


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def unavailable() -> str | None:
    """Why run_in_cluster cannot work here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "needs Linux network and PID namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (apt-get install iproute2 util-linux)"
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install 'edgeopt[ray]')"
    return None


def cleanup_stale() -> None:
    """Delete namespaces left by runs of this module whose owner process is gone."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        try:
            os.kill(int(name[len(PREFIX) :].split("-")[0]), 0)
            continue  # its owner is alive: not ours to touch
        except (ValueError, ProcessLookupError):
            _delete_netns(name)
        except PermissionError:
            continue


def run_in_cluster(
    target: str,
    *,
    args: dict | None = None,
    head: dict | None = DEFAULT_HEAD,
    nodes: tuple = (),
    timeout: float = 240,
    env: dict | None = None,
) -> ClusterRun:
    """Start the cluster (none with head=None) in fresh namespaces, call `target(ctx)`, tear
    everything down. `timeout` bounds startup and target inside; `TEARDOWN_GRACE_S` later
    the whole PID namespace is killed. Raises ClusterRunError with the log's tail."""
    started = time.monotonic()
    cleanup_stale()
    ns = f"{PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
    scratch = tempfile.mkdtemp(prefix=PREFIX, dir="/tmp")  # short: Unix socket paths stay under 108 characters
    home = Path(scratch, "home")
    home.mkdir()
    spec = {
        "target": target,
        "args": args or {},
        "head": None if head is None else {**DEFAULT_HEAD, **head},
        "nodes": [dict(n) for n in nodes],
        "timeout": timeout,
        "result": os.path.join(scratch, "result.json"),
    }
    spec_path = Path(scratch, "spec.json")
    spec_path.write_text(json.dumps(spec))
    log_path = Path(scratch, "inner.log")
    child_env = {**os.environ, **QUIET_RAY, "RAY_TMPDIR": scratch, "HOME": str(home), **(env or {})}
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        child_env.pop(name, None)
    if head is not None:  # the namespace is unreachable from outside: no token needed
        child_env["RAY_AUTH_MODE"] = "disabled"
    ok = False
    try:
        _create_netns(ns)
        # run from a copy in the scratch folder: Ray puts the driver's folder on its workers'
        # sys.path, and tests/ holds folders named like the project's packages
        inner = shutil.copy(__file__, scratch)
        command = ["ip", "netns", "exec", ns, "unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        command += [sys.executable, inner, "--inner", str(spec_path)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            try:
                process.wait(timeout=timeout + TEARDOWN_GRACE_S)
            except subprocess.TimeoutExpired:
                _hard_kill(process)
                raise ClusterRunError(f"{target}: no exit within {timeout + TEARDOWN_GRACE_S:.0f} s; killed\n{_tail(log_path)}") from None  # fmt: skip
            except BaseException:  # Ctrl-C in the test run: take the whole namespace down first
                _hard_kill(process)
                raise
        if not os.path.exists(spec["result"]):
            raise ClusterRunError(f"{target}: exited {process.returncode} without a result\n{_tail(log_path)}")
        outcome = json.loads(Path(spec["result"]).read_text())
        if "error" in outcome:
            raise ClusterRunError(f"{target}: {outcome['error']}\n--- log tail ---\n{_tail(log_path)}")
        home_files = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
        timings = {**outcome["timings"], "total_s": round(time.monotonic() - started, 2)}
        ok = True
        return ClusterRun(outcome["result"], timings, home_files, _tail(log_path))
    finally:
        _delete_netns(ns)
        if ok:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"ray_cluster: logs kept in {scratch}", file=sys.stderr)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies (PR_SET_PDEATHSIG), so a
    killed test run leaves no cluster behind (`unshare --kill-child` passes it on)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _create_netns(ns: str) -> None:
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)


def _delete_netns(ns: str) -> None:
    """Kill whatever is still in the namespace (there should be nothing), then delete it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout.split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _hard_kill(process: subprocess.Popen) -> None:
    """SIGKILL `unshare` (its --kill-child then kills the namespace's init, and the kernel
    every process of the PID namespace) and its process group."""
    for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- inside the namespaces


def _load(target: str):
    where, _, name = target.rpartition(":")
    spec = importlib.util.spec_from_file_location(Path(where).stem, where)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


class _Deadline(BaseException):
    pass


def _start_cluster(spec: dict):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE_DEFAULTS, **spec["head"]})
    nodes = {"head": cluster.head_node}
    for node in spec["nodes"]:
        node = dict(node)
        name = node.pop("name")
        nodes[name] = cluster.add_node(wait=True, **{**NODE_DEFAULTS, **node})  # one at a time: ports
    cluster.wait_for_nodes(timeout=60)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    return cluster, nodes


def _inner(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    # workers get the nodes' environment: the target's folder goes on PYTHONPATH before they start
    folder = str(Path(spec["target"].rpartition(":")[0]).parent)
    sys.path.insert(0, folder)
    os.environ["PYTHONPATH"] = os.pathsep.join([folder, *filter(None, [os.environ.get("PYTHONPATH")])])

    def on_alarm(signum, frame):
        raise _Deadline(f"deadline of {spec['timeout']} s passed")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(spec["timeout"]))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # PID 1 ignores signals it has no handler for
    timings, result, error, cluster = {}, None, None, None
    began = time.monotonic()
    try:
        nodes = {}
        if spec["head"] is not None:
            cluster, nodes = _start_cluster(spec)
        timings["startup_s"] = round(time.monotonic() - began, 2)
        ids = {name: node.node_id for name, node in nodes.items()}
        context = Context(cluster, cluster and cluster.address, nodes, ids, spec["args"])
        began = time.monotonic()
        result = _load(spec["target"])(context)
        timings["target_s"] = round(time.monotonic() - began, 2)
    except BaseException as err:  # report everything, the deadline too
        error = "".join(traceback.format_exception(err))
    finally:
        began = time.monotonic()
        signal.alarm(0)
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
        timings["teardown_s"] = round(time.monotonic() - began, 2)
    outcome = {"timings": timings, "result": result} if error is None else {"timings": timings, "error": error}
    Path(spec["result"] + ".tmp").write_text(json.dumps(outcome, default=str))
    os.replace(spec["result"] + ".tmp", spec["result"])
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(_inner(sys.argv[2]))
