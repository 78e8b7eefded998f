"""The host's side of a benchmark session on a device (bench/device_session.py there).

Every read has a deadline. The device says {"hb"} several times per heartbeat period, so
silence longer than the period means it stopped answering (a stopped or hung session, a
link gone quiet), told apart from a slow round, which keeps beating. The host pings
back, so the session ends itself when the host goes quiet. ssh's exit status alone says
nothing (255 is ssh's failure and a killed session alike): only a {"result"} is success.

However the session ends (a result, a fault, Ctrl-C), it is ended on the device too:
stdin is closed, and a session that does not go is killed through a second connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable

from bench.device_client import MAX_REPLY_BYTES, DeviceClient
from bench.device_replies import Message, Result, one_line, parse
from bench.lines import LineReader, LineTimeout, LineTooLong
from bench.ssh import DeviceFault, describe_failure

BEATS_PER_PERIOD = 4
MAX_NOISE_LINES = 1000  # what a login shell's rc files may print before the session speaks
EXIT_WAIT_S = 3.0
_KINDS = {"worker-hung": True, "worker-crash": True, "bad-input": False, "failed": False}


def run_session(
    client: DeviceClient, request: dict, jobs: int, on_progress: Callable[[int, int], None] | None
) -> Result:
    target, device = client.device.target, client.device
    beat_s = target.heartbeat_s / BEATS_PER_PERIOD
    arguments = (client.root, f"{beat_s:g}", f"{3 * target.heartbeat_s:g}")
    with tempfile.TemporaryFile() as stderr:
        process = client.connection.spawn(client.session_command("bench.device_session", *arguments), stderr)
        reader = LineReader(process.stdout, MAX_REPLY_BYTES)
        session = _Session(client, process, reader, stderr)
        try:
            session.pid = session.ready(target.connect_timeout_s + target.heartbeat_s)
            process.stdin.write((json.dumps({"measure": request}) + "\n").encode())
            os.set_blocking(process.stdin.fileno(), False)  # a ping never waits on a full pipe
            result = session.follow(beat_s, target.heartbeat_s, device.round_timeout_s * (jobs + 2), on_progress)
            session.finished = True
            return result
        finally:
            session.end()
            reader.close()


class _Session:
    def __init__(self, client: DeviceClient, process, reader: LineReader, stderr):
        self.client, self.process, self.reader, self.stderr = client, process, reader, stderr
        self.name = client.name
        self.pid: int | None = None
        self.finished = False

    def ready(self, timeout_s: float) -> int:
        for _ in range(MAX_NOISE_LINES):
            line = self._line(timeout_s, "did not start its session")
            if not line.lstrip().startswith(b"{"):
                continue  # a login shell's rc files talking
            message = parse(line, Message, self.name)
            if message.busy is not None:
                raise DeviceFault(
                    f"device {self.name}: busy: another edgeopt run is benchmarking it ({one_line(message.busy)}); "
                    "run again when it is done",
                    "busy",
                    False,
                )
            if message.ready is not None:
                return message.ready.pid
        raise DeviceFault(f"device {self.name}: its session never said it was ready", "bad-reply", False)

    def follow(self, beat_s: float, heartbeat_s: float, progress_s: float, on_progress) -> Result:
        last_message = last_progress = last_ping = time.monotonic()
        while True:
            try:
                line = self._line(beat_s, "")
            except LineTimeout:
                line = None
            now = time.monotonic()
            if line is not None:
                message = parse(line, Message, self.name)
                last_message = now
                if message.result is not None:
                    return message.result
                if message.error is not None:
                    raise DeviceFault(
                        f"device {self.name}: {one_line(message.error)}", message.kind, _KINDS[message.kind]
                    )
                if message.progress is not None:
                    last_progress = now
                    if on_progress is not None:
                        on_progress(message.progress, message.of or 0)
            if now - last_message > heartbeat_s:
                raise DeviceFault(
                    f"device {self.name}: stopped answering: no heartbeat for {heartbeat_s:g} s", "heartbeat", True
                )
            if now - last_progress > progress_s:
                raise DeviceFault(
                    f"device {self.name}: no round finished within {progress_s:g} s", "round-timeout", True
                )
            if now - last_ping >= beat_s:
                self._ping()
                last_ping = now

    def _line(self, timeout_s: float, what: str) -> bytes:
        try:
            line = self.reader.readline(timeout_s)
        except LineTooLong as err:
            raise DeviceFault(f"device {self.name}: an answer too long ({err})", "bad-reply", False) from err
        except LineTimeout:
            if what:
                raise DeviceFault(f"device {self.name}: {what} within {timeout_s:g} s", "heartbeat", True) from None
            raise
        if not line:
            raise self._ended()
        return line

    def _ping(self) -> None:
        # a full pipe: the device is not reading, which its heartbeat will show
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            self.process.stdin.write(b'{"ping":{}}\n')

    def _ended(self) -> DeviceFault:
        """The session's output ended without a result: why, from ssh and the session."""
        try:
            code = self.process.wait(timeout=EXIT_WAIT_S)
        except Exception:
            code = None
        self.stderr.seek(0)
        said = self.stderr.read().decode(errors="replace")
        fault = describe_failure(self.client.device.target, code if code is not None else 255, said)
        if fault.status != "failed":
            return fault
        lines = [line.strip() for line in said.splitlines() if line.strip()]
        # a shared connection's own messages ("Timeout, server not responding") go to its
        # master, not to this session: 255 without a word is a dropped link or a killed session
        why = one_line(lines[-1]) if lines else f"the link dropped or the session was killed there; ssh exited {code}"
        return DeviceFault(f"device {self.name}: its session ended without a result ({why})", "session-ended", True)

    def end(self) -> None:
        """Close stdin (the session ends itself); kill it through a second connection if it
        does not, or if it was abandoned; then the local ssh."""
        try:
            os.set_blocking(self.process.stdin.fileno(), True)
            self.process.stdin.close()
        except OSError:
            pass
        with contextlib.suppress(Exception):
            self.process.wait(timeout=EXIT_WAIT_S if self.finished else 0.5)
        if self.pid is not None and (not self.finished or self.process.poll() is None):
            self.client.kill_session(self.pid)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
