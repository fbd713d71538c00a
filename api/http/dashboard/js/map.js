// Map of the sites coloured by status. The basemap is the configured tile server's
// (ECOGRID_MAP_TILE_URL, OpenStreetMap by default). Without one, or when its tiles cannot be
// had (offline, blocked, down), the sites are drawn over a plain background with a 5°
// graticule and a notice says why: the map is never left broken or empty.
import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { cssVar, esc, num } from "./util.js";

const COLOR = { online: "--ok", offline: "--off", alerting: "--bad", unknown: "--warn" };
const TILE_WAIT_MS = 6000;  // no tile loaded by then: fall back to the plain background
const TILE_ERRORS = 4;      // or this many failed tiles before any loaded

export class SiteMap {
  constructor(el, sites, config) {
    this.el = el;
    this.map = L.map(el, { worldCopyJump: false, attributionControl: Boolean(config.tile_url) });
    const pts = sites.map((s) => [s.lat_deg, s.lon_deg]);
    if (pts.length) this.map.fitBounds(L.latLngBounds(pts).pad(0.3), { maxZoom: 9 });
    else this.map.setView([48, 10], 4);
    if (config.tile_url) this.tiles(config);
    else this.plain("No map tile server is configured (ECOGRID_MAP_TILE_URL): the sites are shown on a plain background.");
    this.markers = new Map();
    this._sites = new Map();
    this.setSites(sites);
  }

  /** Draw these sites: markers of new sites are added, those of deleted ones removed. */
  setSites(sites) {
    const keep = new Set(sites.map((s) => s.id));
    for (const [id, m] of this.markers) {
      if (!keep.has(id)) { m.remove(); this.markers.delete(id); }
    }
    this._sites = new Map(sites.map((s) => [s.id, s]));
    for (const s of sites) {
      const old = this.markers.get(s.id);
      if (old) { old.setLatLng([s.lat_deg, s.lon_deg]); continue; }
      const m = L.circleMarker([s.lat_deg, s.lon_deg], { radius: 8, weight: 2, fillOpacity: 0.8 })
        .addTo(this.map);
      m.bindPopup(() => this.popup(this.siteOf(s.id)));
      this.markers.set(s.id, m);
    }
    if (this.status) this.update(this.status, this.power);
  }

  /** Recolour markers; `status(id)` and `power(id)` come from the live fleet. */
  update(status, power) {
    this.status = status;
    this.power = power;
    for (const [id, m] of this.markers) {
      const st = status(id);
      const c = cssVar(COLOR[st]);
      m.setStyle({ color: c, fillColor: c });
      m.getElement()?.setAttribute("data-status", st);
      m.getElement()?.setAttribute("data-site", id);
      if (m.isPopupOpen()) {
        const content = this.popup(this.siteOf(id));
        if (content !== m.getPopup().getContent()) m.setPopupContent(content);
      }
    }
  }

  /** The configured tile layer; it gives way to the plain background if no tile comes. */
  tiles(config) {
    this.el.dataset.basemap = "loading";
    const layer = L.tileLayer(config.tile_url, { attribution: config.tile_attribution || "" });
    let loaded = 0, failed = 0;
    const giveUp = (why) => {
      if (loaded || this.el.dataset.basemap === "plain") return;
      layer.remove();
      this.map.attributionControl?.remove();
      let host = config.tile_url;
      try { host = new URL(config.tile_url.replace(/[{}]/g, ""), location.href).host; } catch { /* as given */ }
      this.plain(`Map tiles from ${host} ${why}: the sites are shown on a plain background.`);
    };
    layer.on("tileload", () => {
      loaded += 1;
      this.el.dataset.basemap = "tiles";
      clearTimeout(this.tileTimer);
    });
    layer.on("tileerror", () => { failed += 1; if (failed >= TILE_ERRORS) giveUp("could not be loaded"); });
    this.tileTimer = setTimeout(() => giveUp(`did not arrive within ${TILE_WAIT_MS / 1000} s`), TILE_WAIT_MS);
    layer.addTo(this.map);
  }

  /** A plain background with a 5° graticule and a notice saying why there is no basemap. */
  plain(notice) {
    this.el.dataset.basemap = "plain";
    const grid = L.layerGroup().addTo(this.map);
    const line = { color: cssVar("--grid"), weight: 1, interactive: false };
    for (let lat = -80; lat <= 80; lat += 5) L.polyline([[lat, -180], [lat, 180]], line).addTo(grid);
    for (let lon = -180; lon <= 180; lon += 5) L.polyline([[-85, lon], [85, lon]], line).addTo(grid);
    const box = document.createElement("p");
    box.className = "map-notice";
    box.id = "map-notice";
    box.setAttribute("role", "status");
    box.textContent = notice;
    this.el.after(box);
    this.notice = box;
  }

  siteOf(id) { return this._sites.get(id); }

  popup(s) {
    const st = this.status ? this.status(s.id) : "unknown";
    const p = this.power ? this.power(s.id) : { gen: 0, cons: 0, grid: 0 };
    return `<div class="site-popup"><strong>${esc(s.name)}</strong><br>${esc(s.id)} · ` +
      `<span class="status st-${st}">${st}</span><br>generation ${num(p.gen)} kW · ` +
      `consumption ${num(p.cons)} kW<br>grid ${num(p.grid)} kW (export +)<br>` +
      `<a href="#/site/${encodeURIComponent(s.id)}" data-site="${esc(s.id)}">Open site</a></div>`;
  }

  remove() {
    clearTimeout(this.tileTimer);
    this.notice?.remove();
    this.map.remove();
  }
}
