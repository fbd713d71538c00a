// The live picture of the fleet in the browser: sites, devices, their latest telemetry,
// site status (online, offline, alerting) and the fleet power series, fed by the
// WebSocket. Views read it and listen to its "change" events.

const OFFLINE_AFTER_S = 15;  // a site with no telemetry for this long is shown offline
const SAMPLE_EVERY_S = 1;    // fleet power samples are taken at most this often
const KEEP_S = 6 * 3600;     // fleet power kept in the browser

export class LiveFleet extends EventTarget {
  constructor(api, socket) {
    super();
    this.api = api;
    this.sites = [];
    this.siteById = new Map();
    this.devices = new Map();       // id -> {id, site_id, type, ...}
    this.value = new Map();         // device id -> {p_kw, soc, t_s}
    this.siteSeen = new Map();      // site id -> last telemetry time [s]
    this.openAlerts = new Map();    // site id -> number of unacknowledged alerts
    this.kpis = null;
    this.kpiSource = null;
    this.power = { t: [], gen: [], cons: [], bat: [], grid: [] };  // MW
    this.lastSample = 0;
    this.offs = [
      socket.on("telemetry", (m) => this._telemetry(m)),
      socket.on("kpis", (m) => this._kpis(m.kpis, "ws")),
      socket.on("alerts", (m) => { if (m.event !== "report") this.loadAlerts(); }),
      // A site or device was created, changed or deleted: the service runs the new fleet.
      socket.on("fleet", () => this.reloadFleet()),
    ];
    this.tick = setInterval(() => this._emit("status"), 5000);
  }

  close() {
    this.offs.forEach((off) => off());
    clearInterval(this.tick);
  }

  async load() {
    await this.loadFleet();
    this._kpis(await this.api.get("/kpis"), "rest");
    await this.loadAlerts();
  }

  async loadFleet() {
    const sites = await this.api.get("/sites");
    const devices = new Map();
    let offset = 0;
    for (;;) {
      const page = await this.api.get("/devices", { limit: 1000, offset });
      for (const d of page.items) devices.set(d.id, d);
      offset += page.items.length;
      if (!page.items.length || offset >= page.total) break;
    }
    this.sites = sites;
    this.siteById = new Map(sites.map((s) => [s.id, s]));
    this.devices = devices;
    for (const id of [...this.value.keys()]) if (!devices.has(id)) this.value.delete(id);
  }

  /** The fleet changed in the service: load sites and devices again (once for a burst). */
  reloadFleet() {
    clearTimeout(this.fleetTimer);
    this.fleetTimer = setTimeout(async () => {
      try {
        await this.loadFleet();
        this._emit("fleet");
      } catch (err) {
        console.warn("reloading the fleet failed", err);
      }
    }, 300);
  }

  async loadAlerts() {
    const open = await this.api.get("/alerts", { acked: false, limit: 1000 });
    this.openAlerts = new Map();
    for (const a of open) {
      if (a.site_id) this.openAlerts.set(a.site_id, (this.openAlerts.get(a.site_id) || 0) + 1);
    }
    this.openAlertCount = open.length;
    this._emit("alerts");
  }

  /** "online", "offline", "alerting" or "unknown" (no telemetry seen yet). */
  siteStatus(siteId, now_s = Date.now() / 1000) {
    if (this.openAlerts.get(siteId)) return "alerting";
    const seen = this.siteSeen.get(siteId);
    if (seen === undefined) return "unknown";
    return now_s - seen > OFFLINE_AFTER_S ? "offline" : "online";
  }

  /** Live site power: generation, consumption and grid exchange [kW]. */
  sitePower(siteId) {
    let gen = 0, cons = 0, net = 0;
    for (const [id, v] of this.value) {
      const d = this.devices.get(id);
      if (!d || d.site_id !== siteId || v.p_kw == null) continue;
      if (d.type === "pv" && v.p_kw > 0) gen += v.p_kw;  // as twin/kpis.py device_flows
      if ((d.type === "load" || d.type === "ev_charger") && v.p_kw < 0) cons -= v.p_kw;
      net += v.p_kw;
    }
    return { gen, cons, grid: net };
  }

  _kpis(kpis, source) {
    this.kpis = kpis;
    this.kpiSource = source;
    this._emit("kpis");
  }

  _telemetry(msg) {
    for (const s of msg.samples) {
      const v = this.value.get(s.id) || {};
      if (s.p_kw !== undefined) v.p_kw = s.p_kw;
      if (s.soc !== undefined) v.soc = s.soc;
      v.t_s = s.t_s;
      this.value.set(s.id, v);
      this.siteSeen.set(s.site_id, Math.max(this.siteSeen.get(s.site_id) || 0, s.t_s));
    }
    // Fleet sums only once (nearly) every device has reported: partial sums mislead.
    const reported = this.value.size >= 0.9 * this.devices.size;
    if (reported && msg.t_s - this.lastSample >= SAMPLE_EVERY_S) {
      this.lastSample = msg.t_s;
      this._sample(msg.t_s);
    }
    this._emit("telemetry", msg);
  }

  _sample(t_s) {
    let gen = 0, cons = 0, bat = 0, grid = 0;
    for (const [id, v] of this.value) {
      const p = v.p_kw;
      if (p == null) continue;
      const type = this.devices.get(id)?.type;
      if (p > 0 && type === "pv") gen += p;  // as twin/kpis.py device_flows
      if (p < 0 && (type === "load" || type === "ev_charger")) cons -= p;
      if (type === "battery") bat += p;
      grid += p;
    }
    this._push(t_s, gen / 1000, cons / 1000, bat / 1000, grid / 1000);
  }

  _push(t, gen, cons, bat, grid) {
    const s = this.power;
    s.t.push(t); s.gen.push(gen); s.cons.push(cons); s.bat.push(bat); s.grid.push(grid);
    while (s.t.length && s.t[0] < t - KEEP_S) {
      s.t.shift(); s.gen.shift(); s.cons.shift(); s.bat.shift(); s.grid.shift();
    }
  }

  /**
   * Fleet power [MW] over [start_s, end_s] from the service's telemetry history, averaged
   * over buckets of every_s (GET /history/fleet, any fleet size).
   */
  async fleetHistory(start_s, end_s, every_s) {
    return powerHistory(this.api, "/history/fleet", start_s, end_s, every_s, 1000);
  }

  /** One site's power [kW] over [start_s, end_s] (GET /history/sites/{id}). */
  async siteHistory(siteId, start_s, end_s, every_s) {
    return powerHistory(this.api, `/history/sites/${encodeURIComponent(siteId)}`,
      start_s, end_s, every_s, 1);
  }

  _emit(kind, detail) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind, msg: detail } }));
  }
}

/**
 * {t, gen, cons, bat, grid} from a power history endpoint, divided by `scale`
 * (1000 for MW); buckets where no device reported are left out.
 */
async function powerHistory(api, path, start_s, end_s, every_s, scale) {
  const h = await api.get(path, { start: start_s, end: end_s, every: every_s });
  const keep = h.t_s.map((_, i) => i).filter((i) => h.grid_kw[i] != null);
  const col = (k) => keep.map((i) => h[k][i] / scale);
  return { t: keep.map((i) => h.t_s[i]), gen: col("generation_kw"), cons: col("consumption_kw"),
    bat: col("battery_kw"), grid: col("grid_kw") };
}
