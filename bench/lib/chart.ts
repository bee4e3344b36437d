// Line charts for the benchmarks' time series, as SVG built here and rasterised to PNG with
// @resvg/resvg-js (a prebuilt native module from npm; no browser). Stacked panels sharing one
// x axis (time), each with its own y axis (linear or log), grid, tick labels, units and a
// legend. The soak benchmark's chart (RSS, slot lag, latency) is soakChart(); bench/chart.ts
// renders it again from a saved samples file.
import { writeFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';

export interface Series {
  name: string;
  color: string;
  /** [x, y]; a non-finite y breaks the line. */
  points: ReadonlyArray<readonly [number, number]>;
  dashed?: boolean;
  width?: number;
}

export interface Panel {
  title: string;
  /** The y axis label, unit included, e.g. "MiB". */
  yLabel: string;
  series: Series[];
  log?: boolean;
  /** Linear panels start at 0 unless told otherwise. */
  zeroBased?: boolean;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  panels: Panel[];
  /** A note under the chart (machine, settings). */
  footer?: string;
  width?: number;
  panelHeight?: number;
}

const FONT = `font-family="DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"`;
const M = { left: 86, right: 250, top: 96, gap: 66, bottom: 64 };

/** The chart as an SVG document. */
export function chartSvg(spec: ChartSpec): string {
  const width = spec.width ?? 1200;
  const ph = spec.panelHeight ?? 250;
  const plotW = width - M.left - M.right;
  const height = M.top + spec.panels.length * ph + (spec.panels.length - 1) * M.gap + M.bottom + (spec.footer ? 18 : 0);
  const all = spec.panels.flatMap((p) => p.series.flatMap((s) => s.points.map((pt) => pt[0])));
  const xMin = 0;
  const xMax = niceCeil(Math.max(1e-9, ...all.filter(Number.isFinite)));
  const xTicks = linearTicks(xMin, xMax, 10);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${M.left}" y="32" ${FONT} font-size="20" font-weight="bold" fill="#111">${esc(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${M.left}" y="56" ${FONT} font-size="13" fill="#444">${esc(spec.subtitle)}</text>`);
  spec.panels.forEach((panel, i) => {
    const top = M.top + i * (ph + M.gap);
    out.push(...drawPanel(panel, { left: M.left, top, w: plotW, h: ph }, xMin, xMax, xTicks, spec.xLabel));
  });
  if (spec.footer) out.push(`<text x="${M.left}" y="${height - 12}" ${FONT} font-size="11" fill="#666">${esc(spec.footer)}</text>`);
  out.push('</svg>');
  return out.join('\n');
}

/** Writes the chart as a PNG (2x pixel density for sharp text); returns the file name. */
export function writeChartPng(spec: ChartSpec, file: string): string {
  const svg = chartSvg(spec);
  const png = new Resvg(svg, {
    background: '#ffffff',
    fitTo: { mode: 'zoom', value: 1.5 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  })
    .render()
    .asPng();
  writeFileSync(file, png);
  return file;
}

interface Box {
  left: number;
  top: number;
  w: number;
  h: number;
}

function drawPanel(p: Panel, b: Box, xMin: number, xMax: number, xTicks: number[], xLabel: string): string[] {
  const out: string[] = [];
  const ys = p.series.flatMap((s) => s.points.map((pt) => pt[1])).filter((y) => Number.isFinite(y) && (!p.log || y > 0));
  let yMin: number;
  let yMax: number;
  let yTicks: number[];
  if (p.log) {
    const lo = ys.length ? Math.min(...ys) : 0.1;
    const hi = ys.length ? Math.max(...ys) : 10;
    yMin = 10 ** Math.floor(Math.log10(lo));
    yMax = 10 ** Math.ceil(Math.log10(hi * 1.0001));
    if (yMax / yMin < 100) yMax = yMin * 100;
    yTicks = logTicks(yMin, yMax);
  } else {
    const lo = ys.length ? Math.min(...ys) : 0;
    const hi = ys.length ? Math.max(...ys) : 1;
    const zero = p.zeroBased ?? true;
    const span = hi - lo || Math.abs(hi) || 1;
    const min0 = zero ? Math.min(0, lo) : lo - span * 0.1;
    const ticks = linearTicks(min0, hi + span * 0.05 || 1, 6);
    yMin = ticks[0];
    yMax = ticks[ticks.length - 1];
    yTicks = ticks;
  }
  const X = (x: number): number => b.left + ((x - xMin) / (xMax - xMin)) * b.w;
  const Y = (y: number): number => {
    const f = p.log ? (Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin)) : (y - yMin) / (yMax - yMin);
    return b.top + b.h - Math.max(-0.02, Math.min(1.02, f)) * b.h;
  };
  out.push(`<text x="${b.left}" y="${b.top - 10}" ${FONT} font-size="15" font-weight="bold" fill="#222">${esc(p.title)}</text>`);
  out.push(`<rect x="${b.left}" y="${b.top}" width="${b.w}" height="${b.h}" fill="#fbfbfb" stroke="#999" stroke-width="1"/>`);
  // Grid and y ticks.
  for (const t of yTicks) {
    const y = Y(t).toFixed(1);
    out.push(`<line x1="${b.left}" y1="${y}" x2="${b.left + b.w}" y2="${y}" stroke="#e2e2e2" stroke-width="1"/>`);
    out.push(`<text x="${b.left - 8}" y="${(Number(y) + 4).toFixed(1)}" ${FONT} font-size="12" fill="#333" text-anchor="end">${esc(fmtTick(t))}</text>`);
  }
  if (p.log) {
    // Minor grid at 2x and 5x.
    for (let d = yMin; d < yMax; d *= 10) {
      for (const m of [2, 5]) {
        const v = d * m;
        if (v < yMax) out.push(`<line x1="${b.left}" y1="${Y(v).toFixed(1)}" x2="${b.left + b.w}" y2="${Y(v).toFixed(1)}" stroke="#f0f0f0" stroke-width="1"/>`);
      }
    }
  }
  for (const t of xTicks) {
    const x = X(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${b.top}" x2="${x}" y2="${b.top + b.h}" stroke="#ececec" stroke-width="1"/>`);
    out.push(`<line x1="${x}" y1="${b.top + b.h}" x2="${x}" y2="${b.top + b.h + 5}" stroke="#999" stroke-width="1"/>`);
    out.push(`<text x="${x}" y="${b.top + b.h + 19}" ${FONT} font-size="12" fill="#333" text-anchor="middle">${esc(fmtTick(t))}</text>`);
  }
  out.push(`<text x="${b.left + b.w / 2}" y="${b.top + b.h + 38}" ${FONT} font-size="12" fill="#555" text-anchor="middle">${esc(xLabel)}</text>`);
  const cy = b.top + b.h / 2;
  out.push(`<text x="${b.left - 62}" y="${cy}" ${FONT} font-size="13" fill="#333" text-anchor="middle" transform="rotate(-90 ${b.left - 62} ${cy})">${esc(p.yLabel + (p.log ? ' (log scale)' : ''))}</text>`);
  // Lines, clipped to the frame.
  const clip = `clip${Math.round(b.top)}`;
  out.push(`<clipPath id="${clip}"><rect x="${b.left}" y="${b.top - 2}" width="${b.w}" height="${b.h + 4}"/></clipPath>`);
  p.series.forEach((s, i) => {
    const segs: string[][] = [[]];
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y) || (p.log && y <= 0)) {
        if (segs[segs.length - 1].length) segs.push([]);
        continue;
      }
      segs[segs.length - 1].push(`${X(x).toFixed(1)},${Y(y).toFixed(1)}`);
    }
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : '';
    for (const seg of segs) {
      if (seg.length === 1) out.push(`<circle cx="${seg[0].split(',')[0]}" cy="${seg[0].split(',')[1]}" r="2.5" fill="${s.color}" clip-path="url(#${clip})"/>`);
      else if (seg.length > 1) out.push(`<polyline points="${seg.join(' ')}" fill="none" stroke="${s.color}" stroke-width="${s.width ?? 2}"${dash} stroke-linejoin="round" clip-path="url(#${clip})"/>`);
    }
    if (s.points.length <= 40) {
      for (const [x, y] of s.points) if (Number.isFinite(y) && (!p.log || y > 0)) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="2.5" fill="${s.color}" clip-path="url(#${clip})"/>`);
    }
    // Legend to the right, with the last value.
    const ly = b.top + 16 + i * 40;
    const lx = b.left + b.w + 16;
    const last = [...s.points].reverse().find((pt) => Number.isFinite(pt[1]));
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 26}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"${dash}/>`);
    out.push(`<text x="${lx + 32}" y="${ly}" ${FONT} font-size="12" fill="#222">${esc(s.name)}</text>`);
    if (last) out.push(`<text x="${lx + 32}" y="${ly + 16}" ${FONT} font-size="11" fill="#666">last: ${esc(fmtTick(round3(last[1])))}</text>`);
  });
  return out;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function round3(v: number): number {
  const a = Math.abs(v);
  const d = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return Math.round(v * 10 ** d) / 10 ** d;
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return String(+v.toPrecision(4));
}

/** 1, 2, 2.5 or 5 × 10^k at or above v. */
function niceStep(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v * 0.999) return m * e;
  return 10 * e;
}

function niceCeil(v: number): number {
  const step = niceStep(v / 10);
  return Math.ceil(v / step - 1e-9) * step;
}

/** About `n` evenly spaced round ticks covering [lo, hi]. */
export function linearTicks(lo: number, hi: number, n: number): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const step = niceStep((hi - lo) / n);
  const first = Math.floor(lo / step + 1e-9) * step;
  const ticks: number[] = [];
  for (let t = first; t < hi + step * 0.999; t += step) ticks.push(Math.round(t / step) * step);
  return ticks;
}

function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) ticks.push(+d.toPrecision(3));
  return ticks;
}

// ── the soak chart ────────────────────────────────────────────────────────────────────────

/** One sample of bench/soak.ts, as written to its samples file (the fields the chart reads). */
export interface SoakSample {
  /** Seconds since the load started. */
  t: number;
  rssMiB: number;
  heapUsedMiB: number | null;
  windowMiB: number | null;
  slotLagMiB: number;
  walRetainedMiB: number;
  latency: { p50: number; p99: number; max: number };
  deliveriesPerSec: number;
  clients: number;
}

export interface SoakFile {
  bench: 'soak';
  startedAt: string;
  scenario: { clients: number; rate: number; reconnectsPerSec: number; minutes: number; sampleSeconds: number; rooms: number; unfiltered: number; auth: boolean };
  machine?: { node: string; postgres: string; cpus: number; cpuModel: string };
  samples: SoakSample[];
}

export function soakChart(f: SoakFile): ChartSpec {
  const s = f.samples;
  const min = (x: SoakSample): number => x.t / 60;
  const pts = (get: (x: SoakSample) => number | null): Array<[number, number]> => s.map((x) => [min(x), get(x) ?? Number.NaN]);
  const sc = f.scenario;
  const m = f.machine;
  return {
    title: `walcast soak: ${sc.clients.toLocaleString('en-US')} clients, ${sc.rate.toLocaleString('en-US')} tx/s, ${sc.reconnectsPerSec} reconnects/s`,
    subtitle: `started ${f.startedAt}; a sample every ${sc.sampleSeconds} s; ${sc.rooms} rooms, ${sc.unfiltered} unfiltered subscribers${sc.auth ? ', authorization on' : ', --no-auth'}`,
    xLabel: 'minutes since the load started',
    panels: [
      {
        title: 'Daemon memory',
        yLabel: 'MiB',
        series: [
          { name: 'RSS', color: '#1f77b4', points: pts((x) => x.rssMiB), width: 2.5 },
          { name: 'JS heap used', color: '#2ca02c', points: pts((x) => x.heapUsedMiB) },
          { name: 'resume window (est.)', color: '#9467bd', points: pts((x) => x.windowMiB), dashed: true },
        ],
      },
      {
        title: 'Replication slot lag',
        yLabel: 'MiB of WAL',
        series: [
          { name: 'current − confirmed_flush', color: '#d62728', points: pts((x) => x.slotLagMiB), width: 2.5 },
          { name: 'current − restart_lsn', color: '#ff7f0e', points: pts((x) => x.walRetainedMiB), dashed: true },
        ],
      },
      {
        title: 'Commit-to-client latency (per sample interval)',
        yLabel: 'ms',
        log: true,
        series: [
          { name: 'p50', color: '#1f77b4', points: pts((x) => x.latency.p50), width: 2.5 },
          { name: 'p99', color: '#d62728', points: pts((x) => x.latency.p99), width: 2.5 },
          { name: 'max', color: '#bbbbbb', points: pts((x) => x.latency.max), width: 1.5 },
        ],
      },
    ],
    footer: m ? `node ${m.node}, Postgres ${m.postgres}, ${m.cpus} cpus (${m.cpuModel}); bench/soak.ts` : 'bench/soak.ts',
  };
}
