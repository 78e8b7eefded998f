"""The runtime interface: `probe() -> Availability` and `load(...) -> Session`.

Sessions never time themselves; `bench.latency` owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from edgeopt.core.artifact import TensorSpec

__all__ = ["Availability", "DeviceEvent", "DeviceTimed", "Session", "SessionOptions", "TensorSpec"]


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
    half: bool = False  # torch: run the module in FP16 (inputs cast in, outputs cast back to FP32)
    # OpenVINO: compute float layers in BF16; a session the CPU cannot honour is refused
    bf16: bool = False
    # ONNX Runtime on x86: integer ops with s8 weights run as u8×u8, which cannot saturate
    # (exact, slower); what another machine's INT8 kernels compute
    exact_int8: bool = False
    # where a runtime keeps what it builds across sessions (ONNX Runtime's TensorRT engines
    # and timing caches); None: beside the artifact's store, or none for a bare model
    cache_dir: Path | None = None
    # min/opt/max shape per input with symbolic dims, for runtimes that build for a range
    # of shapes ahead of time (ONNX Runtime's TensorRT provider); None: its own choice
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None


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


class DeviceEvent(Protocol):
    def wait(self) -> None: ...

    def done(self) -> bool:
        """Whether the device has reached the event."""
        ...

    def ms_since(self, start: DeviceEvent) -> float: ...


@runtime_checkable
class DeviceTimed(Protocol):
    """What GPU sessions add so the harness can time the device alone: `prepare` puts the
    inputs on the device, `enqueue` launches the model without waiting, `record` records
    a CUDA event on the session's stream, and `hold` makes the stream wait, before
    anything queued after it, until `release` (which takes no lock and may be called
    from another thread, or twice). Copies and the host's enqueue stay out of the
    device time."""

    def prepare(self, feeds: dict[str, np.ndarray]) -> None: ...

    def enqueue(self) -> None: ...

    def record(self) -> DeviceEvent: ...

    def hold(self) -> None: ...

    def release(self) -> None: ...


class SessionBase:
    """Context-manager plumbing shared by the sessions."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close()
