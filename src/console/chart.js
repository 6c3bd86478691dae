// Hand-drawn SVG charts (no library): stacked bars and lines over time buckets.
// Every bar/point carries `data-value` (and the series' own data-* attributes) so tests
// and people with a DOM inspector can read the numbers behind the picture.

import { h, s } from './dom.js';

export const PALETTE = ['#4cc3ff', '#ffb454', '#7fd962', '#f07178', '#c792ea', '#ffd866', '#59c2a6', '#ff8f40', '#95a6ff', '#e6a3c8'];

/** A round upper bound and step for an axis reaching `max` with about `n` ticks. */
export function niceScale(max, n = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

function fmtNum(v) {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2).replace(/\.?0+$/, '');
}

const M = { l: 44, r: 12, t: 10, b: 26 };

function frame({ width, height, xs, top, step, fmtX, testid, title }) {
  const pw = width - M.l - M.r;
  const ph = height - M.t - M.b;
  const band = pw / Math.max(xs.length, 1);
  const y = (v) => M.t + ph - (v / top) * ph;
  const grid = s('g', { class: 'axis' });
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.append(
      s('line', { class: 'gridline', x1: M.l, x2: width - M.r, y1: y(v), y2: y(v) }),
      s('text', { class: 'tick', x: M.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtNum(v)),
    );
  }
  // x labels: as many as fit (about one per 84 px).
  const every = Math.max(1, Math.ceil(84 / band));
  xs.forEach((x, i) => {
    if (i % every !== 0) return;
    const cx = M.l + band * i + band / 2;
    grid.append(s('line', { class: 'xtick', x1: cx, x2: cx, y1: M.t + ph, y2: M.t + ph + 4 }), s('text', { class: 'tick', x: cx, y: height - 8, 'text-anchor': 'middle' }, fmtX(x)));
  });
  grid.append(s('line', { class: 'baseline', x1: M.l, x2: width - M.r, y1: M.t + ph, y2: M.t + ph }));
  const svg = s('svg', { class: 'chart', 'data-testid': testid, viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': title }, s('title', null, title), grid);
  return { svg, band, y, pw, ph };
}

/**
 * Stacked bars. `series`: `[{label, color, data: Map(x → value), attrs: {data-…}}]`;
 * `xs`: the buckets in order; `fmtX(x)` an axis label; `fmtTip(x)` the tooltip's time.
 */
export function barChart({ testid, title, width, height, xs, series, fmtX, fmtTip = fmtX }) {
  let max = 0;
  for (const x of xs) max = Math.max(max, series.reduce((a, se) => a + (se.data.get(x) || 0), 0));
  const { top, step } = niceScale(max);
  const { svg, band, y } = frame({ width, height, xs, top, step, fmtX, testid, title });
  const bw = Math.max(1, band * 0.78);
  const bars = s('g', { class: 'bars' });
  xs.forEach((x, i) => {
    let acc = 0;
    for (const se of series) {
      const v = se.data.get(x) || 0;
      if (!v) continue;
      const y1 = y(acc + v), y0 = y(acc);
      acc += v;
      bars.append(
        s(
          'rect',
          { class: 'bar', x: (M.l + band * i + (band - bw) / 2).toFixed(2), y: y1.toFixed(2), width: bw.toFixed(2), height: Math.max(0.5, y0 - y1).toFixed(2), fill: se.color, 'data-value': v, 'data-bucket': new Date(x).toISOString(), ...se.attrs },
          s('title', null, `${fmtTip(x)} · ${se.label}: ${fmtNum(v)}`),
        ),
      );
    }
  });
  svg.append(bars);
  return svg;
}

/** Lines with a dot per bucket that has a value; same arguments as `barChart`. */
export function lineChart({ testid, title, width, height, xs, series, fmtX, fmtTip = fmtX }) {
  let max = 0;
  for (const se of series) for (const v of se.data.values()) max = Math.max(max, v);
  const { top, step } = niceScale(max);
  const { svg, band, y } = frame({ width, height, xs, top, step, fmtX, testid, title });
  const g = s('g', { class: 'lines' });
  for (const se of series) {
    const pts = [];
    xs.forEach((x, i) => {
      if (se.data.has(x)) pts.push([M.l + band * i + band / 2, y(se.data.get(x)), x]);
    });
    if (pts.length > 1) g.append(s('polyline', { class: ['series', se.dashed ? 'dashed' : ''].join(' '), points: pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' '), stroke: se.color, fill: 'none', ...se.attrs }));
    for (const [cx, cy, x] of pts) {
      g.append(
        s(
          'circle',
          { class: 'point', cx: cx.toFixed(1), cy: cy.toFixed(1), r: se.dashed ? 2 : 3, fill: se.color, 'data-value': se.data.get(x), 'data-bucket': new Date(x).toISOString(), ...se.attrs },
          s('title', null, `${fmtTip(x)} · ${se.label}: ${fmtNum(se.data.get(x))}`),
        ),
      );
    }
  }
  svg.append(g);
  return svg;
}

/** The colour key under a chart. */
export function legend(series, testid) {
  return h(
    'ul',
    { class: 'legend', 'data-testid': testid },
    series.map((se) => {
      const sw = h('span', { class: ['swatch', se.dashed ? 'dashed' : ''] });
      sw.style.background = se.dashed ? 'transparent' : se.color;
      sw.style.borderColor = se.color;
      return h('li', null, sw, se.label);
    }),
  );
}
