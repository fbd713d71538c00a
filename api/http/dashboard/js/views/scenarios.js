// Scenarios: the runs, a KPI comparison table across the chosen runs, a plot per KPI, and
// one run's fleet flows over time (from its results, GET /scenarios/{id}/series).
import { barChart, timeChart } from "../charts.js";
import { badge, esc, html, num, when } from "../util.js";

const MAX_SERIES_POINTS = 600;  // the series is averaged down to about this many points
const FLOW_SERIES = [
  { label: "PV", color: "--gen", unit: "MW", key: "pv_kw" },
  { label: "consumption (loads + EV)", color: "--cons", unit: "MW", keys: ["load_kw", "ev_kw"], sign: -1 },
  { label: "battery", color: "--bat", unit: "MW", key: "battery_kw" },
  { label: "grid (export +)", color: "--grid-line", unit: "MW", key: "net_kw" },
];

export async function render(root, ctx) {
  const runs = await ctx.api.get("/scenarios", { limit: 200 });
  const page = html(`<div><h1>Scenarios</h1>
    <section class="panel"><h2>Runs</h2><div class="table-wrap"><table id="run-table"><thead><tr>
      <th>Compare</th><th>Run</th><th>Status</th><th class="num">Progress</th><th>Submitted</th><th>By</th><th>Error</th>
      </tr></thead><tbody></tbody></table></div></section>
    <div class="grid2"><section class="panel"><div class="row"><h2 style="margin:0">KPI comparison</h2>
      <span class="spacer"></span><label><input type="checkbox" id="kpi-sites"> per site</label></div>
      <div class="table-wrap" id="kpi-compare"></div></section>
    <section class="panel"><div class="row"><h2 style="margin:0">Plot</h2><select id="kpi-pick" aria-label="KPI"></select></div>
      <div class="chart" id="kpi-chart"></div></section></div>
    <section class="panel"><div class="row"><h2 style="margin:0">Fleet flows [MW]</h2>
      <select id="series-run" aria-label="Run"></select></div>
      <div class="chart" id="series-chart"></div><p class="muted" id="series-note"></p></section></div>`);
  root.append(page);
  const chosen = new Set(runs.filter((r) => r.status === "done").slice(0, 6).map((r) => r.id));
  const tbody = page.querySelector("#run-table tbody");
  tbody.innerHTML = runs.map((r) => `<tr data-run="${esc(r.id)}">
    <td><input type="checkbox" data-run="${esc(r.id)}" ${chosen.has(r.id) ? "checked" : ""} ${r.status === "done" ? "" : "disabled"} aria-label="compare ${esc(r.id)}"></td>
    <td>${esc(r.id)}</td><td>${badge(r.status)}</td><td class="num">${num(100 * (r.progress || 0), 0)} %</td>
    <td>${when(r.created_s)}</td><td>${esc(r.created_by)}</td><td class="error">${esc(r.error || "")}</td></tr>`).join("")
    || '<tr><td colspan="7" class="muted">No scenario runs yet (submit one with <code>POST /api/v1/scenarios</code> or <code>ecogrid scenario</code>).</td></tr>';
  let chart = null;
  const pick = page.querySelector("#kpi-pick");

  function flat(kpis, prefix = "") {
    const out = {};
    for (const [k, v] of Object.entries(kpis || {})) {
      if (typeof v === "number") out[prefix + k] = v;
      else if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(out, flat(v, `${prefix}${k}.`));
    }
    return out;
  }

  function draw() {
    const sel = runs.filter((r) => chosen.has(r.id));
    const table = sel.map((r) => flat(r.kpis));
    const perSite = page.querySelector("#kpi-sites").checked;
    const names = [...new Set(table.flatMap((t) => Object.keys(t)))].sort()
      .filter((n) => perSite || !n.startsWith("sites."));
    page.querySelector("#kpi-compare").innerHTML = sel.length ? `<table id="kpi-table"><thead><tr><th>KPI</th>
      ${sel.map((r) => `<th class="num">${esc(r.id)}</th>`).join("")}</tr></thead><tbody>
      ${names.map((n) => `<tr><td>${esc(n)}</td>${table.map((t) => `<td class="num">${num(t[n], 2)}</td>`).join("")}</tr>`).join("")}
      </tbody></table>` : '<p class="muted">Choose finished runs to compare.</p>';
    const keep = pick.value;
    pick.innerHTML = names.map((n) => `<option>${esc(n)}</option>`).join("");
    if (names.includes(keep)) pick.value = keep;
    plot(sel, table);
  }
  function plot(sel, table) {
    if (chart) { chart.dispose(); chart = null; }
    if (!sel.length || !pick.value) return;
    chart = barChart(page.querySelector("#kpi-chart"), sel.map((r) => r.id),
      table.map((t) => t[pick.value] ?? null), { label: pick.value });
  }
  tbody.onchange = (ev) => {
    const id = ev.target.dataset.run;
    if (ev.target.checked) chosen.add(id); else chosen.delete(id);
    draw();
  };
  page.querySelector("#kpi-sites").onchange = draw;

  // -- one run's fleet flows over time -----------------------------------------------------
  let seriesChart = null;
  const seriesRun = page.querySelector("#series-run");
  const seriesNote = page.querySelector("#series-note");
  const done = runs.filter((r) => r.status === "done");
  seriesRun.innerHTML = done.map((r) => `<option value="${esc(r.id)}">${esc(r.id)}</option>`).join("");
  async function showSeries() {
    if (seriesChart) { seriesChart.dispose(); seriesChart = null; }
    const id = seriesRun.value;
    if (!id) { seriesNote.textContent = "No finished run yet."; return; }
    seriesNote.textContent = "loading…";
    try {
      const h = await ctx.api.get(`/scenarios/${encodeURIComponent(id)}/series`,
        { points: MAX_SERIES_POINTS });
      if (seriesRun.value !== id) return;
      const col = (f) => h.t_s.map((_, i) => {
        const keys = f.keys || [f.key];
        const vals = keys.map((k) => h[k]?.[i]).filter((v) => v != null);
        return vals.length ? (f.sign || 1) * vals.reduce((a, b) => a + b, 0) / 1000 : null;
      });
      seriesChart = timeChart(page.querySelector("#series-chart"), FLOW_SERIES,
        [h.t_s, ...FLOW_SERIES.map(col)]);
      seriesNote.textContent = `${h.t_s.length} points${h.every_s ? `, averaged over ${num(h.every_s / 3600, 2)} h` : ""}`;
    } catch (err) {
      seriesNote.textContent = `series unavailable: ${err.message}`;
    }
  }
  seriesRun.onchange = showSeries;
  showSeries();
  pick.onchange = () => { const sel = runs.filter((r) => chosen.has(r.id)); plot(sel, sel.map((r) => flat(r.kpis))); };
  draw();
  return () => {
    if (chart) chart.dispose();
    if (seriesChart) seriesChart.dispose();
  };
}
