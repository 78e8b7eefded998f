"""report.html from a real run of the small recipe: self-contained, escaped, and rendered by
headless Chromium with its plots and its recommendation."""

import copy
import json
import re
import shutil
import subprocess
from html import escape

import numpy as np
import pytest

from bench.report.html import render_html
from bench.report.plots import pareto_front
from edgeopt.cli import main
from tests.conftest import FACTORIES, MLP_RECIPE

FIGURES = ("pareto", "distributions", "throughput")


@pytest.fixture(scope="module")
def document(tmp_path_factory, digits) -> dict:
    """results.json of one real run of the small factory recipe the CLI tests use."""
    folder = tmp_path_factory.mktemp("html-report")
    shutil.copy(FACTORIES, folder / "factories.py")
    np.savez(folder / "digits.npz", image=digits.test.inputs["image"][:64], labels=digits.test.labels[:64])
    (folder / "recipe.yaml").write_text(MLP_RECIPE)
    assert main(["run", str(folder / "recipe.yaml"), "--output", str(folder / "run")]) == 0
    return json.loads((folder / "run" / "results.json").read_text())


def _inside(page: str, tag: str, element_id: str) -> str:
    """The markup between an element's start tag, found by its id, and its end tag (these do not nest)."""
    match = re.search(rf'<{tag}\b[^>]*\bid="{element_id}"[^>]*>(.*?)</{tag}>', page, re.DOTALL)
    assert match, f'no <{tag} id="{element_id}">'
    return match.group(1)


def _assert_shows_plots_and_recommendation(page: str) -> None:
    assert "<li>" in _inside(page, "section", "recommendation")
    for figure_id in FIGURES:
        assert "<svg" in _inside(page, "figure", figure_id), figure_id


def _renamed(document: dict, old: str, new: str) -> dict:
    """The same run with one variant renamed everywhere the document names it."""
    edited = copy.deepcopy(document)
    edited["artifacts"] = {new if name == old else name: artifact for name, artifact in edited["artifacts"].items()}
    for entry in edited["rows"] + edited["scenarios"]:
        if entry["variant"] == old:
            entry["variant"] = new
    return edited


def test_render_html_is_self_contained_with_three_plots_and_the_recommendation(document):
    page = render_html(document)
    # every reference stays inside the page: the SVGs' own #ids (their xmlns URIs are names, not fetched)
    references = re.findall(r"\b(?:src|href)\s*=\s*[\"']?([^\"'\s>]*)", page) + re.findall(r"url\(([^)]*)\)", page)
    assert references and all(reference.startswith("#") for reference in references)
    assert not re.search(r"<(script|link|img|iframe)\b|@import", page, re.IGNORECASE)
    assert page.count("<!DOCTYPE") == 1 and "<?xml" not in page  # the SVGs' own headers are stripped
    _assert_shows_plots_and_recommendation(page)
    assert escape(document["recommendations"][0]["text"]) in page


def test_render_html_escapes_a_variant_name(document):
    hostile = '<script>alert("onnx")</script>'
    page = render_html(_renamed(document, "onnx", hostile))
    assert "<script" not in page.lower()
    assert escape(hostile) in page


def test_render_html_says_so_when_nothing_met_the_budget(document):
    page = render_html({**document, "recommendations": []})
    assert "No artifact met the accuracy budget" in _inside(page, "section", "recommendation")
    assert "<li>" not in _inside(page, "section", "recommendation")


def test_render_html_raises_when_a_row_lacks_its_quantiles(document):
    older = copy.deepcopy(document)
    del older["rows"][0]["latency"]["quantiles_ms"]
    with pytest.raises(KeyError, match="quantiles_ms"):
        render_html(older)


def test_pareto_front_keeps_the_points_nothing_beats_on_both():
    points = [(2.0, 0.9), (1.0, 0.8), (3.0, 0.95), (2.5, 0.85), (1.0, 0.7), (4.0, 0.95)]
    assert pareto_front(points) == [(1.0, 0.8), (2.0, 0.9), (3.0, 0.95)]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_html_shows_plots_and_recommendation_in_headless_chromium(document, tmp_path):
    report = tmp_path / "report.html"
    report.write_text(render_html(document), encoding="utf-8")
    browser = [
        "chromium",
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        report.as_uri(),
    ]
    result = subprocess.run(browser, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_shows_plots_and_recommendation(result.stdout)
