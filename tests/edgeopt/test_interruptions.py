"""Runs killed, interrupted, or refused writes by the kernel, in real subprocesses."""

from __future__ import annotations

import filecmp
import json
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

RECIPE_VARIANTS = """\
variants:
  onnx: {stage: export_onnx, options: {exporter: torchscript}}
  simplified: {stage: simplify, from: onnx}
  fp16: {stage: convert_fp16, from: simplified}
"""


def _recipe(mlp_recipe: Path) -> Path:
    text = mlp_recipe.read_text()
    start = text.index("variants:")
    end = text.index("runtimes:")
    mlp_recipe.write_text(text[:start] + RECIPE_VARIANTS + text[end:])
    return mlp_recipe


def _command(recipe: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgeopt.cli", "run", str(recipe), "--output", str(out)]


def _artifact_dirs(out: Path) -> dict[str, Path]:
    return {d.name: d for d in out.iterdir() if d.is_dir()}


def test_run_killed_at_random_points_resumes_to_byte_identical_artifacts(mlp_recipe, tmp_path):
    recipe = _recipe(mlp_recipe)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run(_command(recipe, reference), check=True, capture_output=True)

    rng = random.Random(7)
    for delay in sorted(rng.uniform(0.5, 9.0) for _ in range(5)):
        process = subprocess.Popen(_command(recipe, resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.kill()
        process.wait()
    finished = subprocess.run(_command(recipe, resumed), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr

    expected, actual = _artifact_dirs(reference), _artifact_dirs(resumed)
    assert sorted(actual) == sorted(expected) and len(expected) == 4
    for name, directory in expected.items():
        files = sorted(p.name for p in directory.iterdir())
        assert sorted(p.name for p in actual[name].iterdir()) == files
        _, mismatch, errors = filecmp.cmpfiles(directory, actual[name], files, shallow=False)
        assert not mismatch and not errors, (name, mismatch, errors)
    assert not [p for p in resumed.iterdir() if p.name.startswith(".")]
    shas = [json.loads((out / "results.json").read_text())["artifacts"] for out in (reference, resumed)]
    assert {k: a["sha256"] for k, a in shas[0].items()} == {k: a["sha256"] for k, a in shas[1].items()}


def test_ctrl_c_stops_with_a_line_on_how_to_resume(mlp_recipe, tmp_path):
    recipe = _recipe(mlp_recipe)
    out = tmp_path / "out"
    process = subprocess.Popen(
        _command(recipe, out),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=_default_sigint,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("[1/"):
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait() == 130
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == (
        "edgeopt: interrupted; finished artifacts are kept, run the same command again to resume"
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    assert subprocess.run(_command(recipe, out), capture_output=True).returncode == 0


def _default_sigint():
    """A shell runs background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    ignored: restore the default so the child turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _limit_file_size():
    """Files may not grow past 2 kB: the kernel refuses the write, as on a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_refused_writes_give_one_line_and_leave_nothing_half_written(mlp_recipe, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(_command(mlp_recipe, out), capture_output=True, text=True, preexec_fn=_limit_file_size)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith(f"edgeopt: error: {out}: cannot write there (")
    assert list(out.iterdir()) == []
