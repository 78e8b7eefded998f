import numpy as np
import pytest

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.data import load_npz
from edgeopt.core.errors import DataError

INPUTS = (TensorSpec("image", ("batch", 1, 8, 8), "float32"),)
GOOD = np.zeros((4, 1, 8, 8), np.float32)


def test_npz_real_digits_load_with_labels(factory_dir):
    dataset = load_npz(factory_dir / "digits.npz", INPUTS)
    assert len(dataset.test) == 64
    assert dataset.test.labels.dtype == np.int64
    assert dataset.probe()["image"].shape == (8, 1, 8, 8)


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"img": GOOD}, "no array for input(s) image; it holds img"),
        ({"image": GOOD, "extra": GOOD}, "array(s) extra match no model input"),
        ({"image": np.zeros((4, 8, 8), np.float32)}, "expected 4 dims"),
        ({"image": np.zeros((4, 1, 8, 9), np.float32)}, "dim 3 is 9, the model expects 8"),
        ({"image": np.zeros((0, 1, 8, 8), np.float32)}, "holds zero samples"),
        ({"image": np.full((4, 1, 8, 8), np.nan, np.float32)}, "NaN or infinite"),
        ({"image": np.zeros((4, 1, 8, 8), np.complex64)}, "is complex64, the model expects float32"),
        ({"image": GOOD, "labels": np.zeros(3, np.int64)}, "'labels' must be 4 integer class indices"),
        ({"image": GOOD, "labels": np.zeros(4, np.float32)}, "'labels' must be 4 integer class indices"),
    ],
)
def test_npz_that_does_not_fit_the_model_is_refused(tmp_path, arrays, expected):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as caught:
        load_npz(path, INPUTS)
    assert expected in str(caught.value)


def test_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=np.array([object()], dtype=object))
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz(path, INPUTS)


def test_npz_truncated_file_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=GOOD)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_npz(path, INPUTS)
