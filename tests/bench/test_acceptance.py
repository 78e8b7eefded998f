"""The closing summary of `make bench` on two real runs of a small recipe, one with its
variants reversed; the bars' verdicts on edited copies where a bar is meant to miss."""

import copy
import json
import shutil

import numpy as np
import pytest

from bench.acceptance import check, machine_line, main
from edgeopt.cli import main as edgeopt
from tests.conftest import FACTORIES, MLP_RECIPE

TWIN = "  onnx-again: {stage: export_onnx, options: {exporter: torchscript}}\n"
BENCH = "bench: {batch_sizes: [1, 4], threads: [1], warmup_runs: 1, min_runs: 3, min_duration_s: 0"
RECIPE = MLP_RECIPE.replace("runtimes:", TWIN + "runtimes:").replace(
    BENCH, BENCH + ", rounds: 2, harness_overhead: true"
)
REORDERED = RECIPE.replace(TWIN, "").replace("  onnx: {", TWIN + "  onnx: {")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("acceptance")
    shutil.copy(FACTORIES, folder / "factories.py")
    np.savez(folder / "digits.npz", image=digits.test.inputs["image"][:64], labels=digits.test.labels[:64])
    assert RECIPE != REORDERED and "harness_overhead: true" in RECIPE
    for name, text in (("run", RECIPE), ("reordered", REORDERED)):
        (folder / f"{name}.yaml").write_text(text)
        assert edgeopt(["run", str(folder / f"{name}.yaml"), "--output", str(folder / name)]) == 0
    return folder / "run", folder / "reordered"


def _first(runs):
    return json.loads((runs[0] / "results.json").read_text()), (runs[0] / "report.html").read_text()


def test_the_summary_states_every_bar_from_the_runs(runs, capsys):
    code = main([str(path) for path in runs])
    lines = capsys.readouterr().out.splitlines()
    verdicts = [line.split()[0] for line in lines[1:5]]
    assert code == (0 if verdicts == ["ok"] * 4 else 1)
    assert [line.split(None, 1)[1].split(":")[0] for line in lines[1:5]] == [
        "harness overhead",
        "same artifact measured twice",
        "reordered variants",
        "report.html",
    ]
    assert verdicts[3] == "ok"  # the small run's report has its Pareto plot and recommendations
    assert lines[5].startswith("  the machine itself: a fixed workload ran up to")
    assert lines[-1].startswith(f"{verdicts.count('ok')} of 4 bars hold")


def test_each_bar_misses_where_its_figure_does(runs):
    run, html = _first(runs)
    calm = copy.deepcopy(run)
    calm["summary"].update(harness_overhead_fastest=1.01, max_twice_difference=0.01)
    assert [holds for holds, _ in check(calm, calm, html)] == [True, True, True, True]

    noisy = copy.deepcopy(calm)
    noisy["summary"].update(harness_overhead_fastest=1.05, max_twice_difference=0.08)
    assert [holds for holds, _ in check(noisy, noisy, html)] == [False, False, True, True]

    moved = copy.deepcopy(calm)
    row = next(r for r in moved["rows"] if r["variant"] == "onnx" and r["batch"] == 4)
    row["latency"]["p50_ms"] *= 1.10  # against its twin, the other row measured with it: 4.8% off their median
    holds, line = check(calm, moved, html)[2]
    assert not holds and "4.8%" in line and "on ort-cpu, batch 4 × 1 threads" in line

    machine = copy.deepcopy(calm)  # a faster machine in the second run, which eager PyTorch follows further
    for row in machine["rows"]:
        row["latency"]["p50_ms"] *= 0.7 if row["runtime"] == "torch-cpu" else 0.8
    holds, line = check(calm, machine, html)[2]
    assert holds and "0.0% at most" in line and "rows moved -20.0% typically" in line
    assert "model on torch-cpu, alone on its runtime, -30.0% and -30.0%" in line

    bare = html.replace('id="pareto"', 'id="elsewhere"')
    assert check(calm, calm, bare)[3][0] is False


def test_the_machine_line_says_when_the_machine_is_too_unsteady_for_the_spread_bars(runs):
    run, _ = _first(runs)
    steady, unsteady = copy.deepcopy(run), copy.deepcopy(run)
    steady["summary"]["machine_steadiness"].update(spread=0.004, variation=0.08)
    unsteady["summary"]["machine_steadiness"].update(spread=0.052, variation=1.4)
    assert machine_line(steady, steady).endswith(
        "up to 8% slower in its slow spells than in its fast ones, its even and odd rounds 0.4% and 0.4% apart in the two runs"
    )
    line = machine_line(steady, unsteady)
    assert "up to 140% slower" in line and "0.4% and 5.2% apart" in line
    assert line.endswith("past 10%, the two spread bars need a steadier machine")
    older = copy.deepcopy(run)
    del older["summary"]["machine_steadiness"]  # a run made before the probe existed
    assert "not measured in both runs" in machine_line(run, older)


def test_a_missing_run_is_one_line_and_exit_2(runs, tmp_path, capsys):
    assert main([str(runs[0]), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere: no results.json there" in err[0]
    assert main([str(runs[0])]) == 2
