"""report.html: one self-contained page rendered from results.json (a dict). First the
recommendation per target, then interactive plots (plotly.js, inlined), the sortable table
of every measurement, the notes, the artifacts and the machine.

plotly.js comes from the `plotly` package (its bundled plotly.min.js, read offline), so the
page needs no network: a Content-Security-Policy forbids any request, and every string
from the document is escaped (HTML in the page, plotly's own markup in the plots, `<` in
the inline JSON).
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib.resources import files

from bench.report.devices import device_facts, device_groups, per_device
from bench.report.distributions import distribution_figure
from bench.report.geometry import colours
from bench.report.markdown import skipped_lines, trust_sentences, verification_cell
from bench.report.notes import int8_notes
from bench.report.pareto import pareto_figure
from bench.report.placement import placement_lines
from bench.report.summary import EXPLANATION, Cell, excluded_text, ms_text, recommendations, size_text
from bench.report.tables import measurements_table, summary_table, table
from bench.report.throughput import throughput_figure
from edgeopt.core.onnx_model import describe_upgrade

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "connect-src 'none'; base-uri 'none'; form-action 'none'"
)
FIGURES = {
    "pareto-plot": (
        "Latency against accuracy",
        "One panel per target. Outlined points joined by the dotted step line form the Pareto front (no other "
        "artifact is both faster and more accurate); faded points are dominated. The ring marks the recommendation "
        "and the dashed red line the accuracy budget. Labelled: the recommendation, the source model's plain export "
        "and the front; hover any point for its numbers. Click a name in the legend to hide that artifact in every "
        "panel, double-click it to show it alone.",
    ),
    "distributions-plot": (
        "Latency distributions",
        "Batch 1, one column per target, the fastest artifacts on top: the thin bar spans p5–p95, the thick bar "
        "p25–p75, the tick is the median and the cross p99 (log scale). Hover a median for the numbers.",
    ),
    "throughput-plot": (
        "Throughput against batch size",
        "Samples per second, one panel per target. Shown at first: each target's Pareto front, its recommendation "
        "and the plain export; the other artifacts are greyed in the legend, one click away.",
    ),
}


@cache
def plotly_js() -> str:
    """plotly.js as the `plotly` package ships it (no network, nothing vendored here)."""
    from plotly.offline import get_plotlyjs

    code = get_plotlyjs()
    assert "</script" not in code.lower(), "plotly.js would end its inline <script> early"
    return code


def asset(name: str) -> str:
    return (files("bench.report") / "assets" / name).read_text(encoding="utf-8")


def script_json(value) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' can end the element or open a comment."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(document: dict) -> str:
    """The whole page."""
    picks = recommendations(document)
    rows = document["rows"]
    palette = colours(list(dict.fromkeys(r["variant"] for r in rows)))
    figures = [
        pareto_figure(rows, picks, palette, document["max_accuracy_drop"]),
        distribution_figure(rows),
        throughput_figure(rows, picks, palette),
    ]
    figures = [figure for figure in figures if figure is not None]
    title = f"edgeopt report: {document['recipe']}"
    sections = [
        _header(document, title, len({(p["device"], p["runtime"], p["threads"]) for p in picks})),
        _summary(picks, rows, document["max_accuracy_drop"]),
        _plots(figures),
        _devices(document),
        _measurements(document),
        _scenarios(document["scenarios"]),
        _notes(document),
        _artifacts(document["artifacts"]),
        _skipped(document["skipped"]),
        _placement(document),
        _machine(document["machine"]),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{asset('report.css')}</style>\n"
        f"<script>{plotly_js()}</script>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        f'<script type="application/json" id="report-data">{script_json({"figures": figures})}</script>\n'
        f"<script>{asset('report.js')}</script>\n</body>\n</html>\n"
    )


def _header(document: dict, title: str, targets: int) -> str:
    return (
        f"<header>\n<h1>{escape(title)}</h1>\n"
        f'<p class="meta">Recipe <code>{escape(document["recipe_path"])}</code>, run {escape(document["created"])} '
        f"in {document['duration_s']:.1f} s: {len(document['rows'])} measurements of {len(document['artifacts'])} "
        f"artifacts on {targets} targets (device · runtime · threads).</p>\n</header>"
    )


def _summary(picks: list[dict], rows: list[dict], max_drop: float) -> str:
    if not picks:
        content = "<p>Nothing was measured, so there is nothing to recommend.</p>"
    else:
        excluded = excluded_text(picks, rows)
        notes = "".join(f'<p class="explain">{escape(text)}</p>' for text in (EXPLANATION, excluded) if text)
        content = f"{summary_table(picks, max_drop)}\n{notes}"
    return f'<section id="recommendation">\n<h2>Recommendation per target</h2>\n{content}\n</section>'


def _plots(figures: list[dict]) -> str:
    if not figures:
        return ""
    parts = []
    for figure in figures:
        heading, caption = FIGURES[figure["id"]]
        parts.append(
            f'<h2>{escape(heading)}</h2>\n<figure id="{figure["id"].removesuffix("-plot")}">'
            f'<div class="plot"><div id="{figure["id"]}" class="figure"></div></div>'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    return '<section id="plots">\n' + "\n".join(parts) + "\n</section>"


def _devices(document: dict) -> str:
    """Where a run measured on devices other than this machine: each one's fingerprint,
    target and how its measurement went (its rows are in the tables, keyed by device)."""
    if not per_device(document):
        return ""
    parts = []
    for device, _rows in device_groups(document):
        facts = "".join(
            f"<p>{escape(fact.replace('**', '').replace('`', ''))}</p>" for fact in device_facts(device, document)
        )
        parts.append(f'<section class="device">\n<h3>Device {escape(device["name"])}</h3>\n{facts}\n</section>')
    return '<section id="devices">\n<h2>Devices</h2>\n' + "\n".join(parts) + "\n</section>"


def _measurements(document: dict) -> str:
    if not document["rows"]:
        return ""
    search = (
        '<input type="search" data-filter="measurements-table" placeholder="filter, e.g. ort-cpu int8" '
        'aria-label="filter the measurements">'
    )
    return (
        f'<section id="measurements">\n<h2>All measurements</h2>\n{search}\n{measurements_table(document)}\n'
        '<p class="explain">Latency per call in milliseconds; the median\'s 95% CI comes from resampling whole '
        "rounds. vs plain export: the p50 of the source model's plain export on the same target and batch over "
        "the row's. Spread: how far the pooled medians of the even and the odd rounds, interleaved across artifacts, "
        "lie apart; stable: within the recipe's threshold. Load: the cold start of the measuring process (one per "
        "artifact × runtime × threads); peak MB its peak resident memory. Top-1 is on the held-out labelled split; "
        "agreement is top-1 agreement with the source model; for embeddings, cosine is against the source model's "
        "and overlap@10 the share of each query's top-10 documents it retrieves too.</p>\n</section>"
    )


def _scenarios(scenarios: list[dict]) -> str:
    if not scenarios:
        return ""
    header = [
        "variant",
        "runtime",
        "threads",
        "load",
        "rate/s",
        "concurrency",
        "requests",
        "p50 ms",
        "p90 ms",
        "p99 ms",
    ]
    rows = [
        [
            Cell(s["variant"]),
            Cell(s["runtime"]),
            Cell(str(s["threads"]), s["threads"]),
            Cell(f"{100 * s['load']:.0f}%", s["load"]),
            Cell(f"{s['rate_per_s']:.0f}", s["rate_per_s"]),
            Cell(str(s["concurrency"]), s["concurrency"]),
            Cell(str(s["requests"]), s["requests"]),
            *(Cell(ms_text(s[key]), s[key]) for key in ("p50_ms", "p90_ms", "p99_ms")),
        ]
        for s in scenarios
    ]
    caption = (
        "Requests arrive at random (Poisson) at a fraction (load) of the single-stream capacity, 1 / p50 at batch 1, "
        "and are served by concurrent threads sharing one session; latency runs from arrival to answer, queueing "
        "included."
    )
    columns = [(title, title not in ("variant", "runtime")) for title in header]
    return (
        f'<section id="server">\n<h2>Server scenario</h2>\n{table("server-table", caption, columns, rows)}\n</section>'
    )


def _notes(document: dict) -> str:
    """The INT8 notes and how far to trust the numbers, as report.md words them."""
    upgraded = [
        f"{name}: its input was upgraded for the tools: {describe_upgrade(artifact['facts']['upgraded'])}."
        for name, artifact in document["artifacts"].items()
        if artifact["facts"].get("upgraded")
    ]
    notes = [note.replace("**", "") for note in int8_notes(document)] + upgraded + trust_sentences(document["summary"])
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section id="notes">\n<h2>Notes</h2>\n<ul class="notes">{items}</ul>\n</section>' if notes else ""


def _artifacts(artifacts: dict) -> str:
    columns = [
        (title, title in ("size", "nodes"))
        for title in ("variant", "stage", "format", "precision", "built for", "size", "nodes", "verification", "sha256")
    ]
    rows = []
    for name, artifact in artifacts.items():
        facts = artifact["facts"]
        nodes = facts.get("node_count")
        rows.append(
            [
                *(Cell(text) for text in (name, artifact["stage"], artifact["format"], artifact["precision"])),
                Cell(artifact.get("target") or "—"),
                Cell(size_text(facts.get("size_bytes")), facts.get("size_bytes")),
                Cell("—" if nodes is None else str(nodes), nodes),
                Cell(verification_cell(artifact).replace("**", "")),  # report.md's words, without its emphasis
                Cell(artifact["sha256"][:12]),
            ]
        )
    return f'<section id="artifacts">\n<h2>Artifacts</h2>\n{table("artifacts-table", ARTIFACTS_CAPTION, columns, rows)}\n</section>'


ARTIFACTS_CAPTION = "Every artifact the run built, its verification against its input, and its file's sha256."


def _skipped(skipped: list[dict]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in skipped_lines(skipped))
    return f'<section id="skipped">\n<h2>Not built or not measured</h2>\n<ul class="notes">{items}</ul>\n</section>'


def _placement(document: dict) -> str:
    lines = placement_lines(document)
    if not lines:
        return ""
    items = "\n".join(f"<li>{escape(line)}</li>" for line in lines)
    return f"<h2>Where it ran</h2>\n<ul>\n{items}\n</ul>"


def _machine(machine: dict) -> str:
    facts = [
        ("CPU", machine["cpu"]),
        ("CPU flags", " ".join(machine["cpu_flags"]) or "none read"),
        ("target", machine.get("target") or "—"),
        ("logical cores", str(machine["logical_cores"])),
        ("memory", f"{machine['memory_gb']} GB"),
        ("GPUs", ", ".join(machine["gpus"]) or "none"),
        ("OS", machine["os"]),
        ("Python", machine["python"]),
        *((name, version or "not installed") for name, version in machine["libraries"].items()),
    ]
    items = "\n".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts)
    return f'<section id="machine">\n<h2>Machine</h2>\n<dl class="machine">\n{items}\n</dl>\n</section>'
