"""Image preprocessing as a recipe states it: resize, centre crop, scale to [0, 1],
mean/std normalisation, NCHW or NHWC layout. Pillow decodes and resizes (what
torchvision's transforms do too), so a folder of JPEGs and a tensor pipeline agree."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resize: PositiveInt = Field(256, description="the shorter side is resized to this many pixels")
    crop: PositiveInt = Field(224, description="then a centre crop of crop × crop pixels")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="per-channel mean, after scaling to [0, 1]")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="per-channel standard deviation")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="the model input's layout")


def resize_shorter(image, size: int):
    """A PIL image with its shorter side resized to `size` (bilinear, antialiased)."""
    from PIL import Image

    width, height = image.size
    scale = size / min(width, height)
    return image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)


def centre_crop(image, size: int):
    width, height = image.size
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def normalise(pixels: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """HWC uint8 RGB → float32 normalised, in the recipe's layout (no batch axis)."""
    scaled = pixels.astype(np.float32) / 255.0
    normalised = (scaled - np.float32(preprocess.mean)) / np.float32(preprocess.std)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1) if preprocess.layout == "NCHW" else normalised)


def preprocess_image(image, preprocess: Preprocess) -> np.ndarray:
    """A PIL image → one model input sample."""
    image = centre_crop(resize_shorter(image.convert("RGB"), preprocess.resize), preprocess.crop)
    return normalise(np.asarray(image), preprocess)
