// The dashboard's entry point: sign-in, navigation (hash routes), connection indicator,
// dark mode. Each view is a module exporting `render(root, ctx)` that returns a cleanup.
import { Api } from "./api.js";
import { LiveFleet } from "./live.js";
import { LiveSocket } from "./socket.js";
import { esc, toast } from "./util.js";
import * as login from "./views/login.js";

const VIEWS = {
  overview: () => import("./views/overview.js"),
  site: () => import("./views/site.js"),
  dispatch: () => import("./views/dispatch.js"),
  alerts: () => import("./views/alerts.js"),
  scenarios: () => import("./views/scenarios.js"),
};

const root = document.getElementById("view");
const ctx = { api: new Api(), user: null, config: {}, toast };
let cleanup = null;
let renderSeq = 0;

function setConnection(state) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.querySelector(".conn-label").textContent = state;
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("ecogrid-theme", next);
  route();  // charts and map take their colours when drawn
}

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] || "overview";
  return VIEWS[name] ? { name, arg: parts[1] } : { name: "overview" };
}

async function route() {
  const seq = ++renderSeq;
  if (cleanup) { cleanup(); cleanup = null; }
  root.replaceChildren();
  if (!ctx.user) {
    cleanup = login.render(root, { ...ctx, onSignedIn: start });
    return;
  }
  const { name, arg } = parseRoute();
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle(
    "active", a.dataset.route === name || (name === "site" && a.dataset.route === "overview")));
  try {
    const view = await VIEWS[name]();
    if (seq !== renderSeq) return;
    root.dataset.view = name;
    cleanup = await view.render(root, { ...ctx, arg }) || null;
  } catch (err) {
    if (seq !== renderSeq) return;
    console.error(err);
    root.innerHTML = `<div class="panel error">Could not show this page: ${esc(err.message)}</div>`;
  }
}

function updateAlertBadge() {
  const el = document.getElementById("alert-count");
  const n = ctx.live?.openAlertCount || 0;
  el.textContent = n;
  el.hidden = n === 0;
}

async function start(user) {
  ctx.user = user;
  ctx.role = user.role;
  ctx.canOperate = user.role === "operator" || user.role === "admin";
  document.body.dataset.role = user.role;
  document.getElementById("who").textContent = `${user.name} (${user.role})`;
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  ctx.socket = new LiveSocket(ctx.api, setConnection);
  ctx.live = new LiveFleet(ctx.api, ctx.socket);
  ctx.live.addEventListener("change", (ev) => {
    if (ev.detail.kind === "alerts") updateAlertBadge();
    // A site page lists its devices: show it again with the changed fleet.
    if (ev.detail.kind === "fleet" && parseRoute().name === "site") route();
  });
  ctx.socket.start();
  try {
    await ctx.live.load();
  } catch (err) {
    toast(`Could not load the fleet: ${err.message}`, true);
  }
  route();
}

async function signOut() {
  ctx.socket?.stop();
  ctx.live?.close();
  await ctx.api.signOut();
  ctx.user = null;
  ctx.socket = null;
  ctx.live = null;
  delete document.body.dataset.role;
  document.getElementById("who").textContent = "";
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  updateAlertBadge();
  route();
}

async function boot() {
  document.getElementById("theme-toggle").onclick = toggleTheme;
  document.getElementById("sign-out").onclick = signOut;
  window.addEventListener("hashchange", route);
  ctx.api.onSignedOut = () => { if (ctx.user) signOut(); };
  try {
    ctx.config = await (await fetch("/dashboard/config.json")).json();
  } catch {
    ctx.config = {};
  }
  if (ctx.config.vendor_missing?.length) {
    root.innerHTML = `<div class="panel error">The dashboard's libraries are missing ` +
      `(${esc(ctx.config.vendor_missing.join(", "))}): run <code>./bootstrap setup</code>.</div>`;
    return;
  }
  if (ctx.api.signedIn) {
    try {
      await start(await ctx.api.get("/auth/me"));
      return;
    } catch {
      await ctx.api.signOut();
    }
  }
  route();
}

boot();
