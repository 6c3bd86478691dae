// Cameras (`#/cameras`): one tile per camera with its live picture, zones and lines drawn
// over it (each line with its A and B sides marked), the ground-plane calibration's
// quadrilateral with its side lengths in metres, and its health.
//
// The live picture is the latest analysed frame as a JPEG (`latest.jpg`), fetched about
// once a second for the tiles on screen only, and not at all while the tab is hidden.
// See docs/console.md for why this is not a video stream.

import { fetchBlob, ApiError } from './api.js';
import { t } from './i18n.js';
import { h, fill, s, select, fmtTime, typingInField } from './dom.js';

const FRAME_MS = 1000;
const HEALTH_MS = 3000;
const LAYOUTS = ['auto', '1', '2', '3', '4'];
const LAYOUT_KEY = 'gw.cameras.layout';

let ctx = null;
let view = null;
let tiles = new Map(); // camera id → tile state
let frameTimer = null;
let healthTimer = null;
let observer = null;
let unsubLive = null;
let focused = null;
let tickNo = 0;

function layout() {
  const l = localStorage.getItem(LAYOUT_KEY);
  return LAYOUTS.includes(l) ? l : 'auto';
}

function points(p) {
  return (p || []).map(([x, y]) => `${x},${y}`).join(' ');
}

/** A label (HTML, so the non-uniform viewBox does not stretch it) at normalised [x, y]. */
function tag(text, [x, y], cls, attrs) {
  const el = h('span', { class: ['geo-label', cls].join(' '), ...attrs }, text);
  el.style.left = `${(Math.min(1, Math.max(0, x)) * 100).toFixed(2)}%`;
  el.style.top = `${(Math.min(1, Math.max(0, y)) * 100).toFixed(2)}%`;
  return el;
}

/**
 * The "A" and "B" marks of a line, beside the middle of its middle segment: walking the
 * line from its first point to its last on screen (y down), side A is on the left and B on
 * the right (docs/line-directions.svg; `geometry::side` > 0 is B). Scaling x and y by the
 * picture's size keeps the sides, so the normal is taken in normalised units.
 */
function sideMarks(l) {
  const p = l.points || [];
  if (p.length < 2) return [];
  const i = Math.floor((p.length - 1) / 2);
  const [a, b] = [p[i], p[i + 1]];
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const len = Math.hypot(dx, dy) || 1;
  const m = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  const off = 0.045;
  const nb = [-dy / len, dx / len]; // right of the walk on screen: side B
  const mark = (side, k) => tag(side, [m[0] + k * off * nb[0], m[1] + k * off * nb[1]], `side side-${side.toLowerCase()}`, { 'data-line': l.name, 'data-side': side, title: t(`cameras.side_${side.toLowerCase()}`, { line: l.name }) });
  return [mark('A', -1), mark('B', 1)];
}

/** The calibration's quadrilateral and the ground length of each side (m). */
function calibrationShapes(cal) {
  const img = (cal && cal.image_points) || [];
  const gnd = (cal && cal.ground_points_m) || [];
  if (img.length !== 4 || gnd.length !== 4) return { shapes: [], labels: [] };
  const shapes = [s('polygon', { class: 'calibration', points: points(img), 'data-testid': 'calibration' })];
  const labels = img.map((p, i) => {
    const q = img[(i + 1) % 4];
    const m = Math.hypot(gnd[(i + 1) % 4][0] - gnd[i][0], gnd[(i + 1) % 4][1] - gnd[i][1]);
    return tag(`${m.toFixed(m < 10 ? 2 : 1)} m`, [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2], 'calib', { 'data-testid': 'calibration-length', 'data-metres': m.toFixed(2), title: t('cameras.calibration_side') });
  });
  return { shapes, labels };
}

function overlay(cam) {
  const zones = cam.zones || [];
  const lines = cam.lines || [];
  const cal = calibrationShapes(cam.calibration);
  const svg = s(
    'svg',
    { class: 'overlay', 'data-testid': 'overlay', viewBox: '0 0 1 1', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    cal.shapes,
    zones.map((z) => s('polygon', { class: 'zone', points: points(z.points), 'data-name': z.name })),
    lines.map((l) => s('polyline', { class: 'line', points: points(l.points), 'data-name': l.name })),
  );
  const label = (name, pts, cls) => {
    if (!pts || !pts.length) return null;
    const x = pts.reduce((a, p) => a + p[0], 0) / pts.length;
    const y = pts.reduce((a, p) => a + p[1], 0) / pts.length;
    return tag(name, [x, y], cls);
  };
  const labels = [...zones.map((z) => label(z.name, z.points, 'zone')), ...lines.map((l) => label(l.name, l.points, 'line')), ...lines.flatMap(sideMarks), ...cal.labels].filter(Boolean);
  return { svg, labels };
}

function buildTile(cam) {
  const img = h('img', { 'data-testid': 'live', alt: t('cameras.live_alt', { name: cam.name || cam.id }), decoding: 'async' });
  const msg = h('div', { class: 'frame-msg', 'data-testid': 'frame-msg', hidden: true });
  const { svg, labels } = overlay(cam);
  const frame = h('div', { class: 'frame', title: t('cameras.focus_hint') }, img, svg, labels, msg);
  const stateEl = h('span', { class: 'badge' });
  const health = h('div', { class: 'health', 'data-testid': 'camera-health' });
  const error = h('p', { class: 'cam-error', 'data-testid': 'camera-error', hidden: true });
  const title = h('div', { class: 'tile-title' }, h('strong', null, cam.name || cam.id), h('span', { class: 'muted' }, [cam.id, cam.grid_cell ? `${t('common.grid_cell')} ${cam.grid_cell}` : null].filter(Boolean).join(' · ')));
  const el = h('article', { class: 'tile', 'data-testid': 'camera-tile', 'data-camera-id': cam.id }, h('header', null, title, stateEl), frame, health, error);
  frame.addEventListener('click', () => setFocus(focused === cam.id ? null : cam.id));
  img.addEventListener('load', () => {
    if (img.naturalWidth && img.naturalHeight) {
      frame.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
      frame.style.setProperty('--ar', (img.naturalWidth / img.naturalHeight).toFixed(4));
    }
  });
  const tile = { cam, el, img, msg, frame, stateEl, health, error, visible: false, busy: false, url: null, geo: JSON.stringify([cam.zones, cam.lines, cam.calibration]) };
  fillTile(tile, cam);
  return tile;
}

function fillTile(tile, cam) {
  tile.cam = cam;
  const geo = JSON.stringify([cam.zones, cam.lines, cam.calibration]);
  if (geo !== tile.geo) {
    // Zones, lines or the calibration changed (configuration reloaded): redraw them.
    tile.geo = geo;
    for (const el of tile.frame.querySelectorAll('.overlay, .geo-label')) el.remove();
    const { svg, labels } = overlay(cam);
    tile.img.after(svg, ...labels);
  }
  tile.el.setAttribute('data-state', cam.state);
  tile.stateEl.className = `badge cam-${cam.state}`;
  tile.stateEl.textContent = t(`camstate.${cam.state}`);
  const num = (v, d = 1) => (Number.isFinite(v) ? v.toFixed(d) : '—');
  const item = (label, value, title) => h('span', { class: 'hitem', title: title || label }, h('span', { class: 'muted' }, label), ' ', value);
  fill(tile.health, 
    item(t('cameras.fps'), num(cam.fps)),
    item(t('cameras.infer'), `${num(cam.infer_ms, 0)} ms`),
    item(t('cameras.analysed'), String(cam.frames_analysed ?? '—')),
    item(t('cameras.dropped'), String(cam.frames_dropped ?? '—')),
    item(t('cameras.reconnects'), String(cam.reconnects ?? '—')),
    recordingItem(cam, item),
    item(t('cameras.since'), fmtTime(cam.since), t('cameras.since_title')),
  );
  // A separate main stream (the camera has a detect_url) fails on its own: say so too.
  const main = cam.streams && !cam.streams.shared ? cam.streams.main : null;
  const mainErr = main && main.state === 'offline' && main.last_error ? `${t('cameras.main_stream')}: ${main.last_error}` : null;
  const err = [cam.last_error && cam.state !== 'online' ? cam.last_error : null, mainErr].filter(Boolean).join(' · ') || null;
  tile.error.textContent = err ? `${t('cameras.last_error')}: ${err}` : '';
  tile.error.hidden = !err;
  tile.el.classList.toggle('is-down', cam.state === 'offline' || cam.state === 'disabled');
}

/** "recording" / "not recording"; for a camera whose recorded main stream is separate from
 * its detect stream (`detect_url`), the main stream's state while it is not online. */
function recordingItem(cam, item) {
  if (cam.records === false) return item('○', t('cameras.not_recording'));
  if (cam.records !== true) return null;
  const main = cam.streams && !cam.streams.shared ? cam.streams.main : null;
  if (main && main.state !== 'online') {
    return item('○', `${t('cameras.main_stream')}: ${t(`camstate.${main.state}`)}`);
  }
  return item('●', t('cameras.recording'));
}

function showMsg(tile, text) {
  tile.msg.textContent = text || '';
  tile.msg.hidden = !text;
  tile.frame.classList.toggle('stale', !!text);
}

async function refreshFrame(tile) {
  if (tile.busy) return;
  const state = tile.cam.state;
  if (state === 'disabled') {
    showMsg(tile, t('camstate.disabled'));
    return;
  }
  // A camera that is down: look less often (its last frame does not change).
  if (state === 'offline' && tile.tried && tickNo % 5 !== 0) return;
  tile.tried = true;
  tile.busy = true;
  try {
    const blob = await fetchBlob(`/api/v1/cameras/${encodeURIComponent(tile.cam.id)}/latest.jpg`, { query: { t: Date.now() } });
    if (!view) return;
    const url = URL.createObjectURL(blob);
    const old = tile.url;
    tile.url = url;
    tile.img.src = url;
    if (old) setTimeout(() => URL.revokeObjectURL(old), 2000);
    showMsg(tile, state === 'offline' ? `${t('cameras.offline_frame')}${tile.cam.last_error ? ` — ${tile.cam.last_error}` : ''}` : null);
  } catch (e) {
    if (e instanceof ApiError && e.code === 'no_frame') showMsg(tile, state === 'offline' ? t('cameras.offline_no_frame') : t('cameras.no_frame'));
    else showMsg(tile, e instanceof ApiError ? e.display : String(e));
  } finally {
    tile.busy = false;
  }
}

function frameTick() {
  tickNo++;
  if (document.hidden || !view) return;
  for (const tile of tiles.values()) {
    if (tile.visible && (!focused || focused === tile.cam.id)) refreshFrame(tile);
  }
}

async function refreshHealth() {
  try {
    await ctx.loadCameras();
  } catch (e) {
    if (view) view.error.textContent = e instanceof ApiError ? e.display : String(e);
    if (view) view.error.hidden = false;
    return;
  }
  if (!view) return;
  view.error.hidden = true;
  render();
}

function render() {
  const cams = ctx.cameras;
  const ids = new Set(cams.map((c) => c.id));
  for (const [id, tile] of tiles) {
    if (!ids.has(id)) {
      observer.unobserve(tile.el);
      tile.el.remove();
      if (tile.url) URL.revokeObjectURL(tile.url);
      tiles.delete(id);
    }
  }
  let prev = null;
  for (const cam of cams) {
    let tile = tiles.get(cam.id);
    if (!tile) {
      tile = buildTile(cam);
      tiles.set(cam.id, tile);
      observer.observe(tile.el);
    } else fillTile(tile, cam);
    const want = prev ? prev.nextSibling : view.grid.firstChild;
    if (want !== tile.el) view.grid.insertBefore(tile.el, want);
    prev = tile.el;
    tile.el.classList.toggle('is-focused', focused === cam.id);
    tile.el.hidden = !!focused && focused !== cam.id;
  }
  const online = cams.filter((c) => c.state === 'online').length;
  view.summary.textContent = t('cameras.summary', { online, total: cams.length });
  view.empty.hidden = cams.length > 0;
  view.grid.setAttribute('data-layout', focused ? 'focus' : layout());
}

function setFocus(id) {
  focused = id;
  render();
  if (id) frameTick();
}

export function mount(container, context) {
  ctx = context;
  tiles = new Map();
  focused = null;
  const layoutSel = select({ 'data-testid': 'camera-layout', 'aria-label': t('cameras.layout') }, LAYOUTS.map((l) => [l, t(`cameras.layout_${l}`)]), layout());
  layoutSel.addEventListener('change', () => {
    localStorage.setItem(LAYOUT_KEY, layoutSel.value);
    focused = null;
    render();
  });
  view = {
    grid: h('div', { class: 'camera-grid', 'data-testid': 'camera-grid' }),
    summary: h('span', { class: 'muted', 'data-testid': 'camera-summary' }),
    error: h('p', { class: 'form-error', role: 'alert', hidden: true }),
    empty: h('p', { class: 'empty', hidden: true }, t('cameras.none')),
  };
  container.append(
    h('div', { class: 'page-head' }, h('h1', null, t('cameras.title')), view.summary, h('div', { class: 'spacer' }), h('label', { class: 'field-inline' }, h('span', null, t('cameras.layout')), layoutSel)),
    view.error,
    view.empty,
    view.grid,
  );
  observer = new IntersectionObserver((entries) => {
    for (const en of entries) {
      const tile = tiles.get(en.target.getAttribute('data-camera-id'));
      if (tile) {
        tile.visible = en.isIntersecting;
        if (tile.visible) refreshFrame(tile);
      }
    }
  });
  render();
  refreshHealth();
  frameTimer = setInterval(frameTick, FRAME_MS);
  healthTimer = setInterval(() => {
    if (!document.hidden) refreshHealth();
  }, HEALTH_MS);
  unsubLive = ctx.live.subscribe((msg) => {
    const c = msg.envelope && msg.envelope.change;
    if (msg.type === 'poll' || c === 'online' || c === 'offline') refreshHealth();
  });
}

export function unmount() {
  clearInterval(frameTimer);
  clearInterval(healthTimer);
  if (observer) observer.disconnect();
  if (unsubLive) unsubLive();
  for (const tile of tiles.values()) if (tile.url) URL.revokeObjectURL(tile.url);
  tiles = new Map();
  view = null;
}

export function onKey(e) {
  if (typingInField(e)) return;
  if (e.key === 'Escape' && focused) {
    e.preventDefault();
    setFocus(null);
  }
}
