"""report.html's tables, rendered here as plain HTML; the page's script sorts any of them by
a click on a column's header (numbers by each cell's data-value, blanks last) and filters
the big one. Every string from the document is escaped."""

from __future__ import annotations

from html import escape

from bench.recommend import baseline_variant, group_by_target, target_label, target_of
from bench.report.accuracy_columns import accuracy_cells, accuracy_columns, accuracy_values
from bench.report.summary import COLUMNS, LEFT_COLUMNS, TEXT_COLUMNS, Cell, heading, ms_text, size_text, summary_rows

Column = tuple[str, bool]  # title, numeric


def table(
    table_id: str, caption: str, columns: list[Column], rows: list[list[Cell]], strong: str = "", left: tuple = ()
) -> str:
    """A sortable table: each header is a button that sorts by its column. Numeric columns
    are right-aligned, but for those named in `left` (words that sort by a number); the
    cells of the column titled `strong` are set in bold."""
    right = [numeric and title not in left for title, numeric in columns]
    head = "".join(
        f'<th scope="col" data-type="{"number" if numeric else "text"}"{" class=number" if aligned else ""}>'
        f'<button type="button">{escape(title)}<span class="arrow" aria-hidden="true"></span></button></th>'
        for (title, numeric), aligned in zip(columns, right, strict=True)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            _cell(c, aligned, title == strong) for (title, _), aligned, c in zip(columns, right, row, strict=True)
        )
        for row in rows
    )
    return (
        f'<div class="table"><table id="{table_id}" class="sortable"><caption>{escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"
    )


def _cell(cell: Cell, right: bool, strong: bool) -> str:
    sort = "" if cell.value is None else f' data-value="{escape(str(cell.value))}"'
    text = f"<strong>{escape(cell.text)}</strong>" if strong else escape(cell.text)
    return f"<td{' class=number' if right else ''}{sort}>{text}</td>"


def summary_table(picks: list[dict], max_drop: float) -> str:
    caption = heading(picks, max_drop)
    columns = [(title, title not in TEXT_COLUMNS) for title in COLUMNS]
    return table("summary-table", caption, columns, summary_rows(picks), strong="recommended", left=tuple(LEFT_COLUMNS))


MEASUREMENT_COLUMNS = [
    ("target", False),
    ("variant", False),
    ("precision", False),
    ("batch", True),
    ("p50 ms", True),
    ("p50 95% CI", True),
    ("p90 ms", True),
    ("p99 ms", True),
    ("runs", True),
    ("samples/s", True),
    ("vs plain export", True),
    ("size", True),
    ("peak MB", True),
    ("load s", True),
    ("spread", True),
    ("stable", False),
]


def measurements_table(document: dict) -> str:
    rows = document["rows"]
    accuracy = accuracy_columns(rows)
    sizes = {name: a["facts"].get("size_bytes") for name, a in document["artifacts"].items()}
    base_p50 = {}
    for target, on_target in group_by_target(rows).items():
        name = baseline_variant(document["artifacts"], {r["variant"] for r in on_target})
        base_p50 |= {(target, r["batch"]): r["latency"]["p50_ms"] for r in on_target if r["variant"] == name}
    body = []
    for row in rows:
        latency = row["latency"]
        low, high = latency["p50_ci_ms"]
        base = base_p50.get((target_of(row), row["batch"]))
        speedup = None if base is None else base / latency["p50_ms"]
        size = sizes.get(row["variant"])
        body.append(
            [
                Cell(target_label(target_of(row))),
                Cell(row["variant"]),
                Cell(row["precision"]),
                Cell(str(row["batch"]), row["batch"]),
                Cell(ms_text(latency["p50_ms"]), latency["p50_ms"]),
                Cell(f"{ms_text(low)}–{ms_text(high)}", low),
                Cell(ms_text(latency["p90_ms"]), latency["p90_ms"]),
                Cell(ms_text(latency["p99_ms"]), latency["p99_ms"]),
                Cell(str(latency["runs"]), latency["runs"]),
                Cell(f"{latency['throughput_per_s']:,.0f}", latency["throughput_per_s"]),
                Cell("—" if speedup is None else f"{speedup:.2f}×", speedup),
                Cell(size_text(size), size),
                Cell(f"{row['peak_rss_mb']:.0f}", row["peak_rss_mb"]),
                Cell(f"{row['load_s']:.3f}", row["load_s"]),
                Cell(f"{100 * row['spread']:.1f}%", row["spread"]),
                Cell("yes" if row["stable"] else "no"),
                *(
                    Cell(text, value)
                    for text, value in zip(accuracy_cells(row, accuracy), accuracy_values(row, accuracy), strict=True)
                ),
            ]
        )
    caption = f"All {len(rows)} measurements: click a column's header to sort by it, type in the box to filter."
    return table("measurements-table", caption, MEASUREMENT_COLUMNS + [(title, True) for title in accuracy], body)
