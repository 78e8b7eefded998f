"""Logging and progress for the command line: logs and bars on stderr, results on stdout.

Library code only logs; the CLI calls `configure` once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

QUIET, NORMAL, VERBOSE = -1, 0, 1
_NOISY_LIBRARIES = ("torch", "onnxscript", "onnx_ir", "onnxruntime", "ray")
_stderr = Console(stderr=True)


def configure(verbosity: int) -> None:
    level = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}[verbosity]
    root = logging.getLogger()
    root.handlers.clear()
    if _stderr.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=_stderr, show_time=False, show_path=False, show_level=verbosity == VERBOSE
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity == VERBOSE else "%(message)s")
        )
    if verbosity != VERBOSE:
        handler.addFilter(_not_from_libraries)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity == VERBOSE else logging.ERROR)
    _onnxruntime_native_log(verbosity)


def _onnxruntime_native_log(verbosity: int) -> None:
    """ONNX Runtime's native log goes straight to stderr. Our sessions set their own level
    (runtimes.ort), but the sessions ORT's own tools open (calibration, quantization) log
    on its default logger, at warning level: a line per initializer on older models."""
    if importlib.util.find_spec("onnxruntime") is None:
        return
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime's first import
    import onnxruntime

    onnxruntime.set_default_logger_severity(1 if verbosity == VERBOSE else 3)  # 1 info, 3 errors only


def _not_from_libraries(record: logging.LogRecord) -> bool:
    """onnxruntime's quantization tools log on the root logger itself (every edgeopt module
    has a named one); keep them below -v."""
    return record.name != "root"


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A transient bar on a terminal at the default verbosity; elsewhere a no-op."""
    if not _stderr.is_terminal or not logging.getLogger().isEnabledFor(logging.INFO):
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
