"""TorchScript archives and exported programs as model sources: told apart from pickles,
exported to ONNX, verified and benchmarked from a recipe and from `edgeopt export`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from edgeopt.cli import main
from edgeopt.core.artifact import ModelFile
from edgeopt.core.errors import ModelLoadError
from edgeopt.core.torch_files import exported_inputs, model_file_kind, read_model_file


class Digits(torch.nn.Module):
    """A small CNN over the 8×8 digits; its input is named `image`, as the data's array."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.linear = torch.nn.Linear(4 * 8 * 8, 10)

    def forward(self, image):
        return self.linear(torch.relu(self.conv(image)).flatten(1))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """The same trained-free module saved every way torch saves a model."""
    folder = tmp_path_factory.mktemp("model-files")
    torch.manual_seed(0)
    module = Digits().eval()
    example = torch.zeros(2, 1, 8, 8)
    torch.jit.save(torch.jit.script(module), folder / "scripted.pt")
    torch.jit.save(torch.jit.trace(module, example), folder / "traced.pt")
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), folder / "program.pt2")
    torch.save(module, folder / "pickled.pt")
    torch.save(module.state_dict(), folder / "weights.pt")
    (folder / "notes.txt").write_text("not a model")
    return folder, module


def test_model_file_kind_reads_the_archive_directory_only(model_files):
    folder, _ = model_files
    kinds = {name: model_file_kind(folder / name) for name in ("scripted.pt", "traced.pt", "program.pt2")}
    assert kinds == {"scripted.pt": "torchscript", "traced.pt": "torchscript", "program.pt2": "exported"}
    assert model_file_kind(folder / "pickled.pt") is model_file_kind(folder / "weights.pt") is ModelFile.PICKLE
    assert model_file_kind(folder / "notes.txt") is None


@pytest.mark.parametrize(
    ("name", "kind"), [("scripted.pt", ModelFile.TORCHSCRIPT), ("program.pt2", ModelFile.EXPORTED)]
)
def test_model_files_rebuild_the_module(model_files, name, kind):
    folder, module = model_files
    image = torch.randn(3, 1, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(read_model_file(folder / name, kind)(image), module(image))


def test_a_file_of_another_kind_is_named(model_files):
    folder, _ = model_files
    with pytest.raises(ModelLoadError, match=r"not a TorchScript archive .*; it is an exported program"):
        read_model_file(folder / "program.pt2", ModelFile.TORCHSCRIPT)
    with pytest.raises(ModelLoadError, match=r"not an exported program .*; it is a pickle"):
        read_model_file(folder / "weights.pt", ModelFile.EXPORTED)


def test_exported_program_declares_its_inputs(model_files):
    folder, _ = model_files
    (spec,) = exported_inputs(folder / "program.pt2")
    assert (spec.name, spec.shape, spec.dtype) == ("image", ("batch", 1, 8, 8), "float32")


@pytest.mark.parametrize(
    ("name", "given"), [("scripted.pt", ["--input", "image:batch,1,8,8:float32"]), ("program.pt2", [])]
)
def test_export_command_exports_verifies_and_the_result_benchmarks(model_files, tmp_path, capsys, name, given):
    folder, _ = model_files
    output = tmp_path / "onnx" / "m.onnx"
    assert main(["export", str(folder / name), "-o", str(output), *given]) == 0
    assert "verified against PyTorch" in capsys.readouterr().out
    onnx.checker.check_model(str(output))
    assert main(["bench", str(output), "--batch", "1", "--batch", "3", "--min-duration", "0.05"]) == 0
    assert "m.onnx" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "name", "inputs"),
    [
        ("torchscript", "traced.pt", "inputs: [{name: image, shape: [batch, 1, 8, 8]}]\n"),
        ("exported", "program.pt2", ""),
    ],
)
def test_recipe_runs_a_model_file_like_any_model(model_files, factory_dir, capsys, key, name, inputs):
    folder, _ = model_files
    recipe = factory_dir / "file.yaml"
    recipe.write_text(
        f"name: f\nmodel: {{{key}: {folder / name}}}\n{inputs}data: {{npz: digits.npz}}\n"
        "variants: {onnx: {stage: export_onnx}}\n"
        "bench: {batch_sizes: [1, 4], threads: [1], warmup_runs: 1, min_runs: 2, min_duration_s: 0, rounds: 2, "
        "server: null}\n"
    )
    out = factory_dir / "out"
    assert main(["run", str(recipe), "--output", str(out)]) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    assert {(row["variant"], row["runtime"]) for row in results["rows"]} == {
        ("model", "torch-cpu"),
        ("onnx", "ort-cpu"),
    }
    assert results["artifacts"]["onnx"]["verification"]["passed"]
    source = results["artifacts"]["model"]["source"]
    assert source["file_kind"] == key and source["file"] == str((folder / name).resolve())


def test_a_changed_model_file_is_not_rebuilt_from(model_files, tmp_path):
    import shutil

    from edgeopt.core.torch_artifact import load_module
    from edgeopt.sources import load_model_file

    folder, _ = model_files
    copy = tmp_path / "scripted.pt"
    shutil.copy(folder / "scripted.pt", copy)
    (tmp_path / "out").mkdir()
    inputs = exported_inputs(folder / "program.pt2")
    probe = {"image": np.zeros((2, 1, 8, 8), np.float32)}
    artifact = load_model_file(copy, ModelFile.TORCHSCRIPT, inputs, None, tmp_path / "out", probe)
    load_module(artifact)
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="changed since it was read"):
        load_module(artifact)
