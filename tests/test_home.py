"""A run writes nothing outside its output folder: with HOME pointed at an empty folder
(and no XDG or library variables sending caches elsewhere), HOME stays empty, for a
recipe that runs to its report (OpenVINO and NNCF included, whose telemetry would write
~/intel) and for one rejected on its first line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# variables that move a library's caches out of HOME (unset, every default lands there),
# the telemetry switch the suite's conftest sets, and those under which OpenVINO's and
# NNCF's telemetry stays off by itself, as in CI (edgeopt must turn them off anywhere)
_UNSET = (
    "MPLCONFIGDIR",
    "TORCH_HOME",
    "HF_HOME",
    "TRITON_CACHE_DIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "ORT_DISABLE_TELEMETRY",
    "CI",
    "TF_BUILD",
    "JENKINS_URL",
    "NNCF_CI",
    "NNCF_DEV",
)


def _files(folder) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if "__pycache__" not in path.parts)


@pytest.mark.parametrize("recipe", ["good", "rejected"])
def test_run_leaves_home_empty(recipe, mlp_recipe, tmp_path):
    folder = mlp_recipe.parent
    text = (
        mlp_recipe.read_text()
        .replace(
            "variants:\n",
            "variants:\n  simple: {stage: simplify, from: onnx}\n  int8: {stage: quantize_int8, from: simple}\n"
            "  nncf: {stage: quantize_nncf, from: onnx, options: {samples: 16, tolerance: {atol: 9, rtol: 9, min_cosine: 0}}}\n",
        )
        .replace("runtimes: [torch-cpu, ort-cpu]", "runtimes: [torch-cpu, ort-cpu, ov-cpu]")
    )
    if recipe == "rejected":
        text = text.replace("outputs:", "outptus:")
    mlp_recipe.write_text(text)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k not in _UNSET}
    env["HOME"] = str(home)
    before = _files(folder)
    done = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "run", "recipe.yaml", "--output", "out"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == (0 if recipe == "good" else 2), done.stderr
    assert _files(home) == []
    written = sorted(set(_files(folder)) - set(before))
    assert all(path == "out" or path.startswith("out/") for path in written), written
    if recipe == "good":
        assert (folder / "out" / "report.html").is_file()  # the plots were drawn
        rows = json.loads((folder / "out" / "results.json").read_text())["rows"]
        assert {("nncf", "ov-cpu"), ("int8", "ov-cpu")} <= {(row["variant"], row["runtime"]) for row in rows}
