// Overview: KPI strip, map of the sites by status, fleet power chart with a time range.
import { timeChart } from "../charts.js";
import { SiteMap } from "../map.js";
import { esc, html, num, when } from "../util.js";

const RANGES = [["5 min", 300], ["15 min", 900], ["1 h", 3600], ["6 h", 21600]];
const SERIES = [
  { label: "generation", color: "--gen", unit: "MW" },
  { label: "consumption", color: "--cons", unit: "MW" },
  { label: "battery", color: "--bat", unit: "MW" },
  { label: "grid (export +)", color: "--grid-line", unit: "MW" },
];

export function kpiStrip() {
  return html(`<section class="kpis" id="kpis" aria-label="Fleet KPIs">
    <div class="kpi"><div class="label">Sites</div><div class="value" data-kpi="sites">–</div>
      <div class="sub" data-kpi="devices"></div></div>
    <div class="kpi"><div class="label">Installed capacity</div><div class="value" data-kpi="capacity">–</div><div class="sub">MW</div></div>
    <div class="kpi"><div class="label">Live generation</div><div class="value" data-kpi="generation">–</div><div class="sub">MW</div></div>
    <div class="kpi"><div class="label">Live consumption</div><div class="value" data-kpi="consumption">–</div><div class="sub">MW</div></div>
    <div class="kpi"><div class="label">CO2 avoided today</div><div class="value" data-kpi="co2">–</div><div class="sub" data-kpi="co2-total"></div></div>
    <div class="kpi"><div class="label">Revenue today</div><div class="value" data-kpi="revenue">–</div><div class="sub" data-kpi="revenue-total"></div></div>
    <div class="kpi"><div class="label">Updated</div><div class="value" data-kpi="updated">–</div><div class="sub" data-kpi="source"></div></div>
  </section>`);
}

export function showKpis(strip, k, source) {
  if (!k) return;
  const set = (key, text) => { strip.querySelector(`[data-kpi="${key}"]`).textContent = text; };
  set("sites", k.total_sites);
  set("devices", `${k.devices_online} of ${k.total_devices} devices online`);
  set("capacity", num(k.installed_capacity_mw, 2));
  set("generation", num(k.live_generation_mw, 3));
  set("consumption", num(k.live_consumption_mw, 3));
  set("co2", `${num(k.today?.co2_avoided_t, 3)} t`);
  set("co2-total", `${num(k.to_date?.co2_avoided_t, 2)} t to date`);
  set("revenue", `€${num(k.today?.revenue_eur, 2)}`);
  set("revenue-total", `€${num(k.to_date?.revenue_eur, 2)} to date`);
  set("updated", when(k.t_s, true));
  set("source", source === "ws" ? "live" : "loaded");
  strip.dataset.tS = k.t_s;
  strip.dataset.source = source;
}

export async function render(root, ctx) {
  const { live } = ctx;
  const strip = kpiStrip();
  const page = html(`<div>
      <div class="grid2">
        <section class="panel"><h2>Sites</h2><div class="map" id="site-map"></div>
          <div class="legend muted"><span><i class="swatch s-online"></i>online</span>
          <span><i class="swatch s-offline"></i>offline</span>
          <span><i class="swatch s-alerting"></i>alerting</span>
          <span><i class="swatch s-unknown"></i>no data yet</span></div></section>
        <section class="panel"><div class="row"><h2 style="margin:0">Fleet power [MW]</h2>
          <span class="spacer"></span>
          <select id="range" aria-label="Time range">${RANGES.map(([l, s]) =>
            `<option value="${s}">${l}</option>`).join("")}</select></div>
          <div class="chart" id="fleet-chart"></div>
          <p class="muted" id="chart-note"></p></section>
      </div>
      <section class="panel"><h2>Sites</h2><div class="table-wrap"><table id="site-table">
        <thead><tr><th>Site</th><th>Name</th><th>Status</th><th class="num">Generation [kW]</th>
        <th class="num">Consumption [kW]</th><th class="num">Grid [kW]</th></tr></thead>
        <tbody></tbody></table></div></section>
    </div>`);
  root.append(strip, page);
  showKpis(strip, live.kpis, live.kpiSource);

  const map = new SiteMap(page.querySelector("#site-map"), live.sites, ctx.config);
  const status = (id) => live.siteStatus(id);
  const power = (id) => live.sitePower(id);
  map.update(status, power);

  const chartEl = page.querySelector("#fleet-chart");
  const note = page.querySelector("#chart-note");
  const rangeSel = page.querySelector("#range");
  let history = null;  // fleet history from the telemetry store, for the chosen range
  let xWindow = [Date.now() / 1000 - Number(rangeSel.value), Date.now() / 1000];
  const chart = timeChart(chartEl, SERIES, [[], [], [], [], []], { xRange: () => xWindow });

  function chartData() {
    const range_s = Number(rangeSel.value);
    const p = live.power;
    const end = p.t.length ? p.t[p.t.length - 1] : Date.now() / 1000;
    const start = end - range_s;
    xWindow = [start, end];
    const t = [], cols = [[], [], [], []];
    const add = (tt, g, c, b, gr) => { t.push(tt); cols[0].push(g); cols[1].push(c); cols[2].push(b); cols[3].push(gr); };
    const liveFrom = p.t.length ? p.t[0] : Infinity;
    if (history) {
      history.t.forEach((tt, i) => {
        if (tt >= start && tt < liveFrom) add(tt, history.gen[i], history.cons[i], history.bat[i], history.grid[i]);
      });
    }
    p.t.forEach((tt, i) => { if (tt >= start) add(tt, p.gen[i], p.cons[i], p.bat[i], p.grid[i]); });
    return [t, ...cols];
  }

  async function loadHistory() {
    const range_s = Number(rangeSel.value);
    const end = Date.now() / 1000;
    note.textContent = "loading history…";
    try {
      history = await live.fleetHistory(end - range_s, end, Math.max(5, range_s / 150));
      note.textContent = history.t.length ? "history from the telemetry store, then live"
        : "no history in this range yet: live since this page opened";
    } catch (err) {
      note.textContent = `history unavailable: ${err.message}`;
    }
    chart.setData(chartData());
  }

  const tbody = page.querySelector("#site-table tbody");
  function siteRows() {
    tbody.innerHTML = live.sites.map((s) => {
      const p = live.sitePower(s.id);
      const st = live.siteStatus(s.id);
      return `<tr class="clickable" data-site="${esc(s.id)}"><td><a href="#/site/${encodeURIComponent(s.id)}">${esc(s.id)}</a></td>
        <td>${esc(s.name)}</td><td><span class="status st-${st}">${st}</span></td>
        <td class="num">${num(p.gen)}</td><td class="num">${num(p.cons)}</td><td class="num">${num(p.grid)}</td></tr>`;
    }).join("");
  }
  siteRows();

  let lastDraw = 0;
  const onChange = (ev) => {
    const kind = ev.detail.kind;
    if (kind === "kpis") showKpis(strip, live.kpis, live.kpiSource);
    if (kind === "fleet") {  // sites were added, changed or deleted
      map.setSites(live.sites);
      siteRows();
    }
    if (kind === "telemetry" || kind === "status" || kind === "alerts") {
      const now = performance.now();
      if (kind !== "telemetry" || now - lastDraw > 1000) {
        lastDraw = now;
        map.update(status, power);
        chart.setData(chartData());
        if (live.sites.length <= 400) siteRows();
      }
    }
  };
  live.addEventListener("change", onChange);
  rangeSel.onchange = loadHistory;
  loadHistory();

  return () => {
    live.removeEventListener("change", onChange);
    chart.dispose();
    map.remove();
  };
}
