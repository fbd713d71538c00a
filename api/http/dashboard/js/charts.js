// uPlot helpers: theme colours, responsive width, time series and bar charts.
import uPlot from "/vendor/uplot/uPlot.esm.js";
import { cssVar } from "./util.js";

/**
 * A time-series chart in `el`.
 * @param {HTMLElement} el
 * @param {{label: string, color: string, unit?: string}[]} series  colours as CSS variables
 * @param {number[][]} data  [t_s, ...values]
 * @param {{height?: number, bars?: boolean, xRange?: () => number[]}} options
 */
export function timeChart(el, series, data, { height = 260, bars = false, xRange = null } = {}) {
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") },
    ticks: { stroke: cssVar("--grid") } };
  const opts = {
    width: Math.max(200, el.clientWidth), height,
    series: [{}, ...series.map((s) => ({
      label: s.label, stroke: cssVar(s.color), width: 2,
      fill: bars ? cssVar(s.color) : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
      value: (u, v) => (v == null ? "–" : `${v.toFixed(2)} ${s.unit || ""}`),
    }))],
    axes: [{ ...axis }, { ...axis, size: 60 }],
    // xRange: () => [min, max] keeps a fixed window (uPlot would pad a single point wide).
    scales: { x: xRange ? { time: !bars, range: () => xRange() } : { time: !bars } },
  };
  const chart = new uPlot(opts, data, el);
  const ro = new ResizeObserver(() => chart.setSize({ width: Math.max(200, el.clientWidth), height }));
  ro.observe(el);
  chart.dispose = () => { ro.disconnect(); chart.destroy(); };
  return chart;
}

/** A bar chart of one value per label (labels on the x axis). */
export function barChart(el, labels, values, { label, color = "--accent", height = 240 } = {}) {
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") },
    ticks: { stroke: cssVar("--grid") } };
  const opts = {
    width: Math.max(200, el.clientWidth), height,
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
    series: [{}, { label, stroke: cssVar(color), fill: cssVar(color),
      paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false } }],
    axes: [{ ...axis, splits: () => labels.map((_, i) => i), values: () => labels },
      { ...axis, size: 70 }],
  };
  const chart = new uPlot(opts, [labels.map((_, i) => i), values], el);
  const ro = new ResizeObserver(() => chart.setSize({ width: Math.max(200, el.clientWidth), height }));
  ro.observe(el);
  chart.dispose = () => { ro.disconnect(); chart.destroy(); };
  return chart;
}
