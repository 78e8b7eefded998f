"""report.html: one self-contained page rendered from results.json (a dict): the recommendation,
plots as inline SVG, the measurement tables and the machine. No scripts, no external resources."""

from __future__ import annotations

from html import escape

from bench.report.accuracy_columns import accuracy_cells, accuracy_columns
from bench.report.markdown import _ms, _size, trust_sentences, verification_cell
from bench.report.notes import int8_notes
from bench.report.placement import placement_lines
from bench.report.plots import plots

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328; background: #fff;
       line-height: 1.5; margin: 0; }
main { max-width: 90rem; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.25rem; }
h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.25rem; }
code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.9em; }
.meta { color: #59636e; margin-top: 0; }
#recommendation ul { padding-left: 1.25rem; }
#recommendation li { margin: 0.25rem 0; }
figure { margin: 1.5rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #59636e; font-size: 0.9rem; }
.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8125rem; }
th, td { padding: 0.25rem 0.4rem; border-bottom: 1px solid #d0d7de; text-align: left; white-space: nowrap; }
th { background: #f6f8fa; }
dl.machine { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1.5rem; }
dl.machine dt { color: #59636e; }
dl.machine dd { margin: 0; }
.number { text-align: right; font-variant-numeric: tabular-nums; }
"""


def render_html(document: dict) -> str:
    """The whole page. Every string from the document is escaped; plots are matplotlib SVG inline."""
    title = f"edgeopt report: {document['recipe']}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Recipe <code>{escape(document["recipe_path"])}</code>, '
        f"run {escape(document['created'])} in {document['duration_s']:.1f} s.</p>",
        _recommendation(document["recommendations"], document["max_accuracy_drop"]),
        plots(document["rows"]),
        _scenarios(document["scenarios"]),
        _notes(document),
        _measurements(document["rows"]),
        _artifacts(document["artifacts"]),
        _placement(document),
        _machine(document["machine"]),
    ]
    body = "\n".join(section for section in sections if section)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _recommendation(recommendations: list[dict], max_drop: float) -> str:
    budget = f"an accuracy drop of at most {max_drop:g} from the source model"
    if not recommendations:
        content = f"<p>No artifact met the accuracy budget ({budget}) on a target with alternatives.</p>"
    else:
        picks = "".join(f"<li>{escape(pick['text'])}</li>" for pick in recommendations)
        content = f"<p>The fastest artifact per target within {budget}:</p>\n<ul>{picks}</ul>"
    return f'<section id="recommendation">\n<h2>Recommendation</h2>\n{content}\n</section>'


def _notes(document: dict) -> str:
    """The INT8 notes and how far to trust the numbers, as the Markdown report words them."""
    notes = [note.replace("**", "") for note in int8_notes(document)] + trust_sentences(document["summary"])
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section id="notes">\n<h2>Notes</h2>\n<ul>{items}</ul>\n</section>' if notes else ""


def _table(header: list[str], rows: list[list[str]], numeric: set[str]) -> str:
    """A table of plain strings (escaped here); the columns named in `numeric` are right-aligned."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f'<{tag} class="number">{escape(value)}</{tag}>' if name in numeric else f"<{tag}>{escape(value)}</{tag}>"
            for name, value in zip(header, values, strict=True)
        )

    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<div class="table"><table>\n<thead><tr>{cells("th", header)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


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
            s["variant"],
            s["runtime"],
            str(s["threads"]),
            f"{100 * s['load']:.0f}%",
            f"{s['rate_per_s']:.0f}",
            str(s["concurrency"]),
            str(s["requests"]),
            _ms(s["p50_ms"]),
            _ms(s["p90_ms"]),
            _ms(s["p99_ms"]),
        ]
        for s in scenarios
    ]
    return "\n".join(
        [
            "<h2>Server scenario</h2>",
            "<p>Requests arrive at random (Poisson) at a fraction of the single-stream capacity (load: 1 / p50 at "
            "batch 1) and are served by concurrent threads sharing one session; latency runs from arrival to "
            "answer, queueing included.</p>",
            _table(header, rows, numeric=set(header) - {"variant", "runtime"}),
        ]
    )


def _measurements(rows: list[dict]) -> str:
    columns = accuracy_columns(rows)
    header = [
        "variant",
        "runtime",
        "batch",
        "threads",
        "p50 ms",
        "p50 95% CI",
        "p90 ms",
        "p99 ms",
        "runs",
        "throughput/s",
        "speedup",
        "spread",
        "stable",
        "load s",
        "peak MB",
        *columns,
    ]
    return "\n".join(
        [
            "<h2>Latency and accuracy</h2>",
            "<p>Latency per call, in milliseconds; throughput in samples per second. Speedup is the p50 of "
            "<code>model</code> over this row's p50 at the same batch and threads. Top-1 is on the held-out "
            "labelled test split; agreement is top-1 agreement with the source model; for embeddings, cosine is "
            "against the source model's and overlap@10 the share of each query's top-10 documents it retrieves "
            "too. Spread is how far the pooled "
            "medians of the even and the odd rounds, interleaved across artifacts, lie apart, and stable says whether that is "
            "within the recipe's threshold; the median's 95% CI comes from resampling whole rounds; load is "
            "the cold start of the measuring process (a fresh one per "
            "artifact × runtime × threads); peak MB is its peak resident memory.</p>",
            _table(
                header,
                [_measurement(row, columns) for row in rows],
                numeric=set(header) - {"variant", "runtime", "stable"},
            ),
        ]
    )


def _measurement(row: dict, columns: list[str]) -> list[str]:
    latency = row["latency"]
    low, high = latency["p50_ci_ms"]
    return [
        row["variant"],
        row["runtime"],
        str(row["batch"]),
        str(row["threads"]),
        _ms(latency["p50_ms"]),
        f"{_ms(low)}–{_ms(high)}",
        _ms(latency["p90_ms"]),
        _ms(latency["p99_ms"]),
        str(latency["runs"]),
        f"{latency['throughput_per_s']:.0f}",
        "—" if row["speedup_vs_model"] is None else f"{row['speedup_vs_model']:.2f}×",
        f"{100 * row['spread']:.1f}%",
        "yes" if row["stable"] else "no",
        f"{row['load_s']:.3f}",
        f"{row['peak_rss_mb']:.0f}",
        *accuracy_cells(row, columns),
    ]


def _artifacts(artifacts: dict) -> str:
    header = ["variant", "stage", "format", "precision", "size", "nodes", "verification", "sha256"]
    rows = [
        [
            name,
            artifact["stage"],
            artifact["format"],
            artifact["precision"],
            _size(artifact["facts"].get("size_bytes")),
            str(artifact["facts"].get("node_count", "—")),
            # the Markdown report's cell, without its Markdown emphasis
            verification_cell(artifact).replace("**", ""),
            artifact["sha256"][:12],
        ]
        for name, artifact in artifacts.items()
    ]
    return "<h2>Artifacts</h2>\n" + _table(header, rows, numeric={"size", "nodes"})


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
        ("logical cores", str(machine["logical_cores"])),
        ("memory", f"{machine['memory_gb']} GB"),
        ("GPUs", ", ".join(machine["gpus"]) or "none"),
        ("OS", machine["os"]),
        ("Python", machine["python"]),
        *((name, version or "not installed") for name, version in machine["libraries"].items()),
    ]
    items = "\n".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in facts)
    return f'<h2>Machine</h2>\n<dl class="machine">\n{items}\n</dl>'
