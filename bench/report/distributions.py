"""Latency distributions at batch 1 as dot-and-whisker rows, from each row's stored
percentiles: one row per artifact (fastest on top, names once at the left), one column per
target, at most four columns to a band. Twenty overlapping CDF curves cannot be read;
twenty rows of bars can. A plotly figure as a plain dict: {id, data, layout}."""

from __future__ import annotations

import math

from bench.latency import QUANTILES
from bench.recommend import group_by_target, target_label
from bench.report.geometry import AXIS, FONT, Grid, legend_margin, log_range, plot_text, text_width

COLUMNS = 4
LEGEND = ("p5–p95", "p25–p75", "median", "p99")
ROW_PX = 18
# indices into latency.quantiles_ms (percentiles 0, 5, ..., 100)
P5, P25, P50, P75, P95 = (QUANTILES.index(q) for q in (5, 25, 50, 75, 95))


def _quantiles(row: dict) -> list[float]:
    quantiles = row["latency"]["quantiles_ms"]
    if len(quantiles) != len(QUANTILES):
        raise ValueError(
            f"{row['variant']} on {row['runtime']}: latency.quantiles_ms has {len(quantiles)} values, "
            f"expected {len(QUANTILES)} (percentiles {', '.join(map(str, QUANTILES))})"
        )
    return quantiles


def distribution_figure(rows: list[dict]) -> dict | None:
    single = [r for r in rows if r["batch"] == 1]
    if not single:
        return None
    targets = group_by_target(single)
    names = list(dict.fromkeys(r["variant"] for r in single))
    logs: dict[str, list[float]] = {}
    for row in single:
        logs.setdefault(row["variant"], []).append(math.log(row["latency"]["p50_ms"]))
    order = sorted(names, key=lambda name: sum(logs[name]) / len(logs[name]))  # geometric mean of p50
    margin = {"l": int(max(text_width(n, 11) for n in names) + 24), "r": legend_margin(list(LEGEND), 11), "t": 50}
    margin["b"] = 50
    columns = min(COLUMNS, len(targets))
    bands = math.ceil(len(targets) / columns)
    # at least as tall as the legend beside it
    grid = Grid(bands, columns, max(ROW_PX * len(order) + 20, 110), margin, hgap=24, vgap=110)
    data, layout, annotations = [], grid.layout(), []
    for index, (target, on_target) in enumerate(targets.items()):
        band, column = divmod(index, columns)
        axis = "" if index == 0 else str(index + 1)
        x_domain, y_domain = grid.domain(band, column)
        by_name = {r["variant"]: r for r in on_target}
        present = [n for n in order if n in by_name]
        low = min(_quantiles(by_name[n])[P5] for n in present)
        x_range, ticks = log_range(low, max(by_name[n]["latency"]["p99_ms"] for n in present), 0.05, 0.05)
        layout[f"xaxis{axis}"] = {
            **AXIS,
            **ticks,
            **{"type": "log", "domain": x_domain, "anchor": f"y{axis}", "range": x_range},
            "title": {"text": "latency, ms (log)", "standoff": 10},
        }
        layout[f"yaxis{axis}"] = {
            **AXIS,
            **{"domain": y_domain, "anchor": f"x{axis}", "type": "category", "categoryorder": "array"},
            **{"categoryarray": [plot_text(n) for n in reversed(order)], "range": [-0.7, len(order) - 0.3]},
            **{"showticklabels": column == 0, "ticks": "", "showgrid": True},
        }
        annotations.append(_title(target, x_domain, y_domain, grid.cell_width))
        data += _traces(target, [by_name[n] for n in present], axis, first=index == 0)
    layout.update(
        annotations=annotations,
        hovermode="closest",
        font={"family": FONT, "size": 11, "color": "#1f2328"},
        plot_bgcolor="#fff",
        legend={"x": 1 + 16 / grid.plot_width, "xanchor": "left", "y": 1, "yanchor": "top", "tracegroupgap": 0},
    )
    return {"id": "distributions-plot", "data": data, "layout": layout}


def _title(target: tuple, x_domain: list[float], y_domain: list[float], cell_width: float) -> dict:
    text = plot_text(target_label(target))
    if text_width(target_label(target), 12) * 1.1 > cell_width:  # bold runs wider: two lines
        device, runtime, threads = target
        text = plot_text(f"{device} · {runtime}") + "<br>" + plot_text(f"{threads} thread{'s' if threads != 1 else ''}")
    return {
        **{"text": f"<b>{text}</b>", "xref": "paper", "yref": "paper", "x": sum(x_domain) / 2, "y": y_domain[1]},
        **{"yshift": 6, "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}},
        "name": "panel-title",
    }


def _traces(target: tuple, rows: list[dict], axis: str, first: bool) -> list[dict]:
    """p5–p95 as a thin bar, p25–p75 a thick one, the median a tick (hover: the numbers), p99 a cross."""
    q = [_quantiles(r) for r in rows]
    common = {"type": "scatter", "xaxis": f"x{axis}", "yaxis": f"y{axis}", "showlegend": first}
    common |= {"y": [plot_text(r["variant"]) for r in rows], "x": [v[P50] for v in q]}
    traces = []
    if first:  # legend entries drawn as the bars they stand for (error bars have no legend symbol)
        for name, width, colour in (("p5–p95", 1.5, "#8c959f"), ("p25–p75", 7, "#54aeff")):
            line = {"width": width, "color": colour}
            traces.append({"type": "scatter", "mode": "lines", "x": [None], "y": [None], "name": name, "line": line})
            traces[-1] |= {"legendgroup": name, "hoverinfo": "skip"}
    for name, lo, hi, thickness, colour in (("p5–p95", P5, P95, 1.5, "#8c959f"), ("p25–p75", P25, P75, 7, "#54aeff")):
        bar = {"type": "data", "symmetric": False, "array": [v[hi] - v[P50] for v in q], "width": 0}
        bar |= {"arrayminus": [v[P50] - v[lo] for v in q], "thickness": thickness, "color": colour}
        traces.append({**common, "showlegend": False, "mode": "markers", "name": name, "legendgroup": name})
        traces[-1] |= {"hoverinfo": "skip", "marker": {"size": 0.1, "color": colour}, "error_x": bar}
    label = plot_text(target_label(target))
    median = {"symbol": "line-ns-open", "size": 12, "color": "#0a3069", "line": {"width": 2}}
    traces.append({**common, "mode": "markers", "name": "median", "legendgroup": "median", "marker": median})
    traces[-1]["customdata"] = [
        [plot_text(r["variant"]), *(v[i] for i in (P5, P25, P50, P75, P95)), r["latency"]["p99_ms"], label]
        for r, v in zip(rows, q, strict=True)
    ]
    traces[-1]["hovertemplate"] = (
        "<b>%{customdata[0]}</b><br>%{customdata[7]}<br>p5 %{customdata[1]:.3f} · p25 %{customdata[2]:.3f}"
        " · p50 %{customdata[3]:.3f} · p75 %{customdata[4]:.3f} · p95 %{customdata[5]:.3f}"
        " · p99 %{customdata[6]:.3f} ms<extra></extra>"
    )
    cross = {"symbol": "x-thin-open", "size": 7, "color": "#cf222e", "line": {"width": 1.5}}
    traces.append({**common, "x": [r["latency"]["p99_ms"] for r in rows], "mode": "markers", "name": "p99"})
    traces[-1] |= {"legendgroup": "p99", "hoverinfo": "skip", "marker": cross}
    return traces
