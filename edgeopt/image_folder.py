"""A folder of images as model input, decoded batch by batch as it is read, so a large
calibration or evaluation set never has to fit in memory.

Layout: images directly in the folder (unlabelled), or one subfolder per class with the
images inside (labels are the sorted subfolder names' indices, as torchvision's
ImageFolder does). Every file's header is read before any work starts, so a broken or
foreign file is one clear line up front, not a failure half-way through calibration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgeopt.core.artifact import TensorSpec
from edgeopt.core.data import Dataset, Split
from edgeopt.core.errors import DataError
from edgeopt.images import Preprocess, preprocess_image

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageArray:
    """Stands for a float32 array of preprocessed images: len, shape, dtype and indexing
    by slice or index array, with each access decoding only the images it returns."""

    def __init__(self, paths: list[Path], preprocess: Preprocess):
        self._paths = paths
        self._preprocess = preprocess
        crop = preprocess.crop
        sample = (3, crop, crop) if preprocess.layout == "NCHW" else (crop, crop, 3)
        self.shape = (len(paths), *sample)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index) -> np.ndarray:
        chosen = self._paths[index] if isinstance(index, slice) else [self._paths[i] for i in np.asarray(index)]
        batch = np.empty((len(chosen), *self.shape[1:]), np.float32)
        for position, path in enumerate(chosen):
            batch[position] = _decode(path, self._preprocess)
        return batch

    @property
    def fingerprint(self) -> str:
        """Identifies the samples without decoding them: file contents and preprocessing."""
        digest = hashlib.sha256(self._preprocess.model_dump_json().encode())
        for path in self._paths:
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def default_preprocess(spec: TensorSpec) -> Preprocess:
    """ImageNet-style preprocessing sized to the model: the crop is the input's fixed
    spatial size (224 where it is symbolic), resized first to crop × 256/224."""
    shape = spec.shape
    layout = "NHWC" if len(shape) == 4 and shape[3] == 3 and shape[1] != 3 else "NCHW"
    spatial = shape[2] if len(shape) == 4 and layout == "NCHW" else shape[1] if len(shape) == 4 else None
    crop = spatial if isinstance(spatial, int) else 224
    return Preprocess(resize=round(crop * 256 / 224), crop=crop, layout=layout)


def load_image_folder(folder: Path, preprocess: Preprocess | None, inputs: tuple[TensorSpec, ...]) -> Dataset:
    """Check the folder against the model's one image input; decode nothing yet.
    Without `preprocess`, the default for the model's input (default_preprocess)."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].dtype not in ("float32", "float16"):
        names = ", ".join(f"{spec.name} {list(spec.shape)} {spec.dtype}" for spec in inputs)
        raise DataError(f"{folder}: an image folder feeds one float image input [batch, …]; the model takes {names}")
    spec = inputs[0]
    preprocess = preprocess or default_preprocess(spec)
    expected = ImageArray([], preprocess).shape[1:]
    if any(isinstance(dim, int) and dim != size for size, dim in zip(expected, spec.shape[1:], strict=True)):
        raise DataError(
            f"{folder}: preprocessing gives {preprocess.layout} samples {list(expected)}, the model's "
            f"'{spec.name}' is {list(spec.shape)}: set preprocess.crop and preprocess.layout to match"
        )
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    paths, labels = _listing(folder)
    for path in paths:
        _check_header(path)
    split = Split({spec.name: ImageArray(paths, preprocess)}, labels)
    return Dataset(name=folder.name, test=split)


def _listing(folder: Path) -> tuple[list[Path], np.ndarray | None]:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    classes = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in SUFFIXES]
    if classes and loose:
        raise DataError(f"{folder}: holds both images and subfolders; put every image in its class subfolder, or none")
    if not classes:
        if not loose:
            raise DataError(f"{folder}: holds no images ({', '.join(SUFFIXES)})")
        return loose, None
    paths, labels = [], []
    for index, subfolder in enumerate(classes):
        images = sorted(
            p
            for p in subfolder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES
        )
        if not images:
            raise DataError(f"{subfolder}: class folder holds no images ({', '.join(SUFFIXES)})")
        paths += images
        labels += [index] * len(images)
    return paths, np.asarray(labels, np.int64)


def _check_header(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()  # reads the header and structure, decodes no pixels
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not a readable image ({err}); remove it or replace it") from err


def _decode(path: Path, preprocess: Preprocess) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return preprocess_image(image, preprocess)
    except (OSError, Image.DecompressionBombError) as err:  # truncated pixel data shows only when decoded
        raise DataError(f"{path}: cannot decode the image ({err})") from err
