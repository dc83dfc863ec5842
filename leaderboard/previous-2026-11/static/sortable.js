// Sortable tables for the ipbench leaderboard: click a header to sort its table by that
// column, best value first (the header's data-better: "higher" sorts descending, "lower"
// ascending, anything else ascending); click again to reverse. A cell sorts by its data-sort
// attribute (the number behind the text), else by its text; empty cells always go last.
// Hand-written (no library renders sortable static tables offline); works from file://.
"use strict";

function sortKey(cell) {
  if (!cell) return null;
  const raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  if (raw === "" || raw === "–") return null;
  const num = Number(raw);
  return Number.isNaN(num) ? raw.toLowerCase() : num;
}

function compare(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

function sortBy(table, th) {
  const col = Array.from(th.parentNode.children).indexOf(th);
  const first = th.getAttribute("data-better") === "higher" ? "descending" : "ascending";
  const current = th.getAttribute("aria-sort");
  const order = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
  const sign = order === "ascending" ? 1 : -1;
  const body = table.tBodies[0];
  const toZero = th.getAttribute("data-better") === "zero"; // closest to 0 first: by |value|
  const rows = Array.from(body.rows).map((row, i) => {
    const key = sortKey(row.cells[col]);
    return { row, i, key: toZero && typeof key === "number" ? Math.abs(key) : key };
  });
  rows.sort((x, y) => {
    if (x.key === null || y.key === null) {
      return x.key === y.key ? x.i - y.i : x.key === null ? 1 : -1;
    }
    return sign * compare(x.key, y.key) || x.i - y.i;
  });
  for (const h of th.parentNode.children) h.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", order);
  for (const r of rows) body.appendChild(r.row);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    for (const th of table.tHead.rows[0].cells) {
      th.tabIndex = 0;
      th.addEventListener("click", () => sortBy(table, th));
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
      });
    }
  }
});
