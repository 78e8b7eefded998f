"""The Ray cluster a run uses: connecting (or starting one with `local`), checking it offers
what the run asks for, waiting on tasks, and cancelling them on Ctrl-C.

Imported only when a run names a Ray executor; `import ray` happens here and nowhere
earlier. Ray is told not to report usage and, for a cluster started here, to authenticate
with a token kept in this process's environment (Ray would otherwise write one under ~/.ray).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from edgeopt.core.errors import ClusterError, EdgeoptError, first_line
from edgeopt.executor import TaskFailure

log = logging.getLogger(__name__)

# soft cancel raises KeyboardInterrupt in the task (a build removes its temporary folder);
# whatever still runs after this long (stuck in native code) is killed
CANCEL_GRACE_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# usage stats off, and the one-off "disabled" ping sent to a dead loopback port
_QUIET_RAY = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/"}


@dataclass(frozen=True)
class Cluster:
    """What results.json records of the cluster: the address asked for and the one used."""

    asked: str
    address: str
    nodes: int

    def to_json(self) -> dict:
        return {"kind": "ray", "asked": self.asked, "address": self.address, "nodes": self.nodes}


def device_resource(device: str) -> str:
    """The custom resource a node offers (1 of) for each device it drives."""
    return f"device:{device}"


@contextmanager
def connect(address: str, devices: Iterable[str], verbose: bool) -> Iterator[Cluster]:
    """Connect to the cluster at `address` (`auto`, HOST:PORT) or start one here (`local`,
    offering every device in `devices`), check it can run the job, disconnect at the end
    (a cluster started here stops with it)."""
    devices = list(devices)
    with _environment(address == "local"):
        ray = _import_ray()
        temp_dir = tempfile.mkdtemp(prefix="edgeopt-ray-", dir="/tmp") if address == "local" else None
        try:
            _init(ray, address, devices, verbose, temp_dir)
            yield _check(ray, address, devices)
        finally:
            ray.shutdown()
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)


@contextmanager
def _environment(local: bool) -> Iterator[None]:
    """Ray's settings for this run, set before it starts and restored after."""
    wanted = dict(_QUIET_RAY)
    if local:  # a per-run token in the environment: nothing written under ~/.ray
        wanted |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {name: os.environ.get(name) for name in wanted}
    for name, value in wanted.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise ClusterError(
            f"executor ray: Ray is not installed here ({first_line(err)}); pip install 'edgeopt[ray]'"
        ) from err
    return ray


def _init(ray, address: str, devices: list[str], verbose: bool, temp_dir: str | None) -> None:
    common = {"log_to_driver": verbose, "configure_logging": False}
    hint = "start one with `ray start --head`, or use --ray local" if address != "local" else "see Ray's logs"
    try:
        if temp_dir is not None:
            # a short folder of our own (Unix socket paths stay under 108 characters), removed after
            resources = {device_resource(d): 1 for d in devices}
            ray.init(address="local", include_dashboard=False, resources=resources, _temp_dir=temp_dir, **common)
        else:
            _reachable(address, hint)
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        raise ClusterError(f"Ray cluster at {address}: cannot connect ({first_line(err)}); {hint}") from err


def _reachable(address: str, hint: str) -> None:
    """Fail fast where nothing listens: Ray itself retries a dead address for many minutes."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        where = canonicalize_bootstrap_address(address)  # `auto`: RAY_ADDRESS, or this machine's latest cluster
    except Exception:  # Ray's own lookup moved or failed: ray.init says what is wrong
        return
    if where is None:
        return
    host, _, port = where.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        raise ClusterError(f"Ray cluster at {address}: nothing answers at {where} ({reason}); {hint}") from err


def _check(ray, address: str, devices: list[str]) -> Cluster:
    """Fail in one line on what would otherwise wait forever: a device no node offers, no CPU."""
    offered = ray.cluster_resources()
    used = ray.get_runtime_context().gcs_address
    missing = [d for d in devices if offered.get(device_resource(d), 0) < 1]
    if missing:
        names = ", ".join(device_resource(d) for d in missing)
        example = '{"' + device_resource(missing[0]) + '": 1}'
        raise ClusterError(
            f"Ray cluster at {used}: no node offers {names}; start the node that measures it with "
            f"`ray start ... --resources='{example}'`"
        )
    if offered.get("CPU", 0) < 1:
        raise ClusterError(
            f"Ray cluster at {used}: no node offers a CPU for builds; add a node with --num-cpus 1 or more"
        )
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    log.info("ray: cluster at %s, %d nodes, %g CPUs, devices %s", used, nodes, offered["CPU"], ", ".join(devices))
    return Cluster(address, used, nodes)


def node_name() -> str:
    """Where the calling task runs: the host and its Ray node (several nodes may share a host)."""
    import ray

    return f"{socket.gethostname()} (ray node {ray.get_runtime_context().get_node_id()[:8]})"


def gather(pending: dict, on_done: Callable[[object, object], None]) -> None:
    """Wait for every task in `pending` (ObjectRef → what it is), calling `on_done(what,
    ref)` as each ends; `on_done` may add tasks to `pending`. Ctrl-C cancels what is left."""
    import ray

    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            on_done(pending.pop(ref), ref)
    except KeyboardInterrupt:
        cancel(list(pending))
        raise


def cancel(refs: list) -> None:
    """Stop tasks of this run: softly (their cleanup runs), then by force after a grace."""
    import ray

    if not refs:
        return
    log.info("ray: cancelling %d task(s)", len(refs))
    for ref in refs:
        ray.cancel(ref)
    _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
    for ref in left:
        ray.cancel(ref, force=True)


def outcome(ref):
    """The task's result, or a TaskFailure. An EdgeoptError raised in the task keeps its
    one line; a bug keeps its traceback; Ray's own failures (a node lost for good, a
    worker killed) say so in one line."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause
        if isinstance(cause, EdgeoptError):
            return TaskFailure(str(cause), input=True)
        return TaskFailure(f"{type(cause).__name__}: {first_line(cause)}", input=False, traceback=str(err))
    except ray.exceptions.RayError as err:
        return TaskFailure(f"{type(err).__name__}: {first_line(err)}", input=False)
