// Statistics (`#/stats`): line-crossing counts (stacked bars per line, class and
// direction) with the mean ground speed of the crossings where the camera is calibrated,
// and zone occupancy (mean and peak objects inside) over a period.

import { api, ApiError } from './api.js';
import { t, directionLabel } from './i18n.js';
import { h, fill, select, fmtTime } from './dom.js';
import { barChart, lineChart, legend, PALETTE } from './chart.js';

const PERIODS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
const BUCKETS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const MAX_BUCKETS = 800;
const REFRESH_MS = 30_000;
const STORE_KEY = 'gw.stats';

let settings = load();
let ctx = null;
let view = null;
let data = null; // {counts, occupancy, xs, bucket}
let refreshTimer = null;
let resizeObs = null;
let unsubLive = null;
let loadToken = 0;

function load() {
  const d = { camera: '', period: '24h', bucket: 'hour' };
  try {
    const v = JSON.parse(localStorage.getItem(STORE_KEY) || '{}');
    if (typeof v.camera === 'string') d.camera = v.camera;
    if (PERIODS[v.period]) d.period = v.period;
    if (BUCKETS[v.bucket]) d.bucket = v.bucket;
  } catch {
    // defaults
  }
  return d;
}

function save() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(settings));
  } catch {
    // not kept
  }
}

/** A bucket too fine for the period would draw thousands of bars: use the next coarser. */
function effectiveBucket() {
  let b = settings.bucket;
  const order = ['minute', 'hour', 'day'];
  while (PERIODS[settings.period] / BUCKETS[b] > MAX_BUCKETS && b !== 'day') b = order[order.indexOf(b) + 1];
  return b;
}

/** Every bucket start from `since` to `until` (the server's buckets are UTC-aligned). */
function bucketsBetween(since, until, width) {
  const xs = [];
  for (let x = Math.floor(since / width) * width; x < until; x += width) xs.push(x);
  return xs;
}

function fmtX(bucket) {
  return (x) => {
    const d = new Date(x);
    if (bucket === 'day') return fmtTime(d, { date: true }).slice(5, 10);
    const hm = fmtTime(d, { date: false, seconds: false });
    return bucket === 'hour' && d.getHours() === 0 ? fmtTime(d).slice(5, 10) : hm;
  };
}

function fmtTip(bucket) {
  return (x) => (bucket === 'day' ? fmtTime(new Date(x)).slice(0, 10) : fmtTime(new Date(x), { seconds: false }));
}

async function refresh() {
  const token = ++loadToken;
  const bucket = effectiveBucket();
  const until = Date.now();
  const since = until - PERIODS[settings.period];
  const q = { camera: settings.camera, since: new Date(since).toISOString(), until: new Date(until).toISOString(), bucket };
  view.status.textContent = t('common.loading');
  const [c, o] = await Promise.allSettled([api('/api/v1/stats/counts', { query: q }), api('/api/v1/stats/occupancy', { query: q })]);
  if (token !== loadToken || !view) return;
  const err = (r) => (r.status === 'rejected' ? (r.reason instanceof ApiError ? r.reason.display : String(r.reason)) : null);
  data = {
    bucket,
    xs: bucketsBetween(since, until, BUCKETS[bucket]),
    counts: c.status === 'fulfilled' ? c.value.counts || [] : [],
    occupancy: o.status === 'fulfilled' ? o.value.occupancy || [] : [],
    countsError: err(c),
    occupancyError: err(o),
  };
  view.status.textContent = t('stats.updated', { when: fmtTime(new Date()) }) + (bucket !== settings.bucket ? ` · ${t('stats.bucket_coarser', { bucket: t(`stats.bucket_${bucket}`) })}` : '');
  draw();
}

function width(el) {
  return Math.max(320, Math.floor(el.getBoundingClientRect().width || 800));
}

function dirLabel(r) {
  return directionLabel(r.direction, r.direction_name);
}

function draw() {
  if (!view || !data) return;
  const { xs, bucket } = data;
  const many = !settings.camera && new Set([...data.counts.map((r) => r.camera_id), ...data.occupancy.map((r) => r.camera_id)]).size > 1;
  const camPrefix = (id) => (many ? `${ctx.cameraName(id)} · ` : '');

  // Counts: one series per camera, line, class and direction.
  const cs = new Map();
  for (const r of data.counts) {
    const key = [r.camera_id, r.line, r.class, r.direction].join('|');
    if (!cs.has(key)) {
      cs.set(key, {
        label: `${camPrefix(r.camera_id)}${r.line} · ${r.class} · ${dirLabel(r)}`,
        data: new Map(),
        total: 0,
        speed: new Map(), // bucket → [sum of km/h, crossings with a speed]
        speedSum: 0,
        speedN: 0,
        row: r,
        attrs: { 'data-camera': r.camera_id, 'data-line': r.line, 'data-class': r.class, 'data-direction': r.direction, 'data-direction-name': r.direction_name || '' },
      });
    }
    const se = cs.get(key);
    const x = Date.parse(r.bucket_start);
    se.data.set(x, (se.data.get(x) || 0) + r.count);
    se.total += r.count;
    if (r.speed_count > 0 && r.mean_speed_kmh != null) {
      const [sum, n] = se.speed.get(x) || [0, 0];
      se.speed.set(x, [sum + r.mean_speed_kmh * r.speed_count, n + r.speed_count]);
      se.speedSum += r.mean_speed_kmh * r.speed_count;
      se.speedN += r.speed_count;
    }
  }
  const countSeries = [...cs.values()];
  countSeries.forEach((se, i) => (se.color = PALETTE[i % PALETTE.length]));
  const withSpeed = countSeries.filter((se) => se.speedN > 0);
  const fmtSpeed = (se) => (se.speedN > 0 ? (se.speedSum / se.speedN).toFixed(1) : '—');
  const speedSeries = withSpeed.map((se) => ({
    label: se.label,
    color: se.color,
    attrs: { ...se.attrs, 'data-stat': 'mean_speed_kmh' },
    data: new Map([...se.speed].map(([x, [sum, n]]) => [x, Math.round((sum / n) * 10) / 10])),
  }));
  const w = width(view.countsBox);
  const cChart = barChart({ testid: 'counts-chart', title: t('stats.counts_title'), width: w, height: 240, xs, series: countSeries, fmtX: fmtX(bucket), fmtTip: fmtTip(bucket) });
  fill(view.countsBox, 
    data.countsError ? h('p', { class: 'form-error', role: 'alert' }, data.countsError) : null,
    cChart,
    countSeries.length ? legend(countSeries, 'counts-legend') : h('p', { class: 'muted chart-empty' }, t('stats.no_counts')),
    countSeries.length
      ? h(
          'table',
          { class: 'table totals', 'data-testid': 'counts-totals' },
          h('thead', null, h('tr', null, many ? h('th', null, t('filters.camera')) : null, h('th', null, t('stats.line')), h('th', null, t('stats.class')), h('th', null, t('stats.direction')), h('th', { class: 'num' }, t('stats.total')), withSpeed.length ? h('th', { class: 'num' }, t('stats.mean_speed')) : null)),
          h(
            'tbody',
            null,
            countSeries.map((se) => h('tr', null, many ? h('td', null, ctx.cameraName(se.row.camera_id)) : null, h('td', null, se.row.line), h('td', null, se.row.class), h('td', { 'data-direction': se.row.direction }, dirLabel(se.row)), h('td', { class: 'num' }, String(se.total)), withSpeed.length ? h('td', { class: 'num', 'data-stat': 'mean_speed_kmh' }, fmtSpeed(se)) : null)),
          ),
        )
      : null,
    speedSeries.length
      ? [h('h3', null, t('stats.speed_title')), lineChart({ testid: 'speed-chart', title: t('stats.speed_title'), width: w, height: 200, xs, series: speedSeries, fmtX: fmtX(bucket), fmtTip: fmtTip(bucket) }), legend(speedSeries, 'speed-legend')]
      : null,
  );

  // Occupancy: all classes together ('*') when the server has it, else each class.
  const hasAll = data.occupancy.some((r) => r.class === '*');
  const os = new Map();
  for (const r of data.occupancy) {
    if (hasAll && r.class !== '*') continue;
    const key = [r.camera_id, r.zone, r.class].join('|');
    if (!os.has(key)) {
      const cls = r.class === '*' ? t('stats.all_classes') : r.class;
      os.set(key, {
        label: `${camPrefix(r.camera_id)}${r.zone} · ${cls}`,
        data: new Map(),
        peak: new Map(),
        attrs: { 'data-camera': r.camera_id, 'data-zone': r.zone, 'data-class': r.class },
      });
    }
    const x = Date.parse(r.bucket_start);
    os.get(key).data.set(x, Math.round(r.mean * 100) / 100);
    os.get(key).peak.set(x, r.max);
  }
  const occSeries = [];
  [...os.values()].forEach((se, i) => {
    se.color = PALETTE[i % PALETTE.length];
    occSeries.push({ ...se, label: `${se.label} (${t('stats.mean')})`, attrs: { ...se.attrs, 'data-stat': 'mean' } });
    occSeries.push({ label: `${se.label} (${t('stats.peak')})`, data: se.peak, color: se.color, dashed: true, attrs: { ...se.attrs, 'data-stat': 'max' } });
  });
  const oChart = lineChart({ testid: 'occupancy-chart', title: t('stats.occupancy_title'), width: width(view.occBox), height: 220, xs, series: occSeries, fmtX: fmtX(bucket), fmtTip: fmtTip(bucket) });
  fill(view.occBox, 
    data.occupancyError ? h('p', { class: 'form-error', role: 'alert' }, data.occupancyError) : null,
    oChart,
    occSeries.length ? legend(occSeries, 'occupancy-legend') : h('p', { class: 'muted chart-empty' }, t('stats.no_occupancy')),
  );
  view.empty.hidden = countSeries.length > 0 || occSeries.length > 0 || !!(data.countsError || data.occupancyError);
}

export function mount(container, context) {
  ctx = context;
  const cams = [['', t('filters.any_camera')], ...ctx.cameras.map((c) => [c.id, c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id])];
  const onChange = (key) => (e) => {
    settings[key] = e.target.value;
    save();
    refresh();
  };
  const camSel = select({ 'data-testid': 'stats-camera' }, cams, settings.camera);
  camSel.addEventListener('change', onChange('camera'));
  const periodSel = select({ 'data-testid': 'stats-period' }, Object.keys(PERIODS).map((p) => [p, t(`stats.period_${p}`)]), settings.period);
  periodSel.addEventListener('change', onChange('period'));
  const bucketSel = select({ 'data-testid': 'stats-bucket' }, Object.keys(BUCKETS).map((b) => [b, t(`stats.bucket_${b}`)]), settings.bucket);
  bucketSel.addEventListener('change', onChange('bucket'));
  const field = (label, el) => h('label', { class: 'field' }, h('span', null, label), el);
  view = {
    status: h('span', { class: 'muted', 'data-testid': 'stats-status' }),
    countsBox: h('div', { class: 'chart-box' }),
    occBox: h('div', { class: 'chart-box' }),
    empty: h('p', { class: 'empty', 'data-testid': 'stats-empty', hidden: true }, t('stats.empty')),
  };
  container.append(
    h('div', { class: 'page-head' }, h('h1', null, t('stats.title')), view.status),
    h(
      'form',
      { class: 'filters', on: { submit: (e) => e.preventDefault() } },
      field(t('filters.camera'), camSel),
      field(t('stats.period'), periodSel),
      field(t('stats.bucket'), bucketSel),
      h('div', { class: 'field field-button' }, h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'stats-refresh', on: { click: () => refresh() } }, t('common.refresh'))),
    ),
    view.empty,
    h('section', { class: 'card' }, h('h2', null, t('stats.counts_title')), h('p', { class: 'muted hint' }, t('stats.counts_hint')), view.countsBox),
    h('section', { class: 'card' }, h('h2', null, t('stats.occupancy_title')), h('p', { class: 'muted hint' }, t('stats.occupancy_hint')), view.occBox),
  );
  refresh();
  refreshTimer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  let lastW = 0;
  resizeObs = new ResizeObserver(() => {
    const w = width(view.countsBox);
    if (Math.abs(w - lastW) > 8) {
      lastW = w;
      draw();
    }
  });
  resizeObs.observe(view.countsBox);
  unsubLive = ctx.live.subscribe((msg) => {
    if (msg.type === 'poll') refresh();
  });
}

export function unmount() {
  clearInterval(refreshTimer);
  if (resizeObs) resizeObs.disconnect();
  if (unsubLive) unsubLive();
  loadToken++;
  view = null;
}
