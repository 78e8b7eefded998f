"""A device over SSH: its cache (what is shipped there, checked by sha256 on arrival), what
it is and can run (bench/device_info.py there), and the commands that start its sessions.

The cache is kept by bench/device_store.py, sent as the command itself (`python -c`): it
is what puts edgeopt's code on the device, so it cannot come from there.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bench import device_store
from bench.device_replies import Info, Store, one_line, parse
from bench.shipping import Entry, harness_entry
from bench.ssh import DeviceFault, SshConnection, SshTarget, describe_failure

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = "~/.cache/edgeopt-device"
MAX_REPLY_BYTES = 256 * 2**20
STORE_SOURCE = Path(device_store.__file__).read_text()
LINK_BYTES_PER_S = 1e6  # the slowest link a transfer's deadline allows for
SESSION_ENV = ("ORT_DISABLE_TELEMETRY=1", "PYTHONDONTWRITEBYTECODE=1")


@dataclass(frozen=True)
class RemoteDevice:
    target: SshTarget
    python: str = "python3"  # the device's interpreter: a path, or a name on its PATH
    workdir: str = DEFAULT_WORKDIR  # the device's cache
    round_timeout_s: float = 60.0  # one round, or one worker's answer, at most


class DeviceClient:
    """Calls to one device, over one connection; close() ends it."""

    def __init__(self, device: RemoteDevice):
        self.device = device
        self.name = device.target.name
        self.connection = SshConnection(device.target)
        self.root: str | None = None  # the cache's absolute path, once the device said it
        self.code: str | None = None

    def python(self, arguments: list[str], env: tuple[str, ...] = ()) -> str:
        """A remote command running the device's Python in place of the login shell, so
        that its parent is sshd itself (a session then leads its own process group)."""
        return "exec " + shlex.join([*(["env", *env] if env else []), self.device.python, *arguments])

    def session_command(self, module: str, *arguments: str) -> str:
        """`python -m module` from the shipped code."""
        return self.python(["-u", "-m", module, *arguments], (f"PYTHONPATH={self.code}", *SESSION_ENV))

    def _store(self, operation: str, *arguments: str, data: bytes = b"", timeout_s: float = 60.0) -> Store:
        command = self.python(["-c", STORE_SOURCE, operation, self.root or self.device.workdir, *arguments])
        answer = self._last_line(self.connection.run(command, data, timeout_s))
        reply = parse(answer, Store, self.name)
        if reply.error is not None:
            raise DeviceFault(f"device {self.name}: its cache: {one_line(reply.error)}", "setup", False)
        return reply

    def _last_line(self, output: bytes) -> bytes:
        """The answer is the last line: a login shell's rc files may print before it."""
        lines = [line for line in output.splitlines() if line.strip()]
        if not lines or len(lines[-1]) > MAX_REPLY_BYTES:
            raise DeviceFault(f"device {self.name}: no answer from its Python", "bad-reply", False)
        return lines[-1]

    def ship(self, entries: list[Entry]) -> list[Entry]:
        """Send the entries the device's cache lacks (or holds damaged); returns those sent."""
        unique = list({entry.id: entry for entry in entries}.values())
        request = json.dumps({"entries": {entry.id: entry.manifest() for entry in unique}}).encode()
        have = self._store("have", data=request, timeout_s=self.device.round_timeout_s)
        self.root = have.root
        missing = [entry for entry in unique if entry.id not in (have.present or [])]
        if missing:
            self._send(missing)
        return missing

    def _send(self, entries: list[Entry]) -> None:
        header = json.dumps({"entries": [entry.header() for entry in entries]}).encode() + b"\n"
        size = sum(entry.size for entry in entries)
        command = self.python(["-c", STORE_SOURCE, "receive", self.root])
        with tempfile.TemporaryFile() as stderr:
            process = self.connection.spawn(command, stderr)
            writer = threading.Thread(target=_write_all, args=(process, header, entries), daemon=True)
            writer.start()
            limit = self.device.round_timeout_s + size / LINK_BYTES_PER_S
            try:  # the answer is one short line: it cannot fill the pipe before the end
                process.wait(timeout=limit)
            except BaseException as err:  # a stalled link, or Ctrl-C: the receiver keeps nothing
                process.kill()
                process.wait()
                if not isinstance(err, subprocess.TimeoutExpired):
                    raise
                raise DeviceFault(
                    f"device {self.name}: the transfer of {size / 1e6:.1f} MB did not end within {limit:g} s",
                    "link-down",
                    True,
                ) from None
            output = process.stdout.read()
            writer.join(timeout=10)
            if process.returncode != 0:
                stderr.seek(0)
                raise describe_failure(self.device.target, process.returncode, stderr.read().decode(errors="replace"))
        received = parse(self._last_line(output), Store, self.name).received or {}
        for entry in entries:  # the device's own hashes of what it wrote, checked here too
            if received.get(entry.id) != {f.path: f.sha256 for f in entry.files}:
                raise DeviceFault(f"device {self.name}: {entry.files[0].path} arrived damaged", "link-down", True)

    def prepare(self, entries: list[Entry]) -> list[Entry]:
        """The measuring code and `entries` in the device's cache; returns what was sent."""
        harness = harness_entry()
        sent = self.ship([harness, *entries])
        self.code = f"{self.root}/entries/{harness.id}/code"
        return sent

    def info(self) -> Info:
        """What the device is and can run (bench/device_info.py there)."""
        if self.code is None:
            self.prepare([])
        command = self.session_command("bench.device_info", self.root)
        return parse(
            self._last_line(self.connection.run(command, timeout_s=self.device.round_timeout_s)), Info, self.name
        )

    def kill_session(self, pid: int) -> None:
        """End a session this host abandoned (stopped, hung), if the device can still be reached."""
        try:
            self._store("kill", str(pid), timeout_s=10)
        except DeviceFault as fault:
            log.debug("device %s: could not end session %d: %s", self.name, pid, fault)

    def close(self) -> None:
        self.connection.close()


def _write_all(process, header: bytes, entries: list[Entry]) -> None:
    try:
        process.stdin.write(header)
        for entry in entries:
            for shipped in entry.files:
                if isinstance(shipped.source, bytes):
                    process.stdin.write(shipped.source)
                    continue
                with shipped.source.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        process.stdin.write(block)
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the receiver ended early: its answer says why
