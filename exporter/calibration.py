"""Calibration samples for static quantization, as ONNX Runtime's CalibrationDataReader.

Samples are drawn from a split by a seeded permutation and fed a batch at a time,
cast to the model's input dtypes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.data import Split
from edgeopt.core.errors import DataError


class SplitReader(CalibrationDataReader):
    def __init__(self, split: Split, inputs: tuple[TensorSpec, ...], samples: int, seed: int, batch_size: int = 16):
        if len(split) == 0:
            raise DataError("calibration data holds zero samples")
        missing = [spec.name for spec in inputs if spec.name not in split.inputs]
        if missing:
            raise DataError(f"calibration data has no array for input(s) {', '.join(missing)}")
        fixed = inputs[0].shape[0] if inputs[0].shape else None
        count = min(samples, len(split))
        self._batch = fixed if isinstance(fixed, int) else min(batch_size, count)
        if self._batch > count:
            raise DataError(f"calibration data holds {count} samples; the model takes batches of {self._batch}")
        # whole batches only: ORT's histogram calibrators cannot stack a short last batch
        count -= count % self._batch
        self._order = np.random.default_rng(seed).permutation(len(split))[:count]
        self._split = split
        self._inputs = inputs
        self._position = 0

    @property
    def samples(self) -> int:
        return len(self._order)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._order):
            return None
        index = np.sort(self._order[self._position : self._position + self._batch])
        self._position += self._batch
        return {spec.name: self._split.inputs[spec.name][index].astype(spec.dtype, copy=False) for spec in self._inputs}

    def rewind(self) -> None:
        self._position = 0


# TensorRT's entropy calibration: a 2048-bin histogram searched for the 128-level range
# that loses least information. ORT's defaults (128 bins into 128 levels) leave one
# candidate, the full range, which makes entropy identical to minmax.
ENTROPY_BINS, ENTROPY_LEVELS = 2048, 128


def compute_ranges(model: Path, reader: SplitReader, method, symmetric: bool, percentile: float, cache: Path):
    """Calibrate activation ranges on `model`, save them where quantize_static reads its
    calibration cache and return them (ONNX Runtime's TensorsData)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    extra = {"symmetric": symmetric}
    if method == CalibrationMethod.Entropy:
        extra |= {"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_LEVELS}
    elif method == CalibrationMethod.Percentile:
        extra |= {"num_bins": ENTROPY_BINS, "percentile": percentile}
    calibrator = create_calibrator(
        model,
        augmented_model_path=str(cache.with_name("augmented.onnx")),
        calibrate_method=method,
        extra_options=extra,
    )
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    save_tensors_data(ranges, cache)
    return ranges
