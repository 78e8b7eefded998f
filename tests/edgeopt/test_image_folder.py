"""Folders of real photographs (crops of scikit-learn's two sample images) as model input."""

import json

import numpy as np
import pytest
import yaml

from edgeopt.cli import main
from edgeopt.core.artifact import TensorSpec
from edgeopt.core.context import probe_fingerprint
from edgeopt.core.errors import DataError
from edgeopt.image_folder import default_preprocess, load_image_folder
from edgeopt.images import Preprocess

RGB32 = (TensorSpec("image", ("batch", 3, 32, 32), "float32"),)
SMALL = Preprocess(resize=36, crop=32)


def write_crops(folder, per_photo: int = 3, seed: int = 0):
    """JPEG crops of each sample photograph, one class subfolder per photograph."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        (folder / name).mkdir(parents=True)
        for index in range(per_photo):
            top, left = rng.integers(0, 300), rng.integers(0, 500)
            Image.fromarray(photo[top : top + 96, left : left + 128]).save(folder / name / f"{index}.jpg")
    return folder


@pytest.fixture
def photos(tmp_path):
    return write_crops(tmp_path / "photos")


def test_class_subfolders_become_labels_and_images_decode_on_access(photos):
    split = load_image_folder(photos, SMALL, RGB32).test
    assert len(split) == 6 and split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    images = split.inputs["image"]
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.float32
    batch = images[np.array([4, 1])]
    np.testing.assert_array_equal(batch, images[:][[4, 1]])
    assert batch.shape == (2, 3, 32, 32) and np.isfinite(batch).all()
    # ImageNet normalisation of real photographs: centred near zero, unit-ish spread
    assert -2.2 < batch.min() < 0 < batch.max() < 2.7


def test_fingerprint_follows_the_files_not_the_decoding(photos):
    inputs = load_image_folder(photos, SMALL, RGB32).test.inputs
    before = probe_fingerprint(inputs)
    assert probe_fingerprint(load_image_folder(photos, SMALL, RGB32).test.inputs) == before
    (photos / "china" / "0.jpg").write_bytes((photos / "flower" / "0.jpg").read_bytes())
    assert probe_fingerprint(load_image_folder(photos, SMALL, RGB32).test.inputs) != before


def test_default_preprocessing_fits_the_models_input():
    assert default_preprocess(TensorSpec("x", ("batch", 3, 224, 224), "float32")) == Preprocess()
    nhwc = default_preprocess(TensorSpec("x", (1, 32, 32, 3), "float32"))
    assert (nhwc.layout, nhwc.crop, nhwc.resize) == ("NHWC", 32, 37)


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda d: None, "holds no images"),
        (lambda d: (d / "x.jpg").write_bytes(b"not a jpeg at all"), "x.jpg: not a readable image"),
        (lambda d: (write_crops(d), (d / "loose.png").write_bytes(b"")), "both images and subfolders"),
        (lambda d: (d / "empty-class").mkdir(), "class folder holds no images"),
    ],
)
def test_bad_folders_fail_before_any_work_in_one_line(tmp_path, arrange, message):
    folder = tmp_path / "images"
    folder.mkdir()
    arrange(folder)
    with pytest.raises(DataError, match=message):
        load_image_folder(folder, SMALL, RGB32)


def test_preprocessing_that_does_not_fit_the_model_is_named(photos):
    with pytest.raises(DataError, match=r"gives NCHW samples \[3, 224, 224\].*set preprocess.crop"):
        load_image_folder(photos, Preprocess(), RGB32)
    with pytest.raises(DataError, match="feeds one float image input"):
        load_image_folder(photos, SMALL, (TensorSpec("ids", ("batch", 16), "int64"),))


def test_recipe_calibrates_on_one_folder_and_checks_its_budget_on_another(tmp_path, factory_dir):
    """Streamed image folders from the recipe: calibration from its own folder; without a
    validation split the budget is checked on the test split, and the report says so."""
    write_crops(factory_dir / "photos", per_photo=4, seed=1)
    write_crops(factory_dir / "calibration", per_photo=8, seed=2)
    recipe = {
        "name": "rgb",
        "model": {"factory": "factories:tiny_rgb_cnn"},
        "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32]}],
        "data": {"images": "photos", "preprocess": {"resize": 36, "crop": 32}},
        "calibration": {"images": "calibration", "preprocess": {"resize": 36, "crop": 32}},
        "variants": {
            "onnx": {"stage": "export_onnx"},
            "int8": {
                "stage": "quantize_int8",
                "from": "onnx",
                "options": {"samples": 16, "budget": {"metric": "top1", "max_drop": 1.0}},
            },
        },
        "runtimes": ["ort-cpu"],
        "bench": {"min_runs": 2, "min_duration_s": 0, "warmup_runs": 0},
    }
    (factory_dir / "rgb.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    assert main(["run", str(factory_dir / "rgb.yaml"), "--output", str(out)]) == 0
    int8 = json.loads((out / "results.json").read_text())["artifacts"]["int8"]["facts"]
    assert int8["calibration_samples"] == 16
    assert int8["budget"]["checked_on"] == "test split (8 samples)"
    assert "on the test split (8 samples)" in (out / "report.md").read_text()


def test_quantize_command_calibrates_on_an_image_folder(photos, tmp_path):
    import torch

    from tests.factories import tiny_rgb_cnn

    model = tmp_path / "rgb.onnx"
    torch.onnx.export(
        tiny_rgb_cnn().eval(),
        (torch.zeros(1, 3, 32, 32),),
        str(model),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}},
        dynamo=False,
    )
    out = tmp_path / "rgb-int8.onnx"
    assert main(["quantize", str(model), "--calibration", str(photos), "-o", str(out)]) == 0
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
