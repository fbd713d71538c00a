// Alerts: list with filters (state, severity, text), acknowledge (operators), live arrival.
// The service announces on the "alerts" channel: opened, reopened, cleared, acknowledged
// (each with the alert record) and report (a scheduled report was written).
import { badge, esc, html, when } from "../util.js";

export async function render(root, ctx) {
  const { api } = ctx;
  const page = html(`<div><h1>Alerts</h1><section class="panel">
    <div class="row">
      <select id="alert-state" aria-label="State"><option value="open">open</option>
        <option value="acked">acknowledged</option><option value="all">all</option></select>
      <select id="alert-severity" aria-label="Severity"><option value="">all severities</option>
        <option>critical</option><option>warning</option><option>info</option></select>
      <input id="alert-search" type="search" placeholder="Search site, device, text" aria-label="Search alerts">
      <span class="muted" id="alert-total"></span></div>
    <div class="table-wrap"><table id="alert-table"><thead><tr><th>#</th><th>Raised</th><th>Severity</th>
      <th>Kind</th><th>Site</th><th>Device</th><th>Message</th><th>Acknowledged</th><th></th></tr></thead>
      <tbody></tbody></table></div></section></div>`);
  root.append(page);
  const alerts = new Map();
  const state = page.querySelector("#alert-state");
  const sev = page.querySelector("#alert-severity");
  const search = page.querySelector("#alert-search");
  const tbody = page.querySelector("#alert-table tbody");
  const fresh = new Set();

  function draw() {
    const q = search.value.trim().toLowerCase();
    const rows = [...alerts.values()].sort((a, b) => b.id - a.id).filter((a) =>
      (state.value === "all" || (state.value === "open") === (a.acked_s == null))
      && (!sev.value || a.severity === sev.value)
      && (!q || [a.site_id, a.device_id, a.message, a.kind].some((x) => (x || "").toLowerCase().includes(q))));
    page.querySelector("#alert-total").textContent = `${rows.length} shown`;
    tbody.innerHTML = rows.map((a) => `<tr data-alert="${a.id}"${fresh.has(a.id) ? ' class="fresh"' : ""}>
      <td>${a.id}</td><td>${when(a.created_s)}</td><td>${badge(a.severity)}</td><td>${esc(a.kind)}</td>
      <td>${a.site_id ? `<a href="#/site/${encodeURIComponent(a.site_id)}">${esc(a.site_id)}</a>` : ""}</td>
      <td>${esc(a.device_id || "")}</td><td>${esc(a.message)}${a.cleared_s
        ? ` <span class="muted" data-cleared>(cleared ${when(a.cleared_s, true)})</span>` : ""}</td>
      <td>${a.acked_s ? `${esc(a.acked_by)} · ${when(a.acked_s, true)}` : ""}</td>
      <td>${ctx.canOperate && a.acked_s == null ? `<button type="button" data-ack="${a.id}">Acknowledge</button>` : ""}</td></tr>`).join("")
      || '<tr><td colspan="9" class="muted">No alerts.</td></tr>';
    fresh.clear();
  }
  tbody.onclick = async (ev) => {
    const id = ev.target.dataset?.ack;
    if (!id) return;
    ev.target.disabled = true;
    try {
      const rec = await api.post(`/alerts/${id}/ack`);
      alerts.set(rec.id, rec);
      draw();
    } catch (err) {
      ctx.toast(`Could not acknowledge: ${err.message}`, true);
      ev.target.disabled = false;
    }
  };
  for (const el of [state, sev]) el.onchange = draw;
  search.oninput = draw;
  for (const a of await api.get("/alerts", { limit: 1000 })) alerts.set(a.id, a);
  draw();
  const off = ctx.socket.on("alerts", (m) => {
    if (m.event === "report") {
      ctx.toast(`Report ${m.period} written: ${(m.files || []).join(", ")}`);
      return;
    }
    if (!m.alert) return;
    alerts.set(m.alert.id, { ...alerts.get(m.alert.id), ...m.alert });
    if (m.event === "opened" || m.event === "reopened") fresh.add(m.alert.id);
    draw();
  });
  return off;
}
