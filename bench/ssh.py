"""One device reached with the system's OpenSSH client: its options, its calls, and what
its failures mean.

The user's ~/.ssh/config, agent, ProxyJump and known_hosts apply as usual; on top of them
every call is non-interactive (BatchMode), checks the host key strictly (known_hosts, or a
pinned SHA256 fingerprint; `accept-new` only when the device says so; never "no"), gives up
on a silent device (ConnectTimeout covers the connect and the banner, ServerAlive* a
device that stops mid-exchange) and has a wall-clock limit of its own. One connection per
device is reused (ControlMaster) and closes by itself 60 s after its last use, so a
crashed edgeopt leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeopt.core.errors import BenchmarkError

PINNED = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
ACCEPT_NEW = "accept-new"
# the socket path may hold 90 bytes at most (108 less ssh's temporary suffix): /tmp, not a deep folder
CONTROL_PARENT = "/tmp"
PINNED_HOSTKEY = Path(__file__).with_name("pinned_hostkey.py")


class DeviceFault(BenchmarkError):
    """A device could not be used or stopped answering. `status` names the fault in the
    results; `retry` says whether trying the device again once can help."""

    def __init__(self, message: str, status: str, retry: bool):
        super().__init__(message)
        self.status = status
        self.retry = retry


@dataclass(frozen=True)
class SshTarget:
    name: str
    destination: str  # user@host, host, ssh://user@host:port, or a Host of ~/.ssh/config
    connect_timeout_s: float = 10.0
    heartbeat_s: float = 10.0  # silence after which a device counts as not answering
    host_key: str | None = None  # SHA256:… (pinned), accept-new, or None: known_hosts only
    known_hosts: Path | None = None
    identity: Path | None = None

    @property
    def server_alive_interval(self) -> int:
        return max(1, round(self.heartbeat_s / 3))


def ssh_options(target: SshTarget, control_path: str) -> list[str]:
    options = [
        "BatchMode=yes",
        f"ConnectTimeout={max(1, round(target.connect_timeout_s))}",
        f"ServerAliveInterval={target.server_alive_interval}",
        "ServerAliveCountMax=3",
        "ControlMaster=auto",
        f"ControlPath={control_path}",
        "ControlPersist=60",
        "UpdateHostKeys=no",
    ]
    if target.host_key is not None and PINNED.match(target.host_key):
        command = " ".join(_quoted(p) for p in (sys.executable, str(PINNED_HOSTKEY), target.host_key))
        options += [
            f"KnownHostsCommand={command} %H %t %K %f",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
        ]
    else:
        options.append("StrictHostKeyChecking=" + ("accept-new" if target.host_key == ACCEPT_NEW else "yes"))
        if target.known_hosts is not None:
            options.append(f"UserKnownHostsFile={_quoted(str(target.known_hosts))}")
    if target.identity is not None:
        options += [f"IdentityFile={_quoted(str(target.identity))}", "IdentitiesOnly=yes"]
    return [part for option in options for part in ("-o", option)]


def _quoted(text: str) -> str:
    """ssh splits these option values on spaces unless quoted."""
    return f'"{text}"' if " " in text else text


class SshConnection:
    """Calls to one device over a shared connection; close() ends the connection."""

    def __init__(self, target: SshTarget):
        self.target = target
        self._control_dir = tempfile.mkdtemp(prefix="eocm", dir=CONTROL_PARENT)
        self._options = ssh_options(target, f"{self._control_dir}/%C")

    def argv(self, remote_command: str | None, *extra: str) -> list[str]:
        """`remote_command` is one shell string, its parts quoted with shlex."""
        command = [] if remote_command is None else [remote_command]
        return ["ssh", "-T", *self._options, *extra, "--", self.target.destination, *command]

    def run(self, remote_command: str, data: bytes = b"", timeout_s: float = 60.0) -> bytes:
        """The command's stdout; a DeviceFault when ssh or the command failed."""
        limit = self.target.connect_timeout_s + timeout_s
        try:
            done = subprocess.run(
                self.argv(remote_command),
                input=data,
                capture_output=True,
                timeout=limit,
                start_new_session=True,  # Ctrl-C is ours to handle, not ssh's
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise DeviceFault(
                f"device {self.target.name}: no answer within {limit:g} s", "link-down", retry=True
            ) from err
        if done.returncode != 0:
            raise describe_failure(self.target, done.returncode, done.stderr.decode(errors="replace"))
        return done.stdout

    def spawn(self, remote_command: str, stderr) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(remote_command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            bufsize=0,
            start_new_session=True,
        )

    def close(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(self.argv(None, "-O", "exit"), capture_output=True, timeout=10, check=False)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self) -> SshConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ssh's own messages, most telling first: (pattern, status, retry, what it means)
_FAILURES = (
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed", "host-key", False, "its host key changed"),
    (r"Host key verification failed|No \S+ host key is known", "host-key", False, "its host key is not trusted"),
    (r"Permission denied", "auth", False, "login refused"),
    (r"timed out during banner exchange|Connection timed out", "connect-timeout", True, "connect timed out"),
    (
        r"Connection refused|No route to host|Could not resolve hostname|Network is unreachable",
        "unreachable",
        True,
        "unreachable",
    ),
    (
        r"not responding|closed by remote host|Connection reset|Broken pipe|Connection closed|timed out",
        "link-down",
        True,
        "the link dropped",
    ),
)


def describe_failure(target: SshTarget, code: int, stderr: str) -> DeviceFault:
    """One line for a failed call: what happened, ssh's own line, and what to do."""
    lines = [line.strip() for line in stderr.replace("\r", "").splitlines() if line.strip() and "@@@" not in line]
    for pattern, status, retry, meaning in _FAILURES:
        said = next((line for line in lines if re.search(pattern, line)), None)
        if said is not None:
            return DeviceFault(f"device {target.name}: {meaning}: {said}{_hint(target, status)}", status, retry)
    if code == 127:
        return DeviceFault(f"device {target.name}: {lines[-1] if lines else 'command not found'}", "setup", False)
    said = lines[-1] if lines else "no message"
    return DeviceFault(f"device {target.name}: ssh exited {code}: {said}", "failed", True)


def _hint(target: SshTarget, status: str) -> str:
    if status == "host-key" and target.host_key and PINNED.match(target.host_key):
        return (
            f" (it does not offer the pinned {target.host_key}; if the device was reinstalled, check its new "
            "key with ssh-keyscan HOST | ssh-keygen -lf - and update host_key)"
        )
    if status == "host-key":
        return (
            " (check the key the device offers and add it to known_hosts, or pin its SHA256 fingerprint "
            "in host_key; host_key: accept-new trusts a device's first key)"
        )
    if status == "auth":
        return " (BatchMode: no password prompts; give an identity or load the key into your agent)"
    if status == "connect-timeout":
        return f" (connect timeout {target.connect_timeout_s:g} s)"
    return ""
