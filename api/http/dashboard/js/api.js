// REST client of /api/v1: OAuth2 password sign-in, token refresh, JSON errors.

const BASE = "/api/v1";
const KEY = "ecogrid-tokens";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor(storage = sessionStorage) {
    this.storage = storage;
    this.tokens = JSON.parse(storage.getItem(KEY) || "null");
    this.onSignedOut = () => {};
  }

  get signedIn() { return Boolean(this.tokens); }
  get accessToken() { return this.tokens?.access_token; }

  _keep(tokens) {
    this.tokens = tokens;
    if (tokens) this.storage.setItem(KEY, JSON.stringify(tokens));
    else this.storage.removeItem(KEY);
  }

  async signIn(username, password) {
    const body = new URLSearchParams({ username, password });
    const r = await fetch(`${BASE}/auth/token`, { method: "POST", body });
    if (!r.ok) throw new ApiError(r.status, await errorText(r));
    this._keep(await r.json());
    return this.get("/auth/me");
  }

  async signOut() {
    const refresh = this.tokens?.refresh_token;
    this._keep(null);
    if (refresh) {
      await fetch(`${BASE}/auth/logout`, { method: "POST", headers: JSON_HEADERS,
        body: JSON.stringify({ refresh_token: refresh }) }).catch(() => {});
    }
  }

  /** New tokens from the refresh token; false (and signed out) when that fails. */
  async refresh() {
    const refresh = this.tokens?.refresh_token;
    if (!refresh) return false;
    if (!this._refreshing) {
      this._refreshing = fetch(`${BASE}/auth/refresh`, { method: "POST", headers: JSON_HEADERS,
        body: JSON.stringify({ refresh_token: refresh }) })
        .then(async (r) => {
          if (!r.ok) return false;
          this._keep(await r.json());
          return true;
        })
        .catch(() => false)
        .finally(() => { this._refreshing = null; });
    }
    const ok = await this._refreshing;
    if (!ok) { this._keep(null); this.onSignedOut(); }
    return ok;
  }

  async request(method, path, { params, body } = {}) {
    const url = new URL(BASE + path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
    const send = () => fetch(url, {
      method,
      headers: { ...JSON_HEADERS, Authorization: `Bearer ${this.accessToken}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let r = await send();
    if (r.status === 401 && await this.refresh()) r = await send();
    if (!r.ok) throw new ApiError(r.status, await errorText(r));
    return r.json();
  }

  get(path, params) { return this.request("GET", path, { params }); }
  post(path, body) { return this.request("POST", path, { body }); }
}

const JSON_HEADERS = { "Content-Type": "application/json" };

async function errorText(r) {
  try {
    const body = await r.json();
    return body.error || body.detail || `${r.status} ${r.statusText}`;
  } catch {
    return `${r.status} ${r.statusText}`;
  }
}
