"""The runtime interface: `probe() -> Availability` and `load(...) -> Session`.

Sessions never time themselves; `bench.latency` owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from edgeopt.artifact import TensorSpec

__all__ = ["Availability", "Session", "SessionOptions", "TensorSpec"]


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


@dataclass(frozen=True)
class SessionOptions:
    """threads: intra-op threads (None: the runtime's default).
    optimize: False runs the graph as written (ONNX Runtime: no fusions, so QDQ pairs are
    evaluated in float, which simulates INT8 exactly rather than with this CPU's kernels)."""

    threads: int | None = None
    verbose: bool = False
    optimize: bool = True


class Session(Protocol):
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns host arrays the caller owns."""
        ...

    def sync(self) -> None:
        """Wait for the device to finish (a no-op on CPU)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class SessionBase:
    """Context-manager plumbing shared by the sessions."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close()
