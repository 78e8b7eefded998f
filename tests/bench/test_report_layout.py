"""report.html of a MiniLM-sized run (20 variants, 2 runtimes × 2 thread counts × 2 batch
sizes) in headless Chromium, checked as a person would look at it: no legend over a plot,
no two point labels on each other, no text touching other text, tables that sort on a
header click, hover boxes with the numbers, legend entries that hide an artifact, and no
console error or request. The screenshots are saved beside the run
(<pytest's basetemp>/minilm-sized0/run/report.png and report-first-screen.png)."""

import copy
import json
import re

import pytest

from bench.recommend import recommend
from bench.report.html import render_html, script_json
from bench.report.markdown import render
from bench.results import write_results
from tests.bench import minilm_sized
from tests.bench.chromium import Browser, chromium
from tests.bench.report_checks import (
    figures,
    hover_text,
    label_problems,
    legend_problems,
    sort_problems,
    text_problems,
    toggle_states,
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Browser(chromium(), tmp_path_factory.mktemp("chromium")) as browser:
        yield browser


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder: the MiniLM-sized results.json and the reports rendered from it."""
    folder = tmp_path_factory.mktemp("minilm-sized") / "run"
    folder.mkdir()
    document = minilm_sized.document()
    write_results(folder / "results.json", document)
    (folder / "report.md").write_text(render(document), encoding="utf-8")
    (folder / "report.html").write_text(render_html(document), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def page(browser, run):
    """The report drawn at 1400 × 900, screenshots taken before any interaction."""
    page = browser.page(1400, 900)
    page.open(run / "report.html")
    page.wait_for("document.body.dataset.ready === '1'", timeout=120)
    page.screenshot(run / "report.png")
    page.screenshot(run / "report-first-screen.png", full_page=False)
    return page


def test_minilm_sized_report_has_no_legend_over_a_plot_and_no_overlapping_labels(page, run):
    drawn = figures(page)
    assert [figure["id"] for figure in drawn] == ["pareto-plot", "distributions-plot", "throughput-plot"]
    assert [len(figure["plotAreas"]) for figure in drawn] == [4, 4, 4]  # a panel per target
    assert all(len(figure["legends"]) == 1 for figure in drawn)
    assert len(drawn[0]["labels"]) >= 12  # the pick, the plain export and the front, per panel
    assert legend_problems(drawn) == []
    assert label_problems(drawn) == []
    assert text_problems(drawn) == []
    assert (run / "report.png").stat().st_size > 100_000 and (run / "report-first-screen.png").is_file()


def test_the_first_screen_shows_the_summary_per_target(page):
    visible = page.evaluate(
        """(() => { const r = document.getElementById('summary-table').getBoundingClientRect();
        return [r.top, r.bottom, r.right, document.querySelector('#summary-table').closest('.table').scrollWidth
                <= document.querySelector('#summary-table').closest('.table').clientWidth]; })()"""
    )
    top, bottom, right, fits = visible
    assert 0 < top < bottom < 900 and right <= 1400 and fits  # whole, without scrolling
    targets = page.evaluate(
        "[...document.querySelectorAll('#summary-table tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert targets == [
        f"local · {runtime} · {threads}"
        for runtime in ("ort-cpu", "torch-cpu")
        for threads in ("1 thread", "2 threads")
    ]


def test_the_summary_and_measurement_tables_sort_on_a_header_click(page):
    assert sort_problems(page, "summary-table", "p90 ms", numeric=True) == []
    assert sort_problems(page, "summary-table", "recommended", numeric=False) == []
    assert sort_problems(page, "measurements-table", "variant", numeric=False) == []
    assert sort_problems(page, "measurements-table", "p50 ms", numeric=True) == []


def test_hovering_a_point_names_its_artifact_runtime_latency_and_accuracy(page):
    text = hover_text(page, "pareto-plot")
    assert text is not None
    assert re.search(r"\(fp32|int8|fp16", text) and "local · " in text and "-cpu" in text
    assert re.search(r"p90 \d+\.\d{3} ms", text) and re.search(r"overlap@10 \d\.\d{4}", text)


def test_a_legend_click_hides_an_artifact_in_every_panel_and_a_second_shows_it(page):
    name, (before, hidden, shown) = toggle_states(page, "pareto-plot")
    assert name == "model" and len(before) >= 3  # its legend entry and its points in the torch panels
    assert all(state is True for state in before + shown) and all(state == "legendonly" for state in hidden)


def test_the_page_logs_no_error_and_makes_no_request(page, browser):
    """Last in this file: it also covers what the interactions above caused."""
    browser.pump(0.5)
    assert page.problems() == []


def test_the_checks_catch_a_legend_over_a_plot_piled_labels_and_errors(browser, run, tmp_path):
    """The same page broken on purpose: each check must report its fault."""
    html = (run / "report.html").read_text(encoding="utf-8")
    data = re.search(r'(<script type="application/json" id="report-data">)(.*?)(</script>)', html, re.DOTALL)
    report = json.loads(data.group(2))
    pareto = report["figures"][0]["layout"]
    pareto["legend"].update(x=0.99, xanchor="right", y=0.99)  # the classic: the legend on the top-right panel
    for label in (a for a in pareto["annotations"] if a.get("name") == "point-label"):
        label.update(ax=24, ay=-14)  # every label up and to the right of its point: they pile up
    broken = html[: data.start(2)] + script_json(report) + html[data.end(2) :]
    broken = broken.replace(
        "</main>",
        '<img alt="" src="https://example.invalid/pixel.png"><script>console.error("deliberate")</script></main>',
    )
    (tmp_path / "broken.html").write_text(broken, encoding="utf-8")
    page = browser.page(1400, 900)
    page.open(tmp_path / "broken.html")
    page.wait_for("document.body.dataset.ready === '1'", timeout=120)
    page.screenshot(tmp_path / "broken.png")
    drawn = figures(page)
    assert any("pareto-plot: legend" in problem for problem in legend_problems(drawn))
    assert any("the page hid" in problem for problem in label_problems(drawn))
    browser.pump(0.5)
    problems = page.problems()
    assert any("deliberate" in problem for problem in problems)
    assert any("example.invalid" in problem for problem in problems)  # refused by the page's CSP


def test_two_devices_get_their_own_panels_and_rows_with_the_same_checks(browser, tmp_path):
    """Rows that carry a device (measured on another machine) form targets of their own."""
    document = minilm_sized.document()
    remote = copy.deepcopy(document["rows"])
    for row in remote:
        row["device"] = "pi5"
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms"):
            row["latency"][key] *= 3.0
        row["latency"]["quantiles_ms"] = [value * 3.0 for value in row["latency"]["quantiles_ms"]]
        row["latency"]["throughput_per_s"] /= 3.0
    document["rows"] += remote
    document["recommendations"] = recommend(document["rows"], document["artifacts"], document["max_accuracy_drop"])
    (tmp_path / "report.html").write_text(render_html(document), encoding="utf-8")
    page = browser.page(1400, 900)
    page.open(tmp_path / "report.html")
    page.wait_for("document.body.dataset.ready === '1'", timeout=120)
    page.screenshot(tmp_path / "report.png")
    drawn = figures(page)
    assert [len(figure["plotAreas"]) for figure in drawn] == [8, 8, 8]
    assert legend_problems(drawn) == [] and label_problems(drawn) == [] and text_problems(drawn) == []
    targets = page.evaluate(
        "[...document.querySelectorAll('#summary-table tbody tr')].map(r => r.cells[0].textContent)"
    )
    assert [target.split(" · ")[0] for target in targets] == ["local"] * 4 + ["pi5"] * 4
    browser.pump(0.3)
    assert page.problems() == []
