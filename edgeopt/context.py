"""What a stage gets besides its input artifact and options."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.core.targets import Target
from edgeopt.data import Split


@dataclass(frozen=True)
class StageContext:
    """out_dir: where the stage writes its files (renamed into place by the store).
    probe: held-out real samples, one array per model input, to verify the output on.
    calibration: real samples for stages that calibrate (never the held-out test split
    where a train split exists).
    evaluation: samples on which an accuracy budget is checked (validation, never test
    where a validation split exists).
    modules: ONNX node name → the PyTorch module it came from, where the export said.
    evaluation_on: which split evaluation is, for the record.
    cache_dir: where stages keep caches across runs (TensorRT timing caches); None keeps none.
    target: the run's target, for stages whose output depends on the machine it runs on
    (INT8); a stage's own `target` option overrides it, and `auto` is this host.
    """

    out_dir: Path
    probe: dict[str, np.ndarray]
    verbose: bool = False
    calibration: Split | None = None
    evaluation: Split | None = None
    modules: dict[str, str] = dataclasses.field(default_factory=dict)
    evaluation_on: str = "test"
    cache_dir: Path | None = None
    target: Target = Target.AUTO


def probe_fingerprint(probe: dict[str, np.ndarray]) -> str:
    """Part of every cache key: a stage verified on other samples is another result."""
    from edgeopt.image_folder import ImageArray

    digest = hashlib.sha256()
    for name in sorted(probe):
        if isinstance(probe[name], ImageArray):  # streamed: hash the files, not the decoded pixels
            digest.update(f"{name}:{probe[name].fingerprint}".encode())
            continue
        array = np.ascontiguousarray(probe[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
