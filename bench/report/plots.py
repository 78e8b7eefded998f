"""The report's plots as inline SVG: latency against accuracy (the Pareto front per
target), latency distributions, and throughput against batch size."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable
from html import escape

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    PercentFormatter,
    ScalarFormatter,
)

from bench.latency import QUANTILES
from bench.recommend import accuracy_of

DASHES = ("-", "--", ":", "-.")
ACCURACY_LABELS = {  # accuracy_of's metrics: the same figure the recommendation weighs
    "top-1": "top-1 accuracy",
    "agreement": "top-1 agreement with the source model",
    "overlap@10": "overlap of the top-10 retrieved documents with the source model's",
    "cosine": "mean cosine similarity to the source model",
}


def plots(rows: list[dict]) -> str:
    single = [row for row in rows if row["batch"] == 1]
    no_single = "No measurement at batch 1."
    return "\n".join(
        [
            "<h2>Plots</h2>",
            _figure("pareto", _pareto, single, _pareto_caption(single), no_single),
            _figure(
                "distributions",
                _distributions,
                single,
                "Latency distribution at batch 1, one panel per runtime and thread count: the share of calls "
                "(percentile) that finished within each latency (log scale).",
                no_single,
            ),
            _figure(
                "throughput",
                _throughput,
                rows,
                "Throughput (samples per second) against batch size, one line per variant, runtime and thread count.",
                "No measurement.",
            ),
        ]
    )


def _figure(
    figure_id: str, draw: Callable[[Figure, list[dict]], None], rows: list[dict], caption: str, empty: str
) -> str:
    plot = _svg(figure_id, draw, rows) if rows else f"<p>{escape(empty)}</p>"
    return f'<figure id="{figure_id}">\n{plot}\n<figcaption>{escape(caption)}</figcaption>\n</figure>'


def _svg(figure_id: str, draw: Callable[[Figure, list[dict]], None], rows: list[dict]) -> str:
    """The plot as an <svg> element. A bare Figure, not pyplot: nothing global to switch or close.
    Its ids are prefixed with the figure's, so several plots can share one page."""
    settings = {"svg.fonttype": "none", "svg.hashsalt": figure_id, "text.parse_math": False, "font.size": 9}
    with matplotlib.rc_context(settings):
        figure = Figure(layout="constrained")
        draw(figure, rows)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    return re.sub(r'(\bid="|href="#|url\(#)', rf"\g<1>{figure_id}-", svg)


def _targets(rows: Iterable[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """Rows grouped by target (device, runtime, threads), in the order they first appear:
    two devices' rows are never one group."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for row in rows:
        groups.setdefault((row.get("device", "local"), row["runtime"], row["threads"]), []).append(row)
    return groups


def _target_label(target: tuple[str, str, int]) -> str:
    device, runtime, threads = target
    return f"{'' if device == 'local' else device + ': '}{runtime}, {threads} thread{'s' if threads != 1 else ''}"


def _accuracy(row: dict) -> tuple[str, float]:
    """The metric the Pareto plot uses for a row, and its value."""
    value, metric = accuracy_of(row)
    if value is None:
        raise ValueError(f"{row['variant']} on {row['runtime']}: no accuracy figure (top-1, agreement or cosine)")
    return metric, value


def _pareto_caption(rows: list[dict]) -> str:
    return (
        f"p90 latency at batch 1 (log scale) against {_accuracy_label(rows)}, one colour per runtime and thread "
        "count. The step line joins each target's Pareto-optimal artifacts: none of the others is both faster "
        "and more accurate."
    )


def _accuracy_label(rows: list[dict]) -> str:
    metrics = {_accuracy(row)[0] for row in rows}
    return ACCURACY_LABELS[metrics.pop()] if len(metrics) == 1 else "accuracy (top-1, else agreement, else cosine)"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points that no other point beats on both, fastest first."""
    front: list[tuple[float, float]] = []
    for latency, accuracy in sorted(points, key=lambda point: (point[0], -point[1])):
        if not front or accuracy > front[-1][1]:
            front.append((latency, accuracy))
    return front


def _pareto(figure: Figure, rows: list[dict]) -> None:
    figure.set_size_inches(9, 4.5)
    axes = figure.subplots()
    for index, (target, group) in enumerate(_targets(rows).items()):
        colour = f"C{index % 10}"
        points = [(row["latency"]["p90_ms"], _accuracy(row)[1]) for row in group]
        axes.scatter(*zip(*points, strict=True), color=colour, label=_target_label(target), zorder=3)
        front = pareto_front(points)
        axes.step(*zip(*front, strict=True), where="post", color=colour, alpha=0.6)
        for row, point in zip(group, points, strict=True):
            axes.annotate(
                row["variant"], point, xytext=(3, 3), textcoords="offset points", fontsize=7, color=colour, rotation=40
            )
    _log_latency_axis(axes)
    axes.set_xlabel("p90 latency, ms (batch 1)")
    axes.set_ylabel(_accuracy_label(rows))
    if {_accuracy(row)[0] for row in rows} <= {"top-1", "agreement"}:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.margins(x=0.08, y=0.2)
    axes.grid(True, which="both", alpha=0.3)
    _legend_outside(axes)


def _distributions(figure: Figure, rows: list[dict]) -> None:
    targets = _targets(rows)
    columns = min(len(targets), 3)
    lines = math.ceil(len(targets) / columns)
    figure.set_size_inches(2.6 * columns + 0.6, 2.4 * lines + 0.4)
    panels = list(figure.subplots(lines, columns, squeeze=False, sharey=True).flat)
    for panel, (target, group) in zip(panels, targets.items(), strict=False):
        for row in group:
            panel.plot(_quantiles(row), QUANTILES, label=row["variant"])
        _log_latency_axis(panel)
        panel.set_title(_target_label(target), fontsize=9)
        panel.set_xlabel("latency, ms")
        panel.grid(True, which="both", alpha=0.3)
        panel.legend(fontsize=7)
    for panel in panels[len(targets) :]:
        panel.set_visible(False)
    for panel in figure.axes[::columns]:
        panel.set_ylabel("percentile")


def _quantiles(row: dict) -> list[float]:
    quantiles = row["latency"]["quantiles_ms"]
    if len(quantiles) != len(QUANTILES):
        raise ValueError(
            f"{row['variant']} on {row['runtime']}: latency.quantiles_ms has {len(quantiles)} values, "
            f"expected {len(QUANTILES)} (percentiles {', '.join(map(str, QUANTILES))})"
        )
    return quantiles


def _throughput(figure: Figure, rows: list[dict]) -> None:
    figure.set_size_inches(9, 4.0)
    axes = figure.subplots()
    # one colour per variant and one dash per target, so a line's look says both
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    for index, (target, group) in enumerate(_targets(rows).items()):
        for variant in dict.fromkeys(row["variant"] for row in group):
            line = sorted((row for row in group if row["variant"] == variant), key=lambda row: row["batch"])
            axes.plot(
                [row["batch"] for row in line],
                [row["latency"]["throughput_per_s"] for row in line],
                marker="o",
                color=f"C{variants.index(variant) % 10}",
                linestyle=DASHES[index % len(DASHES)],
                label=f"{variant} · {_target_label(target)}",
            )
    batches = sorted({row["batch"] for row in rows})
    if len(batches) > 2:
        axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(FixedLocator(batches))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("batch size")
    axes.set_ylabel("samples per second")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    _legend_outside(axes)


def _log_latency_axis(axes: Axes) -> None:
    """A log x axis labelled 0.05 rather than 5×10⁻². Ticks at each decade where the latencies span
    several, at 1, 2 and 5 of each where they span one or two, evenly spaced where they span less."""
    axes.set_xscale("log")
    low, high = axes.get_xlim()
    decades = math.log10(high / low)
    locator = MaxNLocator(nbins=4) if decades < 0.6 else LogLocator(subs=(1, 2, 5) if decades <= 2 else (1,))
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _legend_outside(axes: Axes) -> None:
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
