"""Throughput against batch size, one panel per target laid out as the Pareto view, one
legend of artifacts beside the panels. Shown at first: each target's Pareto front, its
pick and its plain export; the other artifacts are one legend click away. A plotly figure
as a plain dict: {id, data, layout}."""

from __future__ import annotations

import math

from bench.recommend import accuracy_of, group_by_target, target_label
from bench.report.geometry import AXIS, FONT, Grid, legend_margin, log_range, padded, plot_text
from bench.report.pareto import grid_positions, legend_carrier, pareto_front


def shown_at_first(rows: list[dict], picks: list[dict]) -> set[str]:
    """The artifacts worth seeing without a click: every target's front, pick and baseline."""
    shown: set[str] = set()
    for on_target in group_by_target([r for r in rows if r["batch"] == 1]).values():
        shown |= {r["variant"] for r in pareto_front([r for r in on_target if accuracy_of(r)[0] is not None])}
    for pick in picks:
        shown |= {entry["variant"] for entry in (pick["pick"], pick["baseline"]) if entry}
    return shown


def throughput_figure(rows: list[dict], picks: list[dict], colours: dict) -> dict | None:
    if not rows:
        return None
    targets = group_by_target(rows)
    positions = grid_positions(list(targets))
    margin = {"l": 80, "r": legend_margin(list(colours)), "t": 40, "b": 55}
    grid = Grid(1 + max(p[0] for p in positions.values()), 1 + max(p[1] for p in positions.values()), 240, margin)
    shown = shown_at_first(rows, picks)
    batches = sorted({r["batch"] for r in rows})
    rates = [r["latency"]["throughput_per_s"] for r in rows]
    y_range, y_ticks = log_range(min(rates), max(rates), 0.05, 0.08)
    x_range = padded(math.log10(batches[0]), math.log10(batches[-1]), 0.06, 0.06)
    names = [n for n in colours if any(r["variant"] == n for r in rows)]
    data = [legend_carrier(n, *colours[n], visible=True if n in shown else "legendonly") for n in names]
    layout, annotations = grid.layout(), []
    for index, (target, on_target) in enumerate(targets.items()):
        axis = "" if index == 0 else str(index + 1)
        row, column = positions[target]
        x_domain, y_domain = grid.domain(row, column)
        layout[f"xaxis{axis}"] = {
            **AXIS,
            **{"type": "log", "domain": x_domain, "anchor": f"y{axis}", "range": x_range},
            **{"tickvals": batches, "ticktext": [str(b) for b in batches]},
            "title": {"text": "batch size" if row == grid.rows - 1 else "", "standoff": 10},
        }
        layout[f"yaxis{axis}"] = {
            **AXIS,
            **y_ticks,
            **{"domain": y_domain, "anchor": f"x{axis}", "type": "log", "range": y_range},
            "title": {"text": "samples/s (log)" if column == 0 else ""},
        }
        title = {"text": f"<b>{plot_text(target_label(target))}</b>", "xref": "paper", "yref": "paper"}
        title |= {"x": sum(x_domain) / 2, "y": y_domain[1], "yshift": 6, "xanchor": "center", "yanchor": "bottom"}
        annotations.append({**title, "showarrow": False, "font": {"size": 12}, "name": "panel-title"})
        data += _lines(on_target, target, axis, colours, shown)
    layout.update(
        annotations=annotations,
        hovermode="closest",
        font={"family": FONT, "size": 11, "color": "#1f2328"},
        plot_bgcolor="#fff",
        legend={"x": 1 + 12 / grid.plot_width, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 12}},
    )
    layout["legend"]["tracegroupgap"] = 2
    return {"id": "throughput-plot", "data": data, "layout": layout}


def _lines(rows: list[dict], target: tuple, axis: str, colours: dict, shown: set[str]) -> list[dict]:
    label = plot_text(target_label(target))
    traces = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        line = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["batch"])
        colour, symbol = colours[variant]
        trace = {"type": "scatter", "mode": "lines+markers", "xaxis": f"x{axis}", "yaxis": f"y{axis}"}
        trace |= {"name": plot_text(variant), "legendgroup": variant, "showlegend": False}
        trace |= {"visible": True if variant in shown else "legendonly"}
        trace |= {"x": [r["batch"] for r in line], "y": [r["latency"]["throughput_per_s"] for r in line]}
        trace |= {"line": {"color": colour, "width": 1.5}, "marker": {"color": colour, "symbol": symbol, "size": 6}}
        trace["customdata"] = [[plot_text(variant), label, r["latency"]["p50_ms"]] for r in line]
        trace["hovertemplate"] = (
            "<b>%{customdata[0]}</b><br>%{customdata[1]}<br>batch %{x}: %{y:,.0f} samples/s"
            " (p50 %{customdata[2]:.3f} ms)<extra></extra>"
        )
        traces.append(trace)
    return traces
