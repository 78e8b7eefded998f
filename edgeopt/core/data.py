"""Sample data for a model: labelled splits from a built-in dataset or an .npz file.

An .npz holds one array per model input, named after it, samples along the first
axis, and optionally `labels` (class indices) for top-1 accuracy.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.errors import DataError

LABELS = "labels"


@dataclass(frozen=True)
class Split:
    """queries: the first `queries` samples are retrieval queries and the rest documents
    (text for embedding models); their outputs are scored by retrieval agreement."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    queries: int = 0

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: array[start:stop] for name, array in self.inputs.items()}


@dataclass(frozen=True)
class Dataset:
    """train is for built-in models that train themselves; validation is where choices
    (an accuracy budget) are checked, so test stays held out for the report."""

    name: str
    test: Split
    train: Split | None = None
    validation: Split | None = None

    def probe(self, count: int = 8) -> dict[str, np.ndarray]:
        """Held-out samples that stages verify their output on."""
        return self.test.take(0, min(count, len(self.test)))


def load_npz(path: Path, inputs: tuple[TensorSpec, ...]) -> Dataset:
    """Load and check an .npz against the model's inputs; nothing in it is unpickled."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from err
    labels = arrays.pop(LABELS, None)
    split = Split(check_arrays(path, arrays, inputs), _check_labels(path, labels, arrays))
    return Dataset(name=path.stem, test=split)


def check_arrays(
    source: Path | str, arrays: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...]
) -> dict[str, np.ndarray]:
    """Arrays named, shaped and typed as the model's inputs, with equal sample counts."""
    expected = [spec.name for spec in inputs]
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise DataError(
            f"{source}: no array for input(s) {', '.join(missing)}; it holds {', '.join(arrays) or 'nothing'}"
        )
    extra = [name for name in arrays if name not in expected]
    if extra:
        raise DataError(
            f"{source}: array(s) {', '.join(extra)} match no model input (inputs: {', '.join(expected)}; labels go in '{LABELS}')"
        )
    checked: dict[str, np.ndarray] = {}
    counts = set()
    for spec in inputs:
        array = arrays[spec.name]
        if array.ndim != len(spec.shape):
            raise DataError(
                f"{source}: '{spec.name}' has shape {list(array.shape)}, expected {len(spec.shape)} dims like {list(spec.shape)}"
            )
        for axis, (size, dim) in enumerate(zip(array.shape[1:], spec.shape[1:], strict=True), start=1):
            if isinstance(dim, int) and size != dim:
                raise DataError(f"{source}: '{spec.name}' dim {axis} is {size}, the model expects {dim}")
        if len(array) == 0:
            raise DataError(f"{source}: '{spec.name}' holds zero samples")
        target = np.dtype(spec.dtype)
        if not np.can_cast(array.dtype, target, casting="same_kind"):
            raise DataError(f"{source}: '{spec.name}' is {array.dtype}, the model expects {target}")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise DataError(f"{source}: '{spec.name}' holds NaN or infinite values")
        counts.add(len(array))
        checked[spec.name] = array.astype(target, copy=False)
    if len(counts) > 1:
        raise DataError(f"{source}: inputs hold different sample counts {sorted(counts)}")
    return checked


def _check_labels(source: Path, labels: np.ndarray | None, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    if labels is None:
        return None
    count = len(next(iter(arrays.values())))
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{source}: '{LABELS}' must be {count} integer class indices, got {labels.dtype} {list(labels.shape)}"
        )
    return labels.astype(np.int64)
