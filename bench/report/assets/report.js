"use strict";
// Sortable tables: a header's button sorts by its column, ascending then descending; numbers
// sort by each cell's data-value, blank cells last either way.
function sortBy(table, column) {
  const th = table.tHead.rows[0].cells[column];
  const direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  for (const header of table.tHead.rows[0].cells) header.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", direction);
  const numeric = th.dataset.type === "number";
  const key = (row) => {
    const cell = row.cells[column];
    if (!cell) return numeric ? NaN : "";
    const raw = cell.dataset.value ?? cell.textContent.trim();
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  };
  const sign = direction === "ascending" ? 1 : -1;
  const rows = [...table.tBodies[0].rows];
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (numeric) {
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
      return sign * (x - y);
    }
    return sign * x.localeCompare(y, undefined, {numeric: true});
  });
  table.tBodies[0].append(...rows);
}
for (const table of document.querySelectorAll("table.sortable")) {
  [...table.tHead.rows[0].cells].forEach((th, column) =>
    th.querySelector("button").addEventListener("click", () => sortBy(table, column)));
}
for (const input of document.querySelectorAll("input[data-filter]")) {
  const table = document.getElementById(input.dataset.filter);
  input.addEventListener("input", () => {
    const terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const row of table.tBodies[0].rows) {
      const text = row.textContent.toLowerCase();
      row.hidden = !terms.every((term) => text.includes(term));
    }
  });
}

// Point labels were placed for this size; should any still overlap (another font, a zoom),
// hide the later, less important one: hovering still names every point.
function guardLabels(gd) {
  const names = (gd.layout.annotations || []).map((a) => a.name);
  const accepted = [];
  let hidden = 0;
  for (const g of gd.querySelectorAll("g.annotation")) {
    if (names[+g.dataset.index] !== "point-label") continue;
    g.style.display = "";
    const box = g.querySelector(".annotation-text-g").getBoundingClientRect();
    const clash = accepted.some((b) => box.left < b.right && b.left < box.right && box.top < b.bottom && b.top < box.bottom);
    if (clash) { g.style.display = "none"; hidden += 1; } else accepted.push(box);
  }
  gd.dataset.hiddenLabels = String(hidden);
}

const REPORT = JSON.parse(document.getElementById("report-data").textContent);
const CONFIG = {displaylogo: false, responsive: false, modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"]};
Promise.all(REPORT.figures.map((figure) =>
  Plotly.newPlot(figure.id, figure.data, figure.layout, CONFIG).then((gd) => {
    guardLabels(gd);
    gd.on("plotly_afterplot", () => guardLabels(gd));
  }))).then(() => { document.body.dataset.ready = "1"; },
            (error) => { console.error("a plot failed to draw:", error); });
