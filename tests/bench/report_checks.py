"""What a person would check on report.html in a browser, read from the drawn page: each
check returns what is wrong (an empty list where nothing is). The geometry comes from
getBoundingClientRect on plotly's SVG: `.nsewdrag` is a panel's plot area, `g.legend
rect.bg` a legend's box, `g.annotation` an annotation (point labels are named so)."""

from __future__ import annotations

import contextlib
import itertools
import json
import re

from tests.bench.chromium import Page

GEOMETRY = r"""(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const shown = (el) => el.checkVisibility({opacityProperty: true, visibilityProperty: true})
    && el.getBoundingClientRect().width > 0;
  return [...document.querySelectorAll(".js-plotly-plot")].map((gd) => {
    const names = (gd.layout.annotations || []).map((a) => a.name);
    return {
      id: gd.id,
      svg: box(gd.querySelector("svg.main-svg")),
      plotAreas: [...gd.querySelectorAll(".nsewdrag")].map(box),
      legends: [...gd.querySelectorAll("g.legend")].filter(shown).map((g) => ({
        box: box(g.querySelector("rect.bg")),
        scrolls: (g.querySelector(".scrollbar")?.getBoundingClientRect().height || 0) > 0,
      })),
      labels: [...gd.querySelectorAll("g.annotation")]
        .filter((g) => names[+g.dataset.index] === "point-label" && shown(g))
        .map((g) => ({text: g.textContent, box: box(g.querySelector(".annotation-text-g"))})),
      texts: [...gd.querySelectorAll("svg text")]
        .filter((t) => t.textContent.trim() && shown(t) && !t.closest(".hoverlayer"))
        .map((t) => ({text: t.textContent, box: box(t)})),
      hiddenByGuard: +(gd.dataset.hiddenLabels || 0),
    };
  });
})()"""


def overlap(a: list[float], b: list[float], tolerance: float = 0.5) -> float:
    """The area two [left, top, right, bottom] boxes share once each shrinks by `tolerance` px
    (a negative tolerance grows them: boxes closer than that count as touching)."""
    width = min(a[2], b[2]) - max(a[0], b[0]) - 2 * tolerance
    height = min(a[3], b[3]) - max(a[1], b[1]) - 2 * tolerance
    return width * height if width > 0 and height > 0 else 0.0


def inside(inner: list[float], outer: list[float], slack: float = 1.0) -> bool:
    return all(inner[i] >= outer[i] - slack for i in (0, 1)) and all(inner[i] <= outer[i] + slack for i in (2, 3))


def figures(page: Page) -> list[dict]:
    return page.evaluate(GEOMETRY)


def legend_problems(drawn: list[dict]) -> list[str]:
    """A legend box over any plot area of its figure, cut off by its figure's edge, or too
    tall for its figure (plotly then scrolls it, hiding entries)."""
    found = []
    for figure in drawn:
        for legend, scrolls in ((entry["box"], entry["scrolls"]) for entry in figure["legends"]):
            if scrolls:
                found.append(f"{figure['id']}: legend {legend} scrolls: some entries are hidden")
            found += [
                f"{figure['id']}: legend {legend} over plot area {area}"
                for area in figure["plotAreas"]
                if overlap(legend, area)
            ]
            if not inside(legend, figure["svg"]):
                found.append(f"{figure['id']}: legend {legend} cut off by the figure {figure['svg']}")
    return found


def label_problems(drawn: list[dict]) -> list[str]:
    """Two point labels that overlap, a label outside every plot area, or labels the page's
    own guard had to hide (it hides one of any overlapping pair)."""
    found = []
    for figure in drawn:
        labels = figure["labels"]
        found += [
            f"{figure['id']}: labels {a['text']!r} and {b['text']!r} overlap"
            for a, b in itertools.combinations(labels, 2)
            if overlap(a["box"], b["box"])
        ]
        found += [
            f"{figure['id']}: label {label['text']!r} outside every plot area"
            for label in labels
            if not any(inside(label["box"], area) for area in figure["plotAreas"])
        ]
        if figure["hiddenByGuard"]:
            found.append(f"{figure['id']}: the page hid {figure['hiddenByGuard']} overlapping labels")
    return found


def text_problems(drawn: list[dict]) -> list[str]:
    """Any two texts of a figure (ticks, titles, legend entries, labels) closer than 2 px."""
    return [
        f"{figure['id']}: {a['text']!r} touches {b['text']!r}"
        for figure in drawn
        for a, b in itertools.combinations(figure["texts"], 2)
        if overlap(a["box"], b["box"], tolerance=-1.0)
    ]


def column_values(page: Page, table: str, column: int) -> list[str]:
    script = f"""[...document.getElementById({json.dumps(table)}).tBodies[0].rows].map((row) => {{
        const cell = row.cells[{column}]; return cell.dataset.value ?? cell.textContent.trim(); }})"""
    return page.evaluate(script)


def click_header(page: Page, table: str, title: str) -> tuple[int, str | None]:
    """Clicks the header titled `title` with the mouse; its column and its aria-sort after."""
    find = f"""(() => {{ const cells = [...document.getElementById({json.dumps(table)}).tHead.rows[0].cells];
        const column = cells.findIndex((th) => th.textContent.trim() === {json.dumps(title)});
        const th = cells[column]; th.scrollIntoView({{block: "center"}});
        const r = th.querySelector("button").getBoundingClientRect();
        return [column, r.left + r.width / 2, r.top + r.height / 2]; }})()"""
    column, x, y = page.evaluate(find)
    page.click(x, y)
    state = f"document.getElementById({json.dumps(table)}).tHead.rows[0].cells[{column}].getAttribute('aria-sort')"
    return column, page.evaluate(state)


def sort_problems(page: Page, table: str, title: str, numeric: bool) -> list[str]:
    """Clicking a header twice must sort its column ascending, then descending."""
    found = []
    for expected in ("ascending", "descending"):
        column, state = click_header(page, table, title)
        values = column_values(page, table, column)
        keys = [float(v) for v in values if v not in ("", "—")] if numeric else [_natural(v) for v in values]
        if state != expected or keys != sorted(keys, reverse=expected == "descending"):
            found.append(f"{table} by {title!r}: aria-sort {state}, order {values[:6]} after the {expected} click")
    return found


def _natural(text: str) -> list:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text.lower())]


def hover_text(page: Page, figure: str) -> str | None:
    """Moves the mouse onto the figure's first drawn point; the hover box's text, if one shows."""
    where = f"""(() => {{ const gd = document.getElementById({json.dumps(figure)});
        gd.scrollIntoView({{block: "center"}});
        const point = [...gd.querySelectorAll(".scatterlayer .trace .points path.point")]
          .find((p) => p.getBoundingClientRect().width > 0);
        const r = point.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"""
    x, y = page.evaluate(where)
    page.mouse("mouseMoved", x - 40, y - 40)
    page.mouse("mouseMoved", x, y)
    box = f"document.querySelector('#{figure} .hoverlayer .hovertext')?.textContent"
    try:
        return page.wait_for(box, timeout=5)
    except TimeoutError:
        return None
    finally:
        page.mouse("mouseMoved", 2, 2)


def toggle_states(page: Page, figure: str) -> tuple[str, list[list]]:
    """Clicks the first legend entry twice; the entry's text and its legend group's
    visibility before, after one click and after the second."""
    entry = f"""(() => {{ const gd = document.getElementById({json.dumps(figure)});
        const item = gd.querySelector(".legend .traces"); item.scrollIntoView({{block: "center"}});
        const r = item.querySelector(".legendtoggle").getBoundingClientRect();
        return [r.left + 10, r.top + r.height / 2, item.textContent]; }})()"""
    group = f"""(() => {{ const gd = document.getElementById({json.dumps(figure)});
        const name = gd.data[0].legendgroup;
        return gd.data.filter((t) => t.legendgroup === name).map((t) => t.visible ?? true); }})()"""
    states = [page.evaluate(group)]
    x, y, text = page.evaluate(entry)
    for expected in ("'legendonly'", "true"):
        page.click(x, y)  # plotly applies a legend click after its 300 ms double-click window
        with contextlib.suppress(TimeoutError):
            page.wait_for(f"{group}.every((v) => v === {expected})", timeout=5)
        states.append(page.evaluate(group))
    return text, states
