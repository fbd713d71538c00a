// The live WebSocket (/api/v1/ws): token auth, channel listeners, replies to requests,
// automatic reconnect with exponential back-off (0.5 s doubling to 15 s, with jitter).

export const CHANNELS = ["telemetry", "kpis", "plans", "commands", "alerts", "fleet"];

export class LiveSocket {
  /**
   * @param {import("./api.js").Api} api  gives the access token and refreshes it
   * @param {(state: string) => void} onState  "connecting", "live", "reconnecting", "offline"
   */
  constructor(api, onState) {
    this.api = api;
    this.onState = onState;
    this.listeners = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.delay_s = 0.5;
    this.stopped = true;
    this.ws = null;
  }

  start() {
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.onState("offline");
  }

  /** Listen to a channel's messages; returns a function that stops listening. */
  on(channel, fn) {
    if (!this.listeners.has(channel)) this.listeners.set(channel, new Set());
    this.listeners.get(channel).add(fn);
    return () => this.listeners.get(channel).delete(fn);
  }

  /** Send a request (approve, reject, setpoint...) and wait for its reply's result. */
  request(message, timeout_ms = 30000) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("no reply from the server"));
      }, timeout_ms);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  _open() {
    this.onState(this.delay_s > 0.5 ? "reconnecting" : "connecting");
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.api.accessToken }));
    ws.onmessage = (ev) => this._message(JSON.parse(ev.data));
    ws.onclose = (ev) => this._closed(ws, ev.code);
  }

  _message(msg) {
    if (msg.type === "welcome") {
      this.delay_s = 0.5;
      this.ws.send(JSON.stringify({ type: "subscribe", channels: CHANNELS, id: "subscribe" }));
      this.onState("live");
      this._emit("open", msg);
    } else if (msg.type === "reply") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error));
    } else {
      this._emit(msg.type, msg);
    }
  }

  _emit(channel, msg) {
    for (const fn of this.listeners.get(channel) || []) {
      try { fn(msg); } catch (err) { console.error(err); }
    }
  }

  async _closed(ws, code) {
    if (ws !== this.ws) return;
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(new Error("disconnected")); }
    this.pending.clear();
    if (this.stopped) return;
    if (code === 4401 && !(await this.api.refresh())) { this.stop(); return; }
    this.onState("reconnecting");
    const wait_s = this.delay_s * (0.8 + 0.4 * Math.random());
    this.delay_s = Math.min(15, this.delay_s * 2);
    this.timer = setTimeout(() => { if (!this.stopped) this._open(); }, wait_s * 1000);
  }
}
