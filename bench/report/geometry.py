"""Where things land on the report's plots, worked out before the browser draws them: text
widths, panel grids, axis ranges, one colour per artifact, and point labels placed so that
none overlaps another, a marker or the panel's edge.

The figures have a fixed width and explicit domains, margins and axis ranges, so every
point's pixel position is known here; plotly.js only draws what these numbers say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

FIGURE_WIDTH = 1180  # px; the page is 1240 px wide, and narrower windows scroll a figure sideways
FONT = "Arial, 'Liberation Sans', Helvetica, sans-serif"
LABEL_SIZE = 11
# Arial's advance widths (1/1000 em) for ASCII 32..126; Liberation Sans has the same metrics.
_WIDTHS = [
    278, 278, 355, 556, 556, 889, 667, 222, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778,
    722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278,
    278, 278, 469, 556, 222, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]  # fmt: skip
# plotly's Dark24: distinct on white; past 24 artifacts the marker symbol changes too
PALETTE = [
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B",
    "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1",
    "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
]  # fmt: skip
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross"]
AXIS = {"showline": True, "linecolor": "#8c959f", "gridcolor": "#eaeef2", "zeroline": False, "ticks": "outside"}

Box = tuple[float, float, float, float]  # left, top, right, bottom in px


def text_width(text: str, size: float) -> float:
    """Rendered width in px of `text` at font size `size` (wide characters counted as 1 em)."""
    return sum(_WIDTHS[ord(c) - 32] if 32 <= ord(c) < 127 else 1000 for c in text) * size / 1000


def plot_text(value: str) -> str:
    """A string for plotly's text (names, legends, hover): it reads a subset of HTML, so escape.
    Names never go into hover templates, where %{...} would be read."""
    return escape(value, quote=False)


def colours(names: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker symbol) per artifact, in the order given, the same in every figure."""
    return {
        name: (PALETTE[i % len(PALETTE)], SYMBOLS[(i // len(PALETTE)) % len(SYMBOLS)]) for i, name in enumerate(names)
    }


def legend_margin(names: list[str], size: int = 12) -> int:
    """A right margin that holds a legend of `names`: a 12 px gap, plotly's 40 px symbol
    column, the longest name and 16 px to spare."""
    return int(max(text_width(name, size) for name in names) + 12 + 40 + 16)


@dataclass(frozen=True)
class Grid:
    """Panels of equal size in rows and columns inside fixed margins."""

    rows: int
    columns: int
    cell_height: float
    margin: dict
    width: int = FIGURE_WIDTH
    hgap: float = 70
    vgap: float = 90

    @property
    def plot_width(self) -> float:
        return self.width - self.margin["l"] - self.margin["r"]

    @property
    def plot_height(self) -> float:
        return self.rows * self.cell_height + (self.rows - 1) * self.vgap

    @property
    def height(self) -> int:
        return int(self.plot_height + self.margin["t"] + self.margin["b"])

    @property
    def cell_width(self) -> float:
        return (self.plot_width - (self.columns - 1) * self.hgap) / self.columns

    def rect(self, row: int, column: int) -> Box:
        """A panel's plot area in px inside the figure."""
        left = self.margin["l"] + column * (self.cell_width + self.hgap)
        top = self.margin["t"] + row * (self.cell_height + self.vgap)
        return left, top, left + self.cell_width, top + self.cell_height

    def domain(self, row: int, column: int) -> tuple[list[float], list[float]]:
        """The same area as plotly's x and y domains (fractions of the plotting area)."""
        left, top, right, bottom = self.rect(row, column)
        x = [(left - self.margin["l"]) / self.plot_width, (right - self.margin["l"]) / self.plot_width]
        y = [1 - (bottom - self.margin["t"]) / self.plot_height, 1 - (top - self.margin["t"]) / self.plot_height]
        return [max(0.0, x[0]), min(1.0, x[1])], [max(0.0, y[0]), min(1.0, y[1])]

    def layout(self) -> dict:
        return {"width": self.width, "height": self.height, "margin": {**self.margin, "autoexpand": False}}


def padded(low: float, high: float, before: float, after: float) -> list[float]:
    span = (high - low) or abs(high) * 0.1 or 1.0
    return [low - before * span, high + after * span]


_MANTISSAS = (  # tick mantissas by the decades an axis spans: at least three ticks, none crowded
    (2.5, (1,)),
    (1.2, (1, 2, 5)),
    (0.6, (1, 2, 3, 5, 7)),
    (0.0, (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)),
)


def log_range(low: float, high: float, before: float, after: float) -> tuple[list[float], dict]:
    """A log axis range (in log10 units) at least 0.3 decades wide, and its ticks written out
    in full (0.5, 1, 2, 5, 10, …; plotly's own log ticks abbreviate 20 and 50 to 2 and 5)."""
    low, high = math.log10(low), math.log10(high)
    if high - low < 0.3:
        middle = (low + high) / 2
        low, high = middle - 0.15, middle + 0.15
    span = high - low
    axis_range = [low - before * span, high + after * span]
    mantissas = next(m for floor, m in _MANTISSAS if span > floor)
    ticks = [
        m * 10.0**decade
        for decade in range(math.floor(axis_range[0]), math.ceil(axis_range[1]) + 1)
        for m in mantissas
        if axis_range[0] <= math.log10(m * 10.0**decade) <= axis_range[1]
    ]
    return axis_range, {"tickvals": ticks, "ticktext": [tick_text(tick) for tick in ticks]}


def tick_text(value: float) -> str:
    """0.05, 2, 150, 20k, 1.5M: short enough for narrow panels, never 5×10⁻²."""
    for scale, suffix in ((1e6, "M"), (1e4, "k")):
        if value >= scale:
            return f"{value / (1e3 if suffix == 'k' else scale):.6g}{suffix}"
    return f"{value:.6g}"


def overlaps(a: Box, b: Box, gap: float = 0.0) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


_DIRECTIONS = [(1, 0), (1, -1), (-1, -1), (1, 1), (0, -1), (-1, 0), (-1, 1), (0, 1)]


def place_labels(
    panel: Box, markers: list[tuple[float, float]], wanted: list[tuple[float, float, str]], radius: float = 5.0
) -> list[tuple[float, float] | None]:
    """Greedy label placement. `markers`: every point drawn in the panel (px); `wanted`:
    (x, y, text) to label, most important first. Each label tries 8 directions at growing
    distances and takes the first spot inside the panel that touches no marker and no label
    placed before it. Returns each label's centre offset from its point (plotly's annotation
    ax, ay), or None where nothing fits: hover still names that point."""
    obstacles = [(x - radius, y - radius, x + radius, y + radius) for x, y in markers]
    placed: list[Box] = []
    offsets: list[tuple[float, float] | None] = []
    for x, y, text in wanted:
        width, height = text_width(text, LABEL_SIZE) + 8, LABEL_SIZE * 1.3 + 6  # padding and border
        found = None
        for distance in (4, 14, 28, 46, 70):
            for dx, dy in _DIRECTIONS:
                reach = distance * 0.7 if dx and dy else distance  # diagonals sit nearer
                cx = x + dx * (radius + reach + width / 2)
                cy = y + dy * (radius + reach + height / 2)
                box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
                inside = box[0] >= panel[0] + 2 and box[2] <= panel[2] - 2
                inside = inside and box[1] >= panel[1] + 2 and box[3] <= panel[3] - 2
                if (
                    inside
                    and not any(overlaps(box, o) for o in obstacles)
                    and not any(overlaps(box, p, 3) for p in placed)
                ):
                    found = box, (round(cx - x, 1), round(cy - y, 1))
                    break
            if found:
                break
        if found:
            placed.append(found[0])
        offsets.append(found[1] if found else None)
    return offsets
