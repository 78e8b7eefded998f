"""The first screen of every report, on the MiniLM-sized run: at the top of report.md and in
the terminal (`edgeopt report RUN`), with one line and exit 2 for a run it cannot read."""

import copy
import json

import pytest

from bench.report.markdown import render
from bench.report.summary import COLUMNS, recommendations, summary_rows
from bench.results import write_results
from edgeopt.cli import main
from tests.bench import minilm_sized


@pytest.fixture(scope="module")
def document() -> dict:
    return minilm_sized.document()


@pytest.fixture
def run(tmp_path, document):
    folder = tmp_path / "run"
    folder.mkdir()
    write_results(folder / "results.json", document)
    (folder / "report.html").write_text("<!DOCTYPE html>")
    return folder


def test_summary_rows_state_the_speedup_over_the_plain_export_on_each_target(document):
    rows = {cells[0].text: [cell.text for cell in cells] for cells in summary_rows(document["recommendations"])}
    assert list(rows) == [
        "local · ort-cpu · 1 thread",
        "local · ort-cpu · 2 threads",
        "local · torch-cpu · 1 thread",
        "local · torch-cpu · 2 threads",
    ]
    for pick in (p for p in document["recommendations"] if p["scenario"] == "single-stream"):
        label = f"local · {pick['runtime']} · {pick['threads']} thread{'s' if pick['threads'] > 1 else ''}"
        baseline = "onnx" if pick["runtime"] == "ort-cpu" else "model"
        assert pick["baseline"]["variant"] == baseline
        expected = pick["baseline"]["p90_ms"] / pick["pick"]["p90_ms"]
        assert rows[label][COLUMNS.index("vs plain export")] == f"{expected:.2f}× {baseline}"
        assert rows[label][COLUMNS.index("recommended")].startswith(pick["pick"]["variant"] + " (")
        assert rows[label][COLUMNS.index("runner-up")].startswith(pick["runner_up"]["variant"] + " (+")


def test_report_md_opens_with_the_summary(document):
    report = render(document)
    assert report.index("## Recommendation") < report.index("## Artifacts")
    assert "| " + " | ".join(COLUMNS) + " |" in report
    ort = next(line for line in report.splitlines() if line.startswith("| local · ort-cpu · 1 thread |"))
    pick = next(p for p in document["recommendations"] if (p["runtime"], p["threads"]) == ("ort-cpu", 1))
    assert f"| {pick['pick']['variant']} ({pick['pick']['precision']}) |" in ort
    assert "Not considered: int8-static, int8-static-matmul (over the accuracy budget)." in report


def test_edgeopt_report_prints_the_summary_in_the_terminal(run, document, capsys):
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The pick per target (device · runtime · threads) within a drop of 0.1 in overlap@10")
    for cells in summary_rows(document["recommendations"]):
        line = next(line for line in out.splitlines() if line.strip().startswith(cells[0].text + " ") and "×" in line)
        assert all(cells[i].text in line for i in range(7)), line  # the figures, never wrapped
    assert max(len(line) for line in out.splitlines()[1:-2]) <= 120
    assert f"report: {run / 'report.html'}" in out and "report.md" not in out


def test_edgeopt_report_works_out_the_picks_of_a_run_from_before_schema_7(run, document, capsys):
    older = copy.deepcopy(document)
    older["schema_version"] = 6
    older["recommendations"] = [{"device": "CPU", "text": "the old shape"}]
    (run / "results.json").write_text(json.dumps(older))
    assert recommendations(older) == document["recommendations"]
    assert main(["report", str(run / "results.json")]) == 0
    out = capsys.readouterr().out
    assert all(cells[3].text in out for cells in summary_rows(document["recommendations"]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no results.json there"),
        ("{", "not a readable results.json"),
        ('{"schema_version": 2}', "results schema 2, this edgeopt reads"),
        ('{"schema_version": 6, "rows": [{"variant": "onnx"}], "artifacts": {}, "max_accuracy_drop": 0.01}', "lacks"),
    ],
)
def test_edgeopt_report_says_in_one_line_what_it_cannot_read(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: ") and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
