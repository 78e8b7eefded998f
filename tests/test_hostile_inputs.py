"""Broken and hostile input, table-driven: each case must end in exit 2 with one line on
stderr naming the problem, no traceback, no code run from the file, nothing written or
changed outside the output folder, and nothing half-written inside it."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgeopt.cli import main

MARKER = "code-ran.txt"


class _Payload:
    """Unpickling this creates MARKER: proof that code from the file ran."""

    def __reduce__(self):
        return (open, (MARKER, "w"))


def _edit(folder: Path, old: str, new: str, name: str = "recipe.yaml") -> None:
    path = folder / name
    assert old in path.read_text(), old
    path.write_text(path.read_text().replace(old, new))


def _run(folder: Path) -> list[str]:
    return ["run", "recipe.yaml", "--output", "out"]


def _graph_model(nodes=None, inputs=None, opset=17, initializers=(), opsets=None) -> onnx.ModelProto:
    nodes = nodes or [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])], list(initializers)
    )
    opsets = opsets or (("", opset),)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, v) for domain, v in opsets])


def _short_weight() -> onnx.ModelProto:
    """A weight declared [64] whose raw data holds 32 floats."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [64], np.ones(64, np.float32).tobytes(), raw=True)
    weight.raw_data = np.ones(32, np.float32).tobytes()
    return _graph_model(nodes=[helper.make_node("Add", ["x", "w"], ["y"], name="add")], initializers=[weight])


def _onnx_run(folder: Path, model_bytes: bytes) -> list[str]:
    """A recipe whose source is `m.onnx`, fed the digits npz flattened to 64 features."""
    (folder / "m.onnx").write_bytes(model_bytes)
    images = np.load(folder / "digits.npz")["image"].reshape(-1, 64)
    np.savez(folder / "flat.npz", x=images)
    (folder / "onnx.yaml").write_text("name: o\nmodel: {onnx: m.onnx}\ndata: {npz: flat.npz}\n")
    return ["run", "onnx.yaml", "--output", "out"]


def _external(folder: Path, location: str) -> list[str]:
    """A model whose weight lives in external data at `location`."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [64], np.ones(64, np.float32).tobytes(), raw=True)
    model = _graph_model(nodes=[helper.make_node("Add", ["x", "w"], ["y"], name="add")], initializers=[weight])
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "256")):
        weight.external_data.add(key=key, value=value)
    return _onnx_run(folder, model.SerializeToString())


def _outside_secret(folder: Path) -> Path:
    secret = folder.parent / f"secret-{folder.name}.bin"
    secret.write_bytes(np.ones(64, np.float32).tobytes())
    return secret


def _symlinked(folder: Path) -> list[str]:
    os.symlink(_outside_secret(folder), folder / "w.bin")
    return _external(folder, "w.bin")


def _weights(folder: Path, save) -> list[str]:
    save(folder / "weights.pt")
    _edit(folder, "kwargs: {hidden: 16}", "kwargs: {hidden: 16}\n  weights: weights.pt")
    return _run(folder)


def _npz(folder: Path, **arrays) -> list[str]:
    (folder / "digits.npz").unlink()
    np.savez(folder / "digits.npz", **arrays)
    return _run(folder)


GOOD = np.zeros((4, 1, 8, 8), np.float32)


def _many_problems(folder: Path) -> list[str]:
    """A recipe with eight wrongly typed bench settings and ten misspelt model keys."""
    keys = ("batch_sizes", "threads", "warmup_runs", "min_runs", "min_duration_s", "rounds", "accuracy_batch_size")
    bench = ", ".join(f"{key}: x{index}" for index, key in enumerate((*keys, "stability_threshold")))
    model = ", ".join(f"bulitin_{index}: 1" for index in range(10))
    (folder / "many.yaml").write_text(f"name: m\nmodel: {{builtin: digits-cnn, {model}}}\nbench: {{{bench}}}\n")
    return ["run", "many.yaml", "--output", "out"]


class _Digits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, image):
        return self.linear(image.flatten(1))


@functools.cache
def _program() -> dict[str, bytes]:
    """A valid exported program's archive entries (exported once per session)."""
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(_Digits().eval(), (torch.zeros(2, 1, 8, 8),)), buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _exported(folder: Path, edit=None, key: str = "exported") -> list[str]:
    """A recipe whose source is `m.pt2`, its archive entries passed through `edit` first."""
    entries = dict(_program())
    prefix = next(iter(entries)).split("/")[0]
    if edit is not None:
        edit(entries, prefix)
    with zipfile.ZipFile(folder / "m.pt2", "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    inputs = "inputs: [{name: image, shape: [batch, 1, 8, 8]}]\n" if key == "torchscript" else ""
    (folder / "e.yaml").write_text(f"name: e\nmodel: {{{key}: m.pt2}}\n{inputs}data: {{npz: digits.npz}}\n")
    return ["run", "e.yaml", "--output", "out"]


def _opaque_constant(entries: dict[str, bytes], prefix: str) -> None:
    """A constant stored as a plain pickle: torch.export.load would pickle.loads it."""
    entries[f"{prefix}/data/constants/model_constants_config.json"] = json.dumps(
        {"config": {"c": {"path_name": "opaque_obj_0", "tensor_meta": None}}}
    ).encode()
    entries[f"{prefix}/data/constants/opaque_obj_0"] = pickle.dumps(_Payload())


def _pickled_weight(entries: dict[str, bytes], prefix: str) -> None:
    """A weight marked use_pickle: torch.export.load asks torch.load for a full unpickling."""
    name = f"{prefix}/data/weights/model_weights_config.json"
    config = json.loads(entries[name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    entries[name] = json.dumps(config).encode()
    buffer = io.BytesIO()
    torch.save({"w": _Payload()}, buffer)
    entries[f"{prefix}/data/weights/{first['path_name']}"] = buffer.getvalue()


def _pickled_sample_inputs(entries: dict[str, bytes], prefix: str) -> None:
    """Sample inputs that fail a weights-only load: torch retries them with a full unpickling."""
    buffer = io.BytesIO()
    torch.save(((_Payload(),), {}), buffer)
    entries[f"{prefix}/data/sample_inputs/model.pt"] = buffer.getvalue()


def _quantize(folder: Path, **arrays) -> list[str]:
    """Static INT8 of a small valid model, calibrated on `arrays`."""
    (folder / "m.onnx").write_bytes(_graph_model().SerializeToString())
    np.savez(folder / "cal.npz", **arrays)
    return ["quantize", "m.onnx", "--calibration", "cal.npz", "-o", "q.onnx"]


CASES = {
    # recipes
    "recipe: unknown key": (lambda f: (_edit(f, "outputs:", "outptus:"), _run(f))[1], "outptus: unknown key"),
    "recipe: wrong type": (
        lambda f: (_edit(f, "batch_sizes: [1, 4]", "batch_sizes: one"), _run(f))[1],
        "bench.batch_sizes: Input should be a valid list",
    ),
    "recipe: not YAML": (lambda f: (_edit(f, "name: mlp", "name: [mlp"), _run(f))[1], "not valid YAML at line 2"),
    "recipe: python tag": (
        lambda f: ((f / "recipe.yaml").write_text(f"!!python/object/apply:os.system ['touch {MARKER}']\n"), _run(f))[1],
        "not valid YAML",
    ),
    "recipe: a list": (
        lambda f: ((f / "recipe.yaml").write_text("- name\n"), _run(f))[1],
        "a recipe is a mapping of keys",
    ),
    "recipe: missing file": (lambda f: ["run", "absent.yaml"], "absent.yaml: recipe file not found"),
    "recipe: binary file": (
        lambda f: ((f / "recipe.yaml").write_bytes(b"\xff\xfe\x00\x01"), _run(f))[1],
        "not a text file",
    ),
    "recipe: variant cycle": (
        lambda f: (
            _edit(
                f,
                "onnx: {stage: export_onnx",
                "a: {stage: simplify, from: b}\n  b: {stage: simplify, from: a}\n  onnx: {stage: export_onnx",
            ),
            _run(f),
        )[1],
        "variants form a cycle",
    ),
    "recipe: unknown runtime": (
        lambda f: (_edit(f, "runtimes: [torch-cpu, ort-cpu]", "runtimes: [tflite]"), _run(f))[1],
        "runtime 'tflite' is not one of",
    ),
    "recipe: unknown stage": (
        lambda f: (_edit(f, "stage: export_onnx", "stage: export_tflite"), _run(f))[1],
        "stage 'export_tflite' is not one of",
    ),
    "recipe: stage on the wrong format": (
        lambda f: (
            _edit(f, "onnx: {stage: export_onnx", "half: {stage: convert_fp16}\n  onnx: {stage: export_onnx"),
            _run(f),
        )[1],
        "stage convert_fp16 takes a onnx model, but 'model' is torch",
    ),
    "recipe: missing data file": (lambda f: ((f / "digits.npz").unlink(), _run(f))[1], "data.npz: file not found"),
    "recipe: pickled model without trust": (
        lambda f: (
            torch.save(torch.nn.Linear(64, 10), f / "m.pt"),
            (f / "p.yaml").write_text(
                "name: p\nmodel: {pickled: m.pt}\ninputs: [{name: image, shape: [batch, 64]}]\ndata: {npz: digits.npz}\n"
            ),
            ["run", "p.yaml", "--output", "out"],
        )[2],
        "loading a pickled model runs code from the file",
    ),
    # factories
    "recipe: many problems": (_many_problems, "and 8 more"),
    "factory: module missing": (
        lambda f: (_edit(f, "factories:tiny_mlp", "nowhere:tiny_mlp"), _run(f))[1],
        "cannot import module nowhere",
    ),
    "factory: module fails on import": (
        lambda f: (
            (f / "broken.py").write_text("def tiny_mlp(:\n"),
            _edit(f, "factories:tiny_mlp", "broken:tiny_mlp"),
            _run(f),
        )[2],
        "importing module broken failed: SyntaxError",
    ),
    "factory: returns no module": (
        lambda f: (_edit(f, "factories:tiny_mlp", "factories:not_a_module"), _run(f))[1],
        "rejected its kwargs",
    ),
    "factory: bad kwargs": (
        lambda f: (_edit(f, "{hidden: 16}", "{hidden: 16, depth: 2}"), _run(f))[1],
        "rejected its kwargs",
    ),
    "factory: input shape does not fit": (
        lambda f: (_edit(f, "shape: [batch, 1, 8, 8]", "shape: [batch, 1, 8, 9]"), _run(f))[1],
        "dim 3 is 8, the model expects 9",
    ),
    # weights
    "weights: malicious pickle": (
        lambda f: _weights(f, lambda p: p.write_bytes(pickle.dumps({"w": _Payload()}))),
        "not a loadable state dict (only tensors are accepted)",
    ),
    "weights: malicious torch checkpoint": (
        lambda f: _weights(f, lambda p: torch.save({"w": _Payload()}, p)),
        "not a loadable state dict (only tensors are accepted)",
    ),
    "weights: a whole pickled module": (
        lambda f: _weights(f, lambda p: torch.save(torch.nn.Linear(64, 10), p)),
        "not a loadable state dict (only tensors are accepted)",
    ),
    "weights: truncated checkpoint": (
        lambda f: _weights(
            f, lambda p: (torch.save({"1.weight": torch.zeros(16, 64)}, p), p.write_bytes(p.read_bytes()[:200]))
        ),
        "not a loadable state dict",
    ),
    "weights: do not fit": (
        lambda f: _weights(f, lambda p: torch.save({"1.weight": torch.zeros(3, 3)}, p)),
        "does not fit factory 'factories:tiny_mlp'",
    ),
    # data
    "data: input missing": (lambda f: _npz(f, pixels=GOOD), "no array for input(s) image; it holds pixels"),
    "data: wrong dims": (lambda f: _npz(f, image=np.zeros((4, 8, 8), np.float32)), "expected 4 dims"),
    "data: NaN": (lambda f: _npz(f, image=np.full((4, 1, 8, 8), np.nan, np.float32)), "NaN or infinite"),
    "data: zero samples": (lambda f: _npz(f, image=np.zeros((0, 1, 8, 8), np.float32)), "holds zero samples"),
    "data: wrong dtype": (
        lambda f: _npz(f, image=GOOD.astype(np.complex64)),
        "is complex64, the model expects float32",
    ),
    "data: pickled objects": (lambda f: _npz(f, image=np.array([_Payload()], dtype=object)), "not a readable .npz"),
    "data: truncated": (
        lambda f: (_npz(f, image=GOOD), (f / "digits.npz").write_bytes((f / "digits.npz").read_bytes()[:90]), _run(f))[
            2
        ],
        "not a readable .npz",
    ),
    "data: bad labels": (
        lambda f: _npz(f, image=GOOD, labels=np.zeros(3, np.int64)),
        "'labels' must be 4 integer class indices",
    ),
    # calibration data
    "calibration: wrong input name": (
        lambda f: _quantize(f, image=np.ones((8, 64), np.float32)),
        "no array for input(s) x; it holds image",
    ),
    "calibration: wrong shape": (
        lambda f: _quantize(f, x=np.ones((8, 63), np.float32)),
        "'x' dim 1 is 63, the model expects 64",
    ),
    "calibration: infinite values": (lambda f: _quantize(f, x=np.full((8, 64), np.inf, np.float32)), "NaN or infinite"),
    "calibration: zero samples": (lambda f: _quantize(f, x=np.ones((0, 64), np.float32)), "holds zero samples"),
    "calibration: missing": (
        lambda f: (_quantize(f, x=np.ones((8, 64), np.float32)), ["quantize", "m.onnx", "-o", "q.onnx"])[1],
        "needs --calibration DATA.npz",
    ),
    # ONNX files
    "onnx: truncated": (
        lambda f: _onnx_run(f, _graph_model().SerializeToString()[:40]),
        "m.onnx: not a valid ONNX model",
    ),
    "onnx: garbage bytes": (lambda f: _onnx_run(f, b"\xff\x00" * 64), "m.onnx: not a valid ONNX model"),
    "onnx: empty file": (lambda f: _onnx_run(f, b""), "m.onnx: not a valid ONNX model"),
    "onnx: unknown op": (
        lambda f: _onnx_run(
            f, _graph_model(nodes=[helper.make_node("NoSuchOp", ["x"], ["y"], name="f")]).SerializeToString()
        ),
        "No Op registered for NoSuchOp",
    ),
    "onnx: unknown op of another domain": (
        lambda f: _onnx_run(
            f,
            _graph_model(
                nodes=[helper.make_node("NoSuchOp", ["x"], ["y"], name="f", domain="com.example")],
                opsets=(("", 17), ("com.example", 1)),
            ).SerializeToString(),
        ),
        "com.example:NoSuchOp",
    ),
    "onnx: tensor produced by nothing": (
        lambda f: _onnx_run(
            f, _graph_model(nodes=[helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]).SerializeToString()
        ),
        "tensor 'ghost', an input of node 'add' (Add), is produced by nothing",
    ),
    "onnx: initializer dims disagree with its data": (
        lambda f: _onnx_run(f, _short_weight().SerializeToString()),
        "initializer 'w' declares dims [64] (256 bytes) but its data holds 128 bytes",
    ),
    "onnx: simplify with external data climbing out": (
        lambda f: (_outside_secret(f), _external(f, f"../secret-{f.name}.bin"), ["simplify", "m.onnx", "-o", "s.onnx"])[
            2
        ],
        "outside the model's folder",
    ),
    "onnx: opset from the future": (
        lambda f: _onnx_run(f, _graph_model(opset=99).SerializeToString()),
        "m.onnx: opset 99 is not one this onnx knows",
    ),
    "onnx: cycle": (
        lambda f: _onnx_run(
            f,
            _graph_model(
                nodes=[
                    helper.make_node("Add", ["x", "b"], ["y"], name="a"),
                    helper.make_node("Relu", ["y"], ["b"], name="b"),
                ]
            ).SerializeToString(),
        ),
        "m.onnx: not a valid ONNX model",
    ),
    "onnx: zero-sized input dim": (
        lambda f: _onnx_run(
            f, _graph_model(inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 64])]).SerializeToString()
        ),
        "input 'x' declares dim 0 as 0",
    ),
    "onnx: external data climbs out": (
        lambda f: (_outside_secret(f), _external(f, f"../secret-{f.name}.bin"))[1],
        "points outside the model's folder",
    ),
    "onnx: external data absolute path": (
        lambda f: _external(f, str(_outside_secret(f))),
        "points outside the model's folder",
    ),
    "onnx: external data symlink leads out": (_symlinked, "points outside the model's folder"),
    "onnx: external data missing": (lambda f: _external(f, "w.bin"), "external data file 'w.bin' is missing"),
    "onnx: simplify a non-ONNX file": (
        lambda f: ["simplify", "digits.npz", "-o", "out.onnx"],
        "not an .onnx file, an .engine file or an artifact directory",
    ),
    # whole-model files
    "exported: pickled constant": (lambda f: _exported(f, _opaque_constant), "holds pickled Python objects"),
    "exported: AOTInductor code": (
        lambda f: _exported(f, lambda e, p: e.update({f"{p}/data/aotinductor/model/model.so": b"\x7fELF"})),
        "holds AOTInductor compiled code",
    ),
    "exported: pickled weight": (lambda f: _exported(f, _pickled_weight), "cannot load the exported program"),
    "exported: pickled sample inputs": (
        lambda f: _exported(f, _pickled_sample_inputs),
        "cannot load the exported program",
    ),
    "exported: given as TorchScript": (
        lambda f: _exported(f, key="torchscript"),
        "not a TorchScript archive (torch.jit.save); it is an exported program",
    ),
    "exported: not an archive": (
        lambda f: ((f / "junk.pt2").write_bytes(b"PK\x03\x04junk"), ["export", "junk.pt2", "-o", "j.onnx"])[1],
        "neither a TorchScript archive (torch.jit.save) nor an exported program",
    ),
    "export: a pickled module": (
        lambda f: (torch.save(torch.nn.Linear(64, 10), f / "m.pt"), ["export", "m.pt", "-o", "m.onnx"])[1],
        "a pickled module runs code when loaded",
    ),
    # output
    "output: inside a file": (lambda f: ["run", "recipe.yaml", "--output", "digits.npz/run"], "cannot write there"),
    "output: a folder": (
        lambda f: ["export", "factories:tiny_mlp", "-o", ".", "--input", "image:batch,1,8,8:float32"],
        "is a folder; give the file to write in it",
    ),
    "output: a file in the way": (
        lambda f: ["export", "factories:tiny_mlp", "-o", "digits.npz/m.onnx", "--input", "image:batch,1,8,8:float32"],
        "digits.npz is a file, not a folder",
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file outside out/ with its content hash (symlinks by target)."""
    files = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if relative == "out" or relative.startswith("out/") or "__pycache__" in relative:
            continue
        if path.is_symlink():
            files[relative] = f"-> {os.readlink(path)}"
        elif path.is_file():
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_hostile_cases_are_at_least_25():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_in_one_line(case, mlp_recipe, capsys, monkeypatch):
    folder = mlp_recipe.parent
    monkeypatch.chdir(folder)
    setup, expected = CASES[case]
    argv = setup(folder)
    before = _snapshot(folder)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: "), err
    assert expected in lines[0]
    assert len(lines[0].replace(str(folder.parent), "")) <= 340, lines[0]  # about 300, the run's paths aside
    assert _snapshot(folder) == before
    assert not (folder / MARKER).exists()
    out = folder / "out"
    if out.exists():
        assert all((d / "artifact.json").is_file() for d in out.iterdir() if d.is_dir())
        assert not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_trusted_pickled_model_runs_like_any_model(factory_dir, tmp_path, capsys):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.save(module, factory_dir / "m.pt")
    recipe = factory_dir / "p.yaml"
    recipe.write_text(
        "name: p\nmodel: {pickled: m.pt, trust_pickle: true}\n"
        "inputs: [{name: image, shape: [batch, 1, 8, 8]}]\noutputs: [logits]\ndata: {npz: digits.npz}\n"
        "variants: {onnx: {stage: export_onnx, options: {exporter: torchscript}}}\n"
        "bench: {batch_sizes: [2], threads: [1], warmup_runs: 0, min_runs: 2, min_duration_s: 0}\n"
    )
    assert main(["run", str(recipe), "--output", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    (factory_dir / "m.pt").write_bytes((factory_dir / "m.pt").read_bytes() + b"\0")
    recipe.write_text(recipe.read_text().replace("batch_sizes: [2]", "batch_sizes: [3]"))
    assert (
        main(["run", str(recipe), "--output", str(tmp_path / "out2")]) == 0
    )  # a changed file is re-read and re-trusted
