"""What a stage gets besides its input artifact and options."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.core.data import Split
from edgeopt.core.targets import Target


@dataclass(frozen=True)
class StageContext:
    """out_dir: where the stage writes its files (renamed into place by the store).
    probe: held-out real samples, one array per model input, to verify the output on.
    calibration: real samples for stages that calibrate (never the held-out test split
    where a train split exists).
    training: labelled samples for stages that train or fine-tune (the dataset's train
    split; a recipe's calibration source never becomes training data).
    evaluation: samples on which an accuracy budget is checked (validation, never test
    where a validation split exists).
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
    training: Split | None = None
    evaluation_on: str = "test"
    cache_dir: Path | None = None
    target: Target = Target.AUTO


def probe_fingerprint(probe: dict[str, np.ndarray]) -> str:
    """Part of every cache key: a stage verified on other samples is another result.
    Arrays decoded batch by batch (an image folder's) carry a `fingerprint` of their files."""
    digest = hashlib.sha256()
    for name in sorted(probe):
        streamed = getattr(probe[name], "fingerprint", None)
        if streamed is not None:  # hash the files, not the decoded pixels
            digest.update(f"{name}:{streamed}".encode())
            continue
        array = np.ascontiguousarray(probe[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
