// Small DOM and formatting helpers shared by the views.

/** Escape text for HTML. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/** An element from an HTML string (one root). */
export function html(text) {
  const t = document.createElement("template");
  t.innerHTML = text.trim();
  return t.content.firstElementChild;
}

/** Number with fixed decimals, or an en dash when missing. */
export function num(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const v = Math.abs(value) < 0.5 * 10 ** -digits ? 0 : Number(value);  // no "-0.0"
  return v.toLocaleString("en-GB", {
    minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Unix seconds as local date and time (or time only). */
export function when(t_s, timeOnly = false) {
  if (!t_s) return "–";
  const d = new Date(t_s * 1000);
  return timeOnly ? d.toLocaleTimeString("en-GB") : d.toLocaleString("en-GB");
}

/** A status label with its colour class. */
export function badge(status) {
  return `<span class="status st-${esc(status)}">${esc(status)}</span>`;
}

/** Show a short message at the bottom of the page. */
export function toast(message, isError = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = isError ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, isError ? 6000 : 3000);
}

/** A CSS custom property's value on the document (for chart colours). */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/**
 * Put a command record into `map` unless the one there is further along: REST lists and
 * WebSocket events can arrive out of order, and a command's transitions only grow.
 */
export function keepNewest(map, rec) {
  const old = map.get(rec.id);
  if (!old || (rec.transitions?.length || 0) >= (old.transitions?.length || 0)) map.set(rec.id, rec);
}
