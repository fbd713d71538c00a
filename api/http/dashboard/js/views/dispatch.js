// Dispatch: the proposed plan as a chart (fleet or one site), its expected KPIs beside the
// current state, approve / reject (operators), and its dispatch progress as acks arrive.
import { timeChart } from "../charts.js";
import { badge, esc, html, keepNewest, num, when } from "../util.js";

const KIND_LABEL = { p_kw: "battery p_kw (discharge +)", p_limit_kw: "PV / EV p_limit_kw" };
const COLORS = ["--bat", "--gen", "--cons", "--grid-line"];
const PLAN_KPIS = [
  ["revenue_eur", "Revenue", "EUR", 2], ["cost_eur", "Cost", "EUR", 2], ["co2_kg", "CO2", "kg", 1],
  ["import_kwh", "Import", "kWh", 1], ["export_kwh", "Export", "kWh", 1],
  ["peak_import_kw", "Peak import", "kW", 1], ["curtailed_kwh", "Curtailed", "kWh", 1],
  ["battery_throughput_kwh", "Battery throughput", "kWh", 1], ["ev_kwh", "EV energy", "kWh", 1],
];
const IN_FLIGHT = new Set(["pending", "queued", "sent", "received"]);  // then a final state

export async function render(root, ctx) {
  const { api, live } = ctx;
  const page = html(`<div>
    <div class="row"><h1 style="margin:0">Dispatch</h1><span class="spacer"></span>
      <select id="plan-select" aria-label="Plan"></select>
      ${ctx.canOperate ? '<button id="plan-request" type="button">Propose a plan now</button>' : ""}</div>
    <section class="panel" id="plan-panel"><p class="muted">No plan yet.</p></section>
  </div>`);
  root.append(page);
  const panel = page.querySelector("#plan-panel");
  const sel = page.querySelector("#plan-select");
  let plans = [], plan = null, chart = null, commands = new Map();

  let loads = 0;  // only the latest load draws: responses can come back out of order
  async function loadPlans(selectId) {
    const seq = ++loads;
    const list = await api.get("/plans", { limit: 20 });
    if (seq !== loads) return;
    plans = list;
    sel.innerHTML = plans.map((p) => `<option value="${esc(p.id)}">${when(p.created_s, true)} · ${esc(p.status)} · ${esc(p.id)}</option>`).join("");
    const id = selectId || plans.find((p) => p.status === "proposed")?.id || plans[0]?.id;
    if (id) { sel.value = id; await show(id, seq); }
  }

  async function show(id, seq = ++loads) {
    const [rec, cmds] = await Promise.all([api.get(`/plans/${encodeURIComponent(id)}`),
      api.get("/commands", { plan_id: id, limit: 5000 })]);
    if (seq !== loads) return;
    if (plan?.id !== id) commands = new Map();
    plan = rec;
    for (const c of cmds) keepNewest(commands, c);
    draw();
  }

  function draw() {
    if (chart) { chart.dispose(); chart = null; }
    const k = live.kpis || {};
    const canDecide = ctx.canOperate && plan.status === "proposed";
    panel.innerHTML = `
      <div class="row"><h2 style="margin:0">Plan ${esc(plan.id)}</h2> <span id="plan-status">${badge(plan.status)}</span>
        <span class="muted">from ${when(plan.start_s)} · ${plan.n_steps} × ${num(plan.step_s / 60, 0)} min ·
        solver ${esc(plan.solver_status)} in ${num(plan.solver_time_s, 2)} s</span>
        <span class="spacer"></span>
        ${canDecide ? '<button id="plan-approve" class="primary" type="button">Approve</button> <button id="plan-reject" class="danger" type="button">Reject</button>' : ""}</div>
      ${plan.decided_by ? `<p class="muted">${esc(plan.status)} by ${esc(plan.decided_by)} at ${when(plan.decided_s)}${plan.reason ? ` — ${esc(plan.reason)}` : ""}</p>` : ""}
      <div class="grid2">
        <div><div class="row"><label for="plan-scope">Show</label><select id="plan-scope">
          <option value="">whole fleet</option>${live.sites.map((s) => `<option value="${esc(s.id)}">${esc(s.id)} · ${esc(s.name)}</option>`).join("")}
          </select></div><div class="chart" id="plan-chart"></div></div>
        <div><h2>Expected KPIs of the plan, beside the current state</h2><table id="plan-kpis">
          <thead><tr><th>Plan (horizon)</th><th class="num">Expected</th></tr></thead><tbody>
          ${PLAN_KPIS.filter(([key]) => plan.kpis?.[key] !== undefined).map(([key, label, unit, d]) =>
            `<tr><td>${label} [${unit}]</td><td class="num">${num(plan.kpis[key], d)}</td></tr>`).join("")}
          </tbody><thead><tr><th>Current state</th><th class="num">Now</th></tr></thead><tbody>
          <tr><td>Live generation [MW]</td><td class="num">${num(k.live_generation_mw, 3)}</td></tr>
          <tr><td>Live consumption [MW]</td><td class="num">${num(k.live_consumption_mw, 3)}</td></tr>
          <tr><td>Revenue today [EUR]</td><td class="num">${num(k.today?.revenue_eur, 2)}</td></tr>
          <tr><td>CO2 avoided today [t]</td><td class="num">${num(k.today?.co2_avoided_t, 3)}</td></tr>
          </tbody></table></div>
      </div>
      <h2>Dispatch progress</h2><div id="plan-progress"></div>`;
    const scope = panel.querySelector("#plan-scope");
    scope.onchange = () => drawChart(scope.value);
    drawChart("");
    drawProgress();
    panel.querySelector("#plan-approve")?.addEventListener("click", () => decide("approve"));
    panel.querySelector("#plan-reject")?.addEventListener("click", () => decide("reject"));
  }

  function drawChart(siteId) {
    if (chart) chart.dispose();
    const el = panel.querySelector("#plan-chart");
    const t = Array.from({ length: plan.n_steps }, (_, i) => plan.start_s + i * plan.step_s);
    const kinds = Object.keys(plan.setpoints || {});
    const cols = kinds.map((kind) => {
      const sum = new Array(plan.n_steps).fill(null);
      for (const [dev, values] of Object.entries(plan.setpoints[kind])) {
        if (siteId && live.devices.get(dev)?.site_id !== siteId) continue;
        values.forEach((v, i) => { if (v != null) sum[i] = (sum[i] || 0) + v; });
      }
      return sum;
    });
    chart = timeChart(el, kinds.map((kind, i) => ({ label: `${KIND_LABEL[kind] || kind} [kW]`,
      color: COLORS[i % COLORS.length], unit: "kW" })), [t, ...cols]);
  }

  function drawProgress() {
    const el = panel.querySelector("#plan-progress");
    const all = [...commands.values()];
    const by = {};
    for (const c of all) by[c.status] = (by[c.status] || 0) + 1;
    const applied = by.applied || 0, inFlight = all.filter((c) => IN_FLIGHT.has(c.status)).length;
    const pct = all.length ? (100 * applied) / all.length : 0;
    el.dataset.total = all.length;
    el.dataset.applied = applied;
    el.dataset.inFlight = inFlight;
    el.innerHTML = all.length ? `<div class="progress" title="${num(pct, 0)} % applied"><div style="width:${pct}%"></div></div>
      <p><strong id="plan-applied">${applied}</strong> of ${all.length} setpoints applied · ${inFlight} in flight ·
      ${Object.entries(by).map(([s, n]) => `${badge(s)} ${n}`).join(" ")}</p>`
      : '<p class="muted">No setpoints sent for this plan (yet).</p>';
  }

  async function decide(action) {
    let body;
    if (action === "reject") {
      const reason = prompt("Reason for rejecting the plan (optional)") ?? null;
      body = reason ? { reason } : undefined;
    }
    try {
      const rec = await api.post(`/plans/${encodeURIComponent(plan.id)}/${action}`, body);
      if (rec.id === plan.id) { plan = { ...plan, ...rec }; draw(); }
      ctx.toast(`Plan ${plan.id} ${action === "approve" ? "approved" : "rejected"}`);
      await loadPlans(plan.id);
    } catch (err) {
      ctx.toast(`Could not ${action} the plan: ${err.message}`, true);
    }
  }

  sel.onchange = () => show(sel.value);
  page.querySelector("#plan-request")?.addEventListener("click", async (ev) => {
    ev.target.disabled = true;
    try {
      const p = await api.post("/plans");
      await loadPlans(p.id);
    } catch (err) {
      ctx.toast(`No plan: ${err.message}`, true);
    } finally {
      ev.target.disabled = false;
    }
  });

  const offCommands = ctx.socket.on("commands", (m) => {
    if (!plan || m.command.plan_id !== plan.id) return;
    keepNewest(commands, m.command);
    drawProgress();
  });
  const offPlans = ctx.socket.on("plans", async (m) => {
    const id = m.plan?.id || m.plan_id;
    if (m.event === "proposed" || (plan && id === plan.id)) {
      const keep = plan && m.event !== "proposed" ? plan.id : undefined;
      await loadPlans(keep);
    }
  });
  await loadPlans();
  return () => { offCommands(); offPlans(); if (chart) chart.dispose(); };
}
