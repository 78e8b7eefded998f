"""Lines from a pipe with a deadline and a size limit: what a worker, or a device over SSH,
answers. A blocking readline() would wait forever on a process that hangs; this waits at
most `timeout_s` and never holds more than `max_bytes` of a line.

Read a pipe only through this (Popen(..., bufsize=0)): a buffered file object can hold a
line that select() does not see.
"""

from __future__ import annotations

import os
import selectors
import time


class LineTimeout(TimeoutError):
    """No complete line arrived in time."""


class LineTooLong(ValueError):
    """A line grew past the limit."""


class LineReader:
    def __init__(self, fileobj, max_bytes: int):
        self._fd = fileobj.fileno()
        self._buffer = b""
        self._max = max_bytes
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def readline(self, timeout_s: float | None) -> bytes:
        """One line with its newline; b"" at end of file (what was left without a newline
        is dropped: a line cut short is no answer). LineTimeout when none came in time."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if len(self._buffer) > self._max:
                raise LineTooLong(f"a line longer than {self._max} bytes")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and (left <= 0 or not self._selector.select(left)):
                raise LineTimeout(f"no answer within {timeout_s:g} s")
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                self._buffer = b""
                return b""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        if len(line) > self._max:
            raise LineTooLong(f"a line longer than {self._max} bytes")
        return line + b"\n"

    def close(self) -> None:
        self._selector.close()
