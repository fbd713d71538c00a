// Site page: site power chart over a time range (history, then live), device table (sort,
// filter, search), per-device live chart, command history with acknowledgement states,
// manual setpoint form (operators and admins only).
import { timeChart } from "../charts.js";
import { badge, esc, html, keepNewest, num, when } from "../util.js";

const TYPES = ["pv", "battery", "ev_charger", "load"];
const KIND = { battery: "p_kw (discharge +)", pv: "p_limit_kw", ev_charger: "p_limit_kw" };
const CHART_WINDOW_S = 900;
const RANGES = [["15 min", 900], ["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];
const SITE_SERIES = [
  { label: "generation", color: "--gen", unit: "kW" },
  { label: "consumption", color: "--cons", unit: "kW" },
  { label: "battery", color: "--bat", unit: "kW" },
  { label: "grid (export +)", color: "--grid-line", unit: "kW" },
];

function rating(d) {
  if (d.type === "pv") return `${num(d.pv_kwp ?? d.inverter_kw, 1)} kWp`;
  if (d.type === "battery") return `${num(d.battery_kwh, 0)} kWh / ${num(d.discharge_kw, 0)} kW`;
  if (d.type === "ev_charger") return `${num(d.ev_max_kw, 0)} kW`;
  if (d.type === "load") return `${num(d.load_peak_kw, 0)} kW peak`;
  return "";
}

export async function render(root, ctx) {
  const { api, live, arg: siteId } = ctx;
  const site = live.siteById.get(siteId);
  if (!site) {
    root.append(html(`<div class="panel error">No site ${esc(siteId)}. <a href="#/">Back to the overview</a></div>`));
    return null;
  }
  const devices = [...live.devices.values()].filter((d) => d.site_id === siteId);
  const page = html(`<div>
    <h1>${esc(site.name)} <span class="muted">${esc(site.id)}</span>
      <span id="site-status"></span></h1>
    <p class="muted">${num(site.lat_deg, 4)}°, ${num(site.lon_deg, 4)}° · ${esc(site.timezone)} ·
      import limit ${num(site.import_limit_kw)} kW · export limit ${num(site.export_limit_kw)} kW ·
      feeder ${esc(site.feeder_id || "–")}</p>
    <section class="panel"><div class="row"><h2 style="margin:0">Site power [kW]</h2>
      <span class="spacer"></span>
      <select id="site-range" aria-label="Time range">${RANGES.map(([l, v]) =>
        `<option value="${v}"${v === 3600 ? " selected" : ""}>${l}</option>`).join("")}</select></div>
      <div class="chart" id="site-chart"></div><p class="muted" id="site-chart-note"></p></section>
    <div class="grid2">
      <section class="panel"><h2>Devices</h2>
        <div class="row"><input id="device-search" type="search" placeholder="Search devices" aria-label="Search devices">
          <select id="device-type" aria-label="Filter by type"><option value="">all types</option>
          ${TYPES.map((t) => `<option>${t}</option>`).join("")}</select>
          <span class="muted" id="device-count"></span></div>
        <div class="table-wrap"><table id="device-table"><thead><tr>
          <th class="sortable" data-key="id">Device</th><th class="sortable" data-key="type">Type</th>
          <th class="sortable" data-key="status">Status</th><th>Rating</th>
          <th class="sortable num" data-key="p_kw">Power [kW]</th><th class="sortable num" data-key="soc">SoC</th>
        </tr></thead><tbody></tbody></table></div></section>
      <section class="panel"><h2 id="device-title">Select a device</h2>
        <div class="chart" id="device-chart"></div>
        <form id="setpoint-form" class="row" hidden>
          <label for="setpoint-value">Setpoint <span id="setpoint-kind" class="muted"></span></label>
          <input id="setpoint-value" type="number" step="any" required style="width:8em"> kW
          <button class="primary" type="submit">Send setpoint</button>
        </form></section>
    </div>
    <section class="panel"><h2>Command history</h2><div class="table-wrap"><table id="command-table">
      <thead><tr><th>#</th><th>Device</th><th>Kind</th><th class="num">Value</th><th>Source</th>
      <th>Status</th><th>Created</th><th>Acknowledged</th><th>By</th></tr></thead><tbody></tbody></table></div>
    </section></div>`);
  root.append(page);

  // -- site power: history from the telemetry store, then live samples ---------------------
  const rangeSel = page.querySelector("#site-range");
  const sitePower = { t: [], gen: [], cons: [], bat: [], grid: [] };
  let siteWindow = [Date.now() / 1000 - Number(rangeSel.value), Date.now() / 1000];
  const siteChart = timeChart(page.querySelector("#site-chart"), SITE_SERIES,
    [[], [], [], [], []], { xRange: () => siteWindow, height: 220 });
  const siteNote = page.querySelector("#site-chart-note");
  function drawSitePower() {
    const p = sitePower;
    const end = Math.max(Date.now() / 1000, p.t.length ? p.t[p.t.length - 1] : 0);
    siteWindow = [end - Number(rangeSel.value), end];
    siteChart.setData([p.t, p.gen, p.cons, p.bat, p.grid]);
  }
  async function loadSiteHistory() {
    const range_s = Number(rangeSel.value);
    const end = Date.now() / 1000;
    siteNote.textContent = "loading history…";
    try {
      const h = await live.siteHistory(siteId, end - range_s, end, Math.max(5, range_s / 200));
      Object.assign(sitePower, h);
      siteNote.textContent = h.t.length ? "history from the telemetry store, then live"
        : "no history in this range yet: live from now";
    } catch (err) {
      siteNote.textContent = `history unavailable: ${err.message}`;
    }
    drawSitePower();
  }
  function sampleSitePower(t_s) {
    const p = sitePower;
    if (p.t.length && t_s - p.t[p.t.length - 1] < 1) return;
    const now = live.sitePower(siteId);
    let bat = 0;
    for (const d of devices) if (d.type === "battery") bat += live.value.get(d.id)?.p_kw || 0;
    p.t.push(t_s); p.gen.push(sitePowerGen()); p.cons.push(now.cons);
    p.bat.push(bat); p.grid.push(now.grid);
    const keepFrom = t_s - Number(rangeSel.value);
    while (p.t.length && p.t[0] < keepFrom) {
      p.t.shift(); p.gen.shift(); p.cons.shift(); p.bat.shift(); p.grid.shift();
    }
  }
  // Generation counts PV and discharging batteries only (as the history and the KPIs do).
  function sitePowerGen() {
    let gen = 0;
    for (const d of devices) {
      const v = live.value.get(d.id)?.p_kw;
      if (v > 0 && (d.type === "pv" || d.type === "battery")) gen += v;
    }
    return gen;
  }
  rangeSel.onchange = loadSiteHistory;
  loadSiteHistory();

  // -- device table ---------------------------------------------------------------------
  let sortKey = "id", sortDir = 1, selected = null;
  const tbody = page.querySelector("#device-table tbody");
  const search = page.querySelector("#device-search");
  const typeSel = page.querySelector("#device-type");
  const val = (d, k) => (k === "p_kw" || k === "soc" ? live.value.get(d.id)?.[k] ?? -Infinity : d[k]);
  function drawDevices() {
    const q = search.value.trim().toLowerCase();
    const rows = devices.filter((d) => (!typeSel.value || d.type === typeSel.value)
      && (!q || d.id.toLowerCase().includes(q) || d.type.includes(q) || (d.tags || []).some((t) => t.includes(q))))
      .sort((a, b) => (val(a, sortKey) > val(b, sortKey) ? sortDir : val(a, sortKey) < val(b, sortKey) ? -sortDir : 0));
    page.querySelector("#device-count").textContent = `${rows.length} of ${devices.length}`;
    tbody.innerHTML = rows.map((d) => {
      const v = live.value.get(d.id) || {};
      return `<tr class="clickable${d.id === selected ? " selected" : ""}" data-device="${esc(d.id)}">
        <td>${esc(d.id)}</td><td>${esc(d.type)}</td><td>${badge(d.status)}</td><td>${rating(d)}</td>
        <td class="num">${num(v.p_kw, 1)}</td><td class="num">${v.soc == null ? "–" : num(100 * v.soc, 0) + " %"}</td></tr>`;
    }).join("");
    page.querySelectorAll("#device-table th.sortable").forEach((th) => th.setAttribute(
      "aria-sort", th.dataset.key === sortKey ? (sortDir > 0 ? "ascending" : "descending") : "none"));
  }
  page.querySelectorAll("#device-table th.sortable").forEach((th) => {
    th.onclick = () => {
      sortDir = th.dataset.key === sortKey ? -sortDir : 1;
      sortKey = th.dataset.key;
      drawDevices();
    };
  });
  search.oninput = drawDevices;
  typeSel.onchange = drawDevices;
  tbody.onclick = (ev) => {
    const tr = ev.target.closest("tr[data-device]");
    if (tr) select(tr.dataset.device);
  };
  drawDevices();

  // -- device chart and setpoint form ---------------------------------------------------
  const chartEl = page.querySelector("#device-chart");
  const form = page.querySelector("#setpoint-form");
  let chart = null, series = [[], []];
  async function select(id) {
    selected = id;
    drawDevices();
    const d = live.devices.get(id);
    page.querySelector("#device-title").textContent = `${id} · ${d.type}`;
    form.hidden = !(ctx.canOperate && KIND[d.type]);
    page.querySelector("#setpoint-kind").textContent = KIND[d.type] ? `(${KIND[d.type]})` : "";
    const end = Date.now() / 1000;
    try {
      const h = await api.get(`/devices/${encodeURIComponent(id)}/telemetry`,
        { start: end - CHART_WINDOW_S, end: end + 60 });
      if (selected !== id) return;
      series = [h.t_s, h.values];
    } catch {
      series = [[], []];
    }
    if (chart) chart.dispose();
    const xRange = () => {
      const last = series[0].length ? series[0][series[0].length - 1] : Date.now() / 1000;
      return [last - CHART_WINDOW_S, last];
    };
    chart = timeChart(chartEl, [{ label: "p_kw", color: "--accent", unit: "kW" }], series,
      { xRange });
  }
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const value = Number(page.querySelector("#setpoint-value").value);
    try {
      const r = await api.post(`/devices/${encodeURIComponent(selected)}/setpoint`, { value_kw: value });
      ctx.toast(`Setpoint ${num(value)} kW sent to ${selected} (command ${r.commands[0]?.id})`);
      loadCommands();
    } catch (err) {
      ctx.toast(`Setpoint refused: ${err.message}`, true);
    }
  };

  // -- command history -------------------------------------------------------------------
  const ctbody = page.querySelector("#command-table tbody");
  const commands = new Map();
  function drawCommands(freshId) {
    const rows = [...commands.values()].sort((a, b) => b.id - a.id).slice(0, 200);
    ctbody.innerHTML = rows.map((c) => `<tr data-command="${c.id}" data-status="${esc(c.status)}"${c.id === freshId ? ' class="fresh"' : ""}>
      <td>${c.id}</td><td>${esc(c.device_id)}</td><td>${esc(c.kind)}</td><td class="num">${num(c.value, 1)}</td>
      <td>${esc(c.source)}</td><td>${badge(c.status)}</td><td>${when(c.created_s, true)}</td>
      <td>${when(c.acked_s, true)}</td><td>${esc(c.created_by || "")}</td></tr>`).join("")
      || '<tr><td colspan="9" class="muted">No commands for this site yet.</td></tr>';
  }
  async function loadCommands() {
    const mine = await api.get("/commands", { site_id: siteId, limit: 200 });
    for (const c of mine) keepNewest(commands, c);
    drawCommands();
  }
  await loadCommands();

  // -- live updates --------------------------------------------------------------------------
  const offCommands = ctx.socket.on("commands", (m) => {
    if (m.command.site_id !== siteId) return;
    keepNewest(commands, m.command);
    drawCommands(m.command.id);
  });
  let lastDraw = 0;
  const statusEl = page.querySelector("#site-status");
  const onChange = (ev) => {
    statusEl.innerHTML = badge(live.siteStatus(siteId));
    if (ev.detail.kind !== "telemetry") return;
    const msg = ev.detail.msg;
    if (msg.samples.some((s) => s.site_id === siteId)) sampleSitePower(msg.t_s);
    for (const s of msg.samples) {
      if (s.id === selected && s.p_kw !== undefined && chart) {
        series[0].push(s.t_s); series[1].push(s.p_kw);
        while (series[0].length && series[0][0] < s.t_s - CHART_WINDOW_S) { series[0].shift(); series[1].shift(); }
        chart.setData(series);
      }
    }
    if (performance.now() - lastDraw > 2000) {
      lastDraw = performance.now();
      drawDevices();
      drawSitePower();
    }
  };
  statusEl.innerHTML = badge(live.siteStatus(siteId));
  live.addEventListener("change", onChange);
  if (devices.length) select(devices[0].id);
  return () => {
    offCommands();
    live.removeEventListener("change", onChange);
    if (chart) chart.dispose();
    siteChart.dispose();
  };
}
