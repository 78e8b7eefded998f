"""Real OpenSSH servers for the remote-device tests, started and ended by the tests.

`sshd_server()` runs `/usr/sbin/sshd -D` on 127.0.0.1 at a free high port (or inside a
network namespace, a "device" joined to this host by a veth pair), with generated host and
client keys. Every wait is bounded. Teardown stops the listener, the per-connection sshd
processes and every process a session started, found through an environment marker sshd's
SetEnv puts into each session (a session's processes outlive the listener otherwise), then
removes the namespace and the temporary folder.

Needs root (sshd's /run/sshd, a root login, namespaces) and openssh-server; `missing()`
gives the reason to skip otherwise.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself: an absolute path is required
MARKER = "EDGEOPT_SSHD_FIXTURE"


def _run(argv: list[str], timeout: float = 15, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def missing(netns: bool = False) -> str | None:
    """Why these tests cannot run here, or None."""
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen")):
        if not tool or not os.access(tool, os.X_OK):
            return "openssh-server is not installed (.ci/run installs it: apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "the sshd tests need root (/run/sshd, a root login)"
    if netns:
        if not shutil.which("ip"):
            return "iproute2 (ip) is not installed"
        name = f"eo-{os.getpid()}-probe{secrets.token_hex(2)}"
        created = _run(["ip", "netns", "add", name], check=False)
        if created.returncode != 0:
            return f"cannot create network namespaces: {created.stderr.strip()}"
        _run(["ip", "netns", "del", name], check=False)
    return None


def keygen(path: Path) -> Path:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeopt-test", "-f", str(path)])
    return path


def fingerprint(public_key: Path) -> str:
    return _run(["ssh-keygen", "-E", "sha256", "-lf", str(public_key)]).stdout.split()[1]


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped) counts as gone."""
    state = _stat(pid)
    return state is not None and state[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (state := _stat(int(entry))):
            children.setdefault(state[1], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _with_marker(value: str) -> list[int]:
    needle = f"\0{MARKER}={value}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = b"\0" + f.read() + b"\0"
        except OSError:
            continue
        if needle in environ and alive(int(entry)):
            found.append(int(entry))
    return found


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_until(condition, timeout_s: float, what: str):
    """Poll `condition()` until it is truthy (bounded); its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout_s:g} s")


@dataclass
class Namespace:
    name: str
    host_interface: str
    host_ip: str
    device_ip: str
    device_interface: str

    def blackhole(self) -> None:
        """Drop all traffic between host and device both ways (a partition): neighbour
        entries pointing at a MAC nobody has (no netem or nftables needed)."""
        _run(["ip", "neigh", "replace", self.device_ip, "lladdr", "02:00:00:00:00:99", "dev", self.host_interface, "nud", "permanent"])  # fmt: skip
        _run(["ip", "-n", self.name, "neigh", "replace", self.host_ip, "lladdr", "02:00:00:00:00:98", "dev", self.device_interface, "nud", "permanent"])  # fmt: skip


def _used_prefixes() -> set[str]:
    text = _run(["ip", "-4", "-o", "addr"], check=False).stdout + _run(["ip", "-4", "route"], check=False).stdout
    return {token.rsplit(".", 1)[0] for token in text.replace("/", " ").split() if token.count(".") == 3}


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    """A namespace eo-<pid>-<hex> joined to this host by a veth in a free 10.77.k.0/24:
    this host .1, the device .2. Deleted with its processes on exit."""
    tag = secrets.token_hex(3)
    name = f"eo-{os.getpid()}-{tag}"
    free = [k for k in range(1, 255) if f"10.77.{k}" not in _used_prefixes()]
    net = f"10.77.{random.choice(free)}"
    space = Namespace(name, f"eo{tag}h", f"{net}.1", f"{net}.2", f"eo{tag}n")
    try:
        _run(["ip", "netns", "add", name])
        _run(["ip", "link", "add", space.host_interface, "type", "veth", "peer", "name", space.device_interface, "netns", name])  # fmt: skip
        _run(["ip", "addr", "add", f"{space.host_ip}/24", "dev", space.host_interface])
        _run(["ip", "link", "set", space.host_interface, "up"])
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["ip", "-n", name, "addr", "add", f"{space.device_ip}/24", "dev", space.device_interface])
        _run(["ip", "-n", name, "link", "set", space.device_interface, "up"])
        yield space
    finally:
        _delete_namespace(name, space.host_interface)


def _delete_namespace(name: str, host_interface: str | None = None) -> None:
    for _ in range(20):
        pids = [int(p) for p in _run(["ip", "netns", "pids", name], check=False).stdout.split()]
        if not pids:
            break
        _kill(pids)
        time.sleep(0.1)
    _run(["ip", "netns", "del", name], check=False)
    if host_interface:
        _run(["ip", "link", "del", host_interface], check=False)


def remove_stale_namespaces() -> None:
    """Namespaces eo-<pid>-* left by a test process that is gone."""
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        parts = (line.split() or [""])[0].split("-")
        if len(parts) == 3 and parts[0] == "eo" and parts[1].isdigit() and not alive(int(parts[1])):
            _delete_namespace("-".join(parts))


@dataclass
class Server:
    host: str
    port: int
    key: Path  # the client's private key, authorised on the server
    host_key: Path  # the server's public host key
    host_key_fingerprint: str
    workdir: Path
    marker: str
    log: Path
    process: subprocess.Popen = field(repr=False)
    namespace: Namespace | None = None

    @property
    def destination(self) -> str:
        return f"ssh://root@{self.host}:{self.port}"

    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key.read_text().split()[:2]
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {key_type} {blob}\n"

    def session_pids(self) -> list[int]:
        """Processes that sessions started (shells, remote programs, their children)."""
        return _with_marker(self.marker)

    def session_process(self, module: str) -> list[int]:
        return [pid for pid in self.session_pids() if f"-m {module}" in cmdline(pid)]

    def parent(self, pid: int) -> int:
        state = _stat(pid)
        assert state is not None, pid
        return state[1]


def _config(directory: Path, host: str, port: int, marker: str) -> str:
    return "\n".join(
        [
            f"ListenAddress {host}",
            f"Port {port}",
            f"HostKey {directory / 'host_ed25519'}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # StrictModes checks every folder from the key file up to /: /tmp is 1777
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "MaxStartups 100",
            "ClientAliveInterval 2",
            "ClientAliveCountMax 3",
            # a HOME of its own: the real one's rc files (pyenv here) stay out of the sessions,
            # and the device's cache (~/.cache/edgeopt-device) lands in the test's folder
            f"SetEnv HOME={directory / 'home'} {MARKER}={marker}",
        ]
    )


@contextlib.contextmanager
def sshd_server(namespace: Namespace | None = None) -> Iterator[Server]:
    """`sshd -D` until the block ends; on 127.0.0.1 at a free port, or port 22 in `namespace`."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd refuses to start without it
    directory = Path(tempfile.mkdtemp(prefix="eo-sshd-"))
    marker = secrets.token_hex(8)
    process = None
    try:
        keygen(directory / "host_ed25519")
        key = keygen(directory / "client_ed25519")
        (directory / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        (directory / "home").mkdir(mode=0o700)
        host = namespace.device_ip if namespace else "127.0.0.1"
        process, port = _start(directory, host, marker, namespace)
        public = directory / "host_ed25519.pub"
        yield Server(host, port, key, public, fingerprint(public), directory, marker, directory / "sshd.log", process, namespace)  # fmt: skip
    finally:
        _stop(process, marker)
        shutil.rmtree(directory, ignore_errors=True)


def _start(directory: Path, host: str, marker: str, namespace: Namespace | None) -> tuple[subprocess.Popen, int]:
    log = directory / "sshd.log"
    for attempt in range(3):  # a free port may be taken before sshd binds it
        port = 22 if namespace else _free_port()
        config = directory / "sshd_config"
        config.write_text(_config(directory, host, port, marker) + "\n")
        prefix = ["ip", "netns", "exec", namespace.name] if namespace else []
        with open(log, "ab") as output:  # a file, not a pipe: a full pipe would block sshd
            process = subprocess.Popen(
                [*prefix, SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        try:
            wait_until(lambda: process.poll() is not None or _banner(host, port), 10, "sshd's banner")  # noqa: B023
        except TimeoutError:
            process.kill()
            raise
        if process.poll() is None:
            return process, port
        if "Address already in use" not in log.read_text(errors="replace") or attempt == 2:
            raise RuntimeError(f"sshd exited {process.returncode}: {log.read_text(errors='replace')[-500:]}")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.settimeout(1.0)
            return connection.recv(256).startswith(b"SSH-")
    except OSError:
        return False


def _stop(process: subprocess.Popen | None, marker: str) -> None:
    connections = _descendants(process.pid) if process is not None else []
    if process is not None:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)
    for _ in range(20):  # a session's processes and its connection's sshd outlive the listener
        sessions = _with_marker(marker)
        connections += [s[1] for s in map(_stat, sessions) if s and cmdline(s[1]).startswith("sshd:")]
        left = [pid for pid in connections if alive(pid)] + sessions
        if not left:
            return
        _kill(left)
        time.sleep(0.1)


@contextlib.contextmanager
def unresponsive_port() -> Iterator[int]:
    """A loopback port where connects time out: a listener with a full backlog that never
    accepts, so the kernel drops further SYNs."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(2):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def python_without(directory: Path, keep: tuple[str, ...]) -> Path:
    """A venv of this Python that sees only `keep` of this environment's packages (say numpy
    and psutil, not onnxruntime): a device's Python that lacks a runtime."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(directory)], timeout=120)
    site = next(directory.glob("lib/python*/site-packages"))
    source = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir()))
    for entry in source.iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name in keep:
            (site / entry.name).symlink_to(entry)
    return directory / "bin" / "python"
