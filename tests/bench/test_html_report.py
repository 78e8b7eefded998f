"""report.html from a real run of the small recipe: self-contained (plotly.js inline, a
Content-Security-Policy that refuses any request), escaped, and drawn by headless Chromium
with its plots, its summary and no console error."""

import copy
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from bench.report.html import CSP, render_html
from bench.report.pareto import pareto_front
from edgeopt.cli import main
from tests.bench.chromium import Browser, chromium
from tests.bench.report_checks import figures, label_problems, legend_problems, text_problems
from tests.conftest import FACTORIES, MLP_RECIPE

HOSTILE = '<img src=x onerror=console.error("injected")>%{x}</script>'


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    """The folder of one real run of the small factory recipe the CLI tests use."""
    folder = tmp_path_factory.mktemp("html-report")
    shutil.copy(FACTORIES, folder / "factories.py")
    np.savez(folder / "digits.npz", image=digits.test.inputs["image"][:64], labels=digits.test.labels[:64])
    (folder / "recipe.yaml").write_text(MLP_RECIPE)
    assert main(["run", str(folder / "recipe.yaml"), "--output", str(folder / "run")]) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def document(run) -> dict:
    return json.loads((run / "results.json").read_text())


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self.scripts.append("")

    def handle_data(self, data):
        if self.lasttag == "script" and self.scripts:
            self.scripts[-1] += data


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


def _renamed(document: dict, old: str, new: str) -> dict:
    """The same run with one variant renamed everywhere the document names it."""
    edited = copy.deepcopy(document)
    edited["artifacts"] = {new if name == old else name: artifact for name, artifact in edited["artifacts"].items()}
    for entry in edited["rows"] + edited["scenarios"]:
        if entry["variant"] == old:
            entry["variant"] = new
    for pick in edited["recommendations"]:
        for key in ("pick", "runner_up", "baseline"):
            if pick[key] and pick[key]["variant"] == old:
                pick[key]["variant"] = new
    return edited


def test_render_html_is_self_contained_and_refuses_any_request(document):
    tags = parsed(render_html(document))
    csp = [attrs["content"] for tag, attrs in tags.tags if tag == "meta" and attrs.get("http-equiv")]
    assert csp == [CSP] and "default-src 'none'" in CSP and "connect-src 'none'" in CSP
    references = [value for _, attrs in tags.tags for key, value in attrs.items() if key in ("src", "href")]
    assert references == []  # no element loads anything; plotly.js is inline
    assert not any(tag in ("link", "img", "iframe", "object") for tag, _ in tags.tags)
    assert len(tags.scripts) == 3 and "plotly.js v" in tags.scripts[0][:200]  # plotly, the figures, the page's own
    report = json.loads(tags.scripts[1])
    assert [figure["id"] for figure in report["figures"]] == ["pareto-plot", "distributions-plot", "throughput-plot"]


def test_render_html_opens_with_the_summary_per_target(document):
    page = render_html(document)
    summary = page[page.index('<section id="recommendation">') : page.index("</section>")]
    assert page.index('<section id="recommendation">') < page.index('<section id="plots">')
    rows = re.findall(r"<tr><td>(local · [^<]+)</td><td data-value=\"([^\"]+)\"><strong>", summary)
    assert rows == [("local · ort-cpu · 1 thread", "onnx"), ("local · torch-cpu · 1 thread", "model")]
    assert "1.00× onnx" in summary and "1.00× model" in summary  # each pick is its target's plain export


def test_render_html_escapes_a_variant_name_everywhere(document):
    page = render_html(_renamed(document, "onnx", HOSTILE))
    assert HOSTILE not in page and "<img" not in page
    tags = parsed(page)
    assert [tag for tag, _ in tags.tags].count("script") == 3
    assert "&lt;img src=x" in page  # the tables, escaped for HTML
    names = json.dumps(json.loads(tags.scripts[1]))
    assert '&lt;img src=x onerror=console.error(\\"injected\\")&gt;%{x}&lt;/script&gt;' in names  # plotly's text


def test_render_html_says_so_when_nothing_met_the_budget(document):
    strict = copy.deepcopy(document)
    for row in strict["rows"]:
        row["accuracy"]["top1"] = 0.0 if row["variant"] != "model" else row["accuracy"]["top1"]
    strict["schema_version"] = 6  # an older run: its picks are worked out anew
    page = render_html(strict)
    summary = page[page.index('<section id="recommendation">') : page.index("</section>")]
    assert (
        "nothing within the accuracy budget" in summary and "Not considered: onnx (over the accuracy budget)" in summary
    )


def test_render_html_raises_when_a_row_lacks_its_quantiles(document):
    older = copy.deepcopy(document)
    del older["rows"][0]["latency"]["quantiles_ms"]
    with pytest.raises(KeyError, match="quantiles_ms"):
        render_html(older)


def test_pareto_front_keeps_the_rows_nothing_beats_on_both():
    def point(p90: float, top1: float) -> dict:
        return {"latency": {"p90_ms": p90}, "accuracy": {"top1": top1}}

    rows = [point(2.0, 0.9), point(1.0, 0.8), point(3.0, 0.95), point(2.5, 0.85), point(1.0, 0.7), point(4.0, 0.95)]
    assert [(r["latency"]["p90_ms"], r["accuracy"]["top1"]) for r in pareto_front(rows)] == [
        (1.0, 0.8),
        (2.0, 0.9),
        (3.0, 0.95),
    ]


def test_report_html_of_a_real_run_draws_cleanly_in_headless_chromium(document, run, tmp_path):
    """The real small run, one variant renamed to markup: drawn with no console error, the
    name shown literally, its layout checked; screenshots beside the run."""
    executable = chromium()
    report = run / "report-hostile.html"
    report.write_text(render_html(_renamed(document, "onnx", HOSTILE)), encoding="utf-8")
    with Browser(executable, tmp_path / "chromium") as browser:
        page = browser.page()
        page.open(report)
        page.wait_for("document.body.dataset.ready === '1'", timeout=120)
        page.screenshot(run / "report-hostile.png")
        drawn = figures(page)
        assert [figure["id"] for figure in drawn] == ["pareto-plot", "distributions-plot", "throughput-plot"]
        assert legend_problems(drawn) == [] and label_problems(drawn) == [] and text_problems(drawn) == []
        legend = page.evaluate("document.querySelector('#pareto-plot .legend').textContent")
        assert HOSTILE in legend and page.evaluate("document.querySelectorAll('img').length") == 0
        browser.pump(0.5)
        assert page.problems() == []
