"""What a stage gets besides its input artifact and options."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.data import Split


@dataclass(frozen=True)
class StageContext:
    """out_dir: where the stage writes its files (renamed into place by the store).
    probe: held-out real samples, one array per model input, to verify the output on.
    calibration: real samples for stages that calibrate (never the held-out test split
    where a train split exists).
    evaluation: labelled samples on which an accuracy budget is checked.
    modules: ONNX node name → the PyTorch module it came from, where the export said.
    """

    out_dir: Path
    probe: dict[str, np.ndarray]
    verbose: bool = False
    calibration: Split | None = None
    evaluation: Split | None = None
    modules: dict[str, str] = dataclasses.field(default_factory=dict)


def probe_fingerprint(probe: dict[str, np.ndarray]) -> str:
    """Part of every cache key: a stage verified on other samples is another result."""
    digest = hashlib.sha256()
    for name in sorted(probe):
        array = np.ascontiguousarray(probe[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
