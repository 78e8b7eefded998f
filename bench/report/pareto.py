"""The Pareto view: p90 latency at batch 1 against accuracy, one panel per target (rows:
device and runtime; columns: thread counts), one legend of artifacts beside all panels.

Only the recommendation, the source model's plain export and the Pareto front are
labelled (placed by bench.report.geometry so that labels do not overlap); hovering any
point names it with its numbers. A plotly figure as a plain dict: {id, data, layout}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.recommend import Target, accuracy_of, group_by_target, target_label
from bench.report.geometry import (
    AXIS,
    FONT,
    LABEL_SIZE,
    Box,
    Grid,
    legend_margin,
    log_range,
    padded,
    place_labels,
    plot_text,
)

PERCENT = ("top-1", "agreement")


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows that no other row beats on both p90 latency and accuracy, fastest first."""
    front: list[dict] = []
    for row in sorted(rows, key=lambda r: (r["latency"]["p90_ms"], -accuracy_of(r)[0])):
        if not front or accuracy_of(row)[0] > accuracy_of(front[-1])[0]:
            front.append(row)
    return front


def grid_positions(targets: list[Target]) -> dict[Target, tuple[int, int]]:
    """(row, column) per target: a row per device and runtime, a column per thread count."""
    rows = list(dict.fromkeys(target[:2] for target in targets))
    columns = sorted({target[2] for target in targets})
    return {target: (rows.index(target[:2]), columns.index(target[2])) for target in targets}


@dataclass(frozen=True)
class Panel:
    """One target's plot area: its axes' names and ranges and its place in px."""

    index: int
    box: Box
    x_range: list[float]  # log10 ms
    y_range: list[float]
    floor: float  # accuracies below it are drawn on it, as triangles pointing down

    def shown_y(self, row: dict) -> float:
        return max(accuracy_of(row)[0], self.floor)

    @property
    def axes(self) -> tuple[str, str]:
        suffix = "" if self.index == 0 else str(self.index + 1)
        return f"x{suffix}", f"y{suffix}"

    def pixel(self, row: dict) -> tuple[float, float]:
        left, top, right, bottom = self.box
        x = (math.log10(row["latency"]["p90_ms"]) - self.x_range[0]) / (self.x_range[1] - self.x_range[0])
        y = (self.shown_y(row) - self.y_range[0]) / (self.y_range[1] - self.y_range[0])
        return left + x * (right - left), bottom - y * (bottom - top)


def pareto_figure(rows: list[dict], picks: list[dict], colours: dict, max_drop: float) -> dict | None:
    """None where no batch-1 row has an accuracy figure."""
    single = [r for r in rows if r["batch"] == 1 and accuracy_of(r)[0] is not None]
    if not single:
        return None
    targets = group_by_target(single)
    chosen = {(p["device"], p["runtime"], p["threads"]): p for p in picks if p["scenario"] == "single-stream"}
    metric = accuracy_of(single[0])[1]
    reference = next((p["reference"] for p in chosen.values() if p["reference"] is not None), None)
    budget = None if reference is None else reference - max_drop
    accuracies = [accuracy_of(r)[0] for r in single]
    # an artifact far outside the budget would squash the ones that matter into a strip:
    # the axis stops half a budget below the budget line
    floor = min(accuracies) if budget is None else max(min(accuracies), budget - max_drop / 2)
    y_range = padded(min(floor, budget if budget is not None else floor), max(accuracies), 0.08, 0.14)
    positions = grid_positions(list(targets))
    shown = [name for name in colours if any(r["variant"] == name for r in single)]
    margin = {"l": 70, "r": legend_margin([*shown, "Pareto front", "recommended"]), "t": 40, "b": 55}
    grid = Grid(1 + max(p[0] for p in positions.values()), 1 + max(p[1] for p in positions.values()), 300, margin)
    # one legend entry per artifact, in full colour (an entry takes its trace's first point's
    # opacity), before any panel: an artifact may be missing from the first target
    carriers = [legend_carrier(name, *colours[name]) for name in shown]
    figure = {"data": carriers, "layout": grid.layout(), "annotations": [], "shapes": []}
    for index, (target, on_target) in enumerate(targets.items()):
        row, column = positions[target]
        p90s = [r["latency"]["p90_ms"] for r in on_target]
        x_range, ticks = log_range(min(p90s), max(p90s), 0.10, 0.30)
        panel = Panel(index, grid.rect(row, column), x_range, y_range, floor)
        _axes(figure["layout"], grid, panel, (row, column), ticks, metric)
        _panel(figure, panel, target, on_target, chosen.get(target), colours, metric)
        if budget is not None:
            figure["shapes"].append(_budget_line(panel, budget))
    layout = figure["layout"]
    layout.update(
        annotations=figure["annotations"],
        shapes=figure["shapes"],
        legend={"x": 1 + 12 / grid.plot_width, "xanchor": "left", "y": 1, "yanchor": "top", "font": {"size": 12}},
        font={"family": FONT, "size": 12, "color": "#1f2328"},
        hovermode="closest",
        plot_bgcolor="#fff",
        hoverlabel={"namelength": -1, "font": {"family": FONT}},
    )
    layout["legend"].update(itemclick="toggle", itemdoubleclick="toggleothers", tracegroupgap=2)
    return {"id": "pareto-plot", "data": figure["data"], "layout": layout}


def _axes(layout: dict, grid: Grid, panel: Panel, place: tuple[int, int], ticks: dict, metric: str) -> None:
    x, y = panel.axes
    row, column = place
    x_domain, y_domain = grid.domain(row, column)
    bottom_row = row == grid.rows - 1
    layout[f"xaxis{x[1:]}"] = {
        **AXIS,
        **ticks,
        "type": "log",
        "domain": x_domain,
        "range": panel.x_range,
        "anchor": y,
        "title": {"text": "p90 latency, ms (batch 1, log)" if bottom_row else "", "standoff": 10},
    }
    layout[f"yaxis{y[1:]}"] = {
        **AXIS,
        "domain": y_domain,
        "range": panel.y_range,
        "anchor": x,
        "tickformat": ".1~%" if metric in PERCENT else ".3~f",
        "title": {"text": metric if column == 0 else ""},
    }


def _panel(figure: dict, panel: Panel, target: Target, rows: list[dict], pick: dict | None, colours, metric) -> None:
    """A target's points (one trace per artifact, the front full and outlined, the rest faded),
    its front's step line, a ring round the pick, its title and its point labels."""
    x, y = panel.axes
    left, top, right, _ = panel.box
    figure["annotations"].append(_title(target, (left + right) / 2, top, figure["layout"]))
    front = pareto_front(rows)
    on_front = {id(r) for r in front}
    label = plot_text(target_label(target))
    for variant in dict.fromkeys(r["variant"] for r in rows):
        points = [r for r in rows if r["variant"] == variant]
        colour, symbol = colours[variant]
        figure["data"].append(_points(panel, variant, points, on_front, (colour, symbol), label, metric))
    line = {"shape": "hv", "color": "#57606a", "width": 1.5, "dash": "dot"}
    figure["data"].append(
        {
            **{"type": "scatter", "mode": "lines", "xaxis": x, "yaxis": y, "name": "Pareto front", "line": line},
            **{"legendgroup": "_front", "showlegend": panel.index == 0, "hoverinfo": "skip"},
            **{"x": [r["latency"]["p90_ms"] for r in front], "y": [panel.shown_y(r) for r in front]},
        }
    )
    chosen = next((r for r in rows if pick and pick["pick"] and r["variant"] == pick["pick"]["variant"]), None)
    if chosen is not None:
        ring = {"symbol": "circle-open", "size": 20, "color": "#1f2328", "line": {"width": 2}}
        figure["data"].append(
            {
                **{"type": "scatter", "mode": "markers", "xaxis": x, "yaxis": y, "name": "recommended"},
                **{"legendgroup": "_pick", "showlegend": panel.index == 0, "hoverinfo": "skip", "marker": ring},
                **{"x": [chosen["latency"]["p90_ms"]], "y": [panel.shown_y(chosen)]},
            }
        )
    baseline = pick["baseline"]["variant"] if pick and pick["baseline"] else None
    figure["annotations"] += _labels(panel, rows, front, chosen, baseline, colours)


def _title(target: Target, centre_px: float, top_px: float, layout: dict) -> dict:
    margin, width = layout["margin"], layout["width"]
    x = (centre_px - margin["l"]) / (width - margin["l"] - margin["r"])
    return {
        **{"text": f"<b>{plot_text(target_label(target))}</b>", "xref": "paper", "yref": "paper", "x": x},
        **{"y": 1 - (top_px - margin["t"]) / (layout["height"] - margin["t"] - margin["b"]), "yshift": 6},
        **{"xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 13}, "name": "panel-title"},
    }


def legend_carrier(variant: str, colour: str, symbol: str, visible: bool | str = True) -> dict:
    """A point-less trace that holds an artifact's legend entry for its whole legend group."""
    return {
        **{"type": "scatter", "mode": "markers", "x": [None], "y": [None], "visible": visible},
        **{"name": plot_text(variant), "legendgroup": variant, "hoverinfo": "skip"},
        "marker": {"color": colour, "symbol": symbol, "size": 9},
    }


def _points(panel: Panel, variant: str, points: list[dict], on_front: set[int], look, label: str, metric) -> dict:
    colour, symbol = look
    value = "%{customdata[5]:.2%}" if metric in PERCENT else "%{customdata[5]:.4f}"
    marker = {
        **{"color": colour, "size": 9},
        "symbol": [symbol if accuracy_of(r)[0] >= panel.floor else "triangle-down" for r in points],
        "opacity": [1.0 if id(r) in on_front else 0.45 for r in points],
        "line": {"color": "#1f2328", "width": [1.2 if id(r) in on_front else 0 for r in points]},
    }
    return {
        **{"type": "scatter", "mode": "markers", "xaxis": panel.axes[0], "yaxis": panel.axes[1], "marker": marker},
        **{"name": plot_text(variant), "legendgroup": variant, "showlegend": False},
        **{"x": [r["latency"]["p90_ms"] for r in points], "y": [panel.shown_y(r) for r in points]},
        "customdata": [
            [
                plot_text(variant),
                label,
                r["latency"]["p50_ms"],
                r["precision"],
                _standing(r, on_front),
                accuracy_of(r)[0],
            ]
            for r in points
        ],
        "hovertemplate": "<b>%{customdata[0]}</b> (%{customdata[3]})<br>%{customdata[1]}"
        f"<br>p90 %{{x:.3f}} ms · p50 %{{customdata[2]:.3f}} ms<br>{metric} {value}<br>%{{customdata[4]}}<extra></extra>",
    }


def _standing(row: dict, on_front: set[int]) -> str:
    return "on the Pareto front" if id(row) in on_front else "dominated: another is faster and as accurate"


def _budget_line(panel: Panel, budget: float) -> dict:
    x, y = panel.axes
    return {
        **{"type": "line", "xref": f"{x} domain", "yref": y, "x0": 0, "x1": 1, "y0": budget, "y1": budget},
        "line": {"color": "#cf222e", "width": 1, "dash": "dash"},
    }


def _labels(panel: Panel, rows, front, chosen, baseline: str | None, colours) -> list[dict]:
    """Labels for the pick, the plain export and the front, in that order of priority."""
    wanted = [chosen] if chosen is not None else []
    wanted += [r for r in rows if r["variant"] == baseline and r is not chosen]
    wanted += [r for r in front if all(r is not w for w in wanted)]
    markers = [panel.pixel(r) for r in rows]
    if chosen is not None:  # the ring round the pick is 20 px wide: keep labels off it too
        cx, cy = panel.pixel(chosen)
        markers += [(cx + dx, cy + dy) for dx in (-6, 6) for dy in (-6, 6)]
    offsets = place_labels(panel.box, markers, [(*panel.pixel(r), r["variant"]) for r in wanted])
    x, y = panel.axes
    return [
        {
            **{"name": "point-label", "xref": x, "yref": y, "text": plot_text(row["variant"])},
            **{"x": math.log10(row["latency"]["p90_ms"]), "y": panel.shown_y(row)},  # log axes take log10
            **{"showarrow": True, "ax": offset[0], "ay": offset[1], "arrowhead": 0, "arrowwidth": 1},
            **{"arrowcolor": colours[row["variant"]][0], "standoff": 5, "borderwidth": 1, "borderpad": 2},
            **{"font": {"size": LABEL_SIZE, "color": "#1f2328"}, "bgcolor": "rgba(255,255,255,0.9)"},
            "bordercolor": colours[row["variant"]][0],
        }
        for row, offset in zip(wanted, offsets, strict=True)
        if offset is not None
    ]
