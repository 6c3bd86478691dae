// Playback (`#/playback`): pick a camera and a time; the recorded segments around it are
// shown on a timeline and played one after the other in a single <video>, so playback
// runs across segment boundaries (and on into segments recorded while watching).
// A span can also be exported as one MP4 (`/api/v1/recordings/export.mp4`).

import { api, fetchBlob, ApiError } from './api.js';
import { t } from './i18n.js';
import { h, clear, select, fmtTime, fmtBytes, fmtDuration, toLocalInput, fromLocalInput, typingInField } from './dom.js';

const WINDOWS = { '15m': 15 * 60e3, '1h': 3600e3, '6h': 6 * 3600e3 };
const EXPORT_SPANS = [30, 60, 120, 300];
const FOLLOW_MS = 4000;

let settings = { camera: '', time: '', window: '1h' };
let ctx = null;
let view = null;
let segs = [];
let range = null; // {since, until} of the timeline (ms)
let cur = -1; // index in segs of the playing segment
let pendingSeek = null; // wall ms to seek to once the segment's metadata is loaded
let followTimer = null;
let loadToken = 0;

const segUrl = (sg) => sg.url || `/api/v1/recordings/${sg.id}/segment.mp4`;
const startMs = (sg) => Date.parse(sg.start);
const endMs = (sg) => Date.parse(sg.end);

function setStatus(text, kind = 'info') {
  view.status.textContent = text || '';
  view.status.className = `playback-status status-${kind}`;
}

async function fetchSegments(camera, since, until) {
  const r = await api('/api/v1/recordings', { query: { camera, since: new Date(since).toISOString(), until: new Date(until).toISOString(), limit: 1000 } });
  return (r.recordings || []).slice().sort((a, b) => startMs(a) - startMs(b));
}

async function go() {
  const camera = view.camera.value;
  const at = Date.parse(fromLocalInput(view.time.value) || '');
  if (!camera) return setStatus(t('playback.pick_camera'), 'error');
  if (!Number.isFinite(at)) return setStatus(t('playback.pick_time'), 'error');
  settings = { camera, time: view.time.value, window: view.window.value };
  const w = WINDOWS[settings.window] || WINDOWS['1h'];
  const now = Date.now();
  const since = at - w / 2;
  const until = Math.min(now, at + w / 2);
  const token = ++loadToken;
  setStatus(t('common.loading'));
  let list;
  try {
    list = await fetchSegments(camera, since, Math.max(until, since + 1000));
  } catch (e) {
    if (token === loadToken) setStatus(e instanceof ApiError ? e.display : String(e), 'error');
    return;
  }
  if (token !== loadToken || !view) return;
  segs = list;
  range = { since, until: Math.max(until, since + 60e3) };
  drawTimeline();
  if (!segs.length) {
    stopVideo();
    const cam = ctx.cameras.find((c) => c.id === camera);
    setStatus(cam && cam.records === false ? t('playback.not_recording') : t('playback.none'), 'error');
    return;
  }
  playAt(at);
}

function stopVideo() {
  cur = -1;
  pendingSeek = null;
  view.video.pause();
  view.video.removeAttribute('src');
  view.video.load();
}

/** Plays from wall time `at` (ms): the segment holding it, or the next one after a gap. */
function playAt(at) {
  let i = segs.findIndex((sg) => endMs(sg) > at);
  if (i < 0) {
    setStatus(t('playback.after_last', { when: fmtTime(endMs(segs[segs.length - 1])) }), 'error');
    return;
  }
  const sg = segs[i];
  const from = Math.max(at, startMs(sg));
  if (from > at + 1000) setStatus(t('playback.gap', { when: fmtTime(from) }), 'warn');
  load(i, from);
}

function load(i, wallFrom) {
  cur = i;
  const sg = segs[i];
  pendingSeek = wallFrom;
  view.video.src = segUrl(sg);
  view.video.play().catch(() => {
    // Autoplay refused (no user gesture yet): the controls are there.
  });
  markCurrent();
}

function markCurrent() {
  for (const el of view.timeline.querySelectorAll('.seg')) el.classList.toggle('current', Number(el.getAttribute('data-segment-id')) === (segs[cur] && segs[cur].id));
}

/** Wall time (ms) of the video's current position. */
function wallNow() {
  const sg = segs[cur];
  if (!sg) return null;
  return startMs(sg) + view.video.currentTime * 1000;
}

function onLoaded() {
  if (!view) return;
  const sg = segs[cur];
  if (!sg || pendingSeek === null) return;
  const offset = Math.max(0, (pendingSeek - startMs(sg)) / 1000);
  pendingSeek = null;
  if (offset > 0.05 && offset < (view.video.duration || Infinity)) view.video.currentTime = offset;
}

function onTime() {
  if (!view) return;
  const w = wallNow();
  if (w === null) return;
  const sg = segs[cur];
  view.now.textContent = `${fmtTime(w)} · ${t('playback.segment_n', { n: cur + 1, total: segs.length })}`;
  if (view.status.classList.contains('status-info') || view.status.classList.contains('status-warn')) {
    if (!view.video.paused) setStatus(t('playback.playing', { start: fmtTime(sg.start, { date: false }), end: fmtTime(sg.end, { date: false }) }));
  }
  placeCursor(w);
}

async function onEnded() {
  if (!view) return;
  if (cur < 0) return;
  if (cur + 1 < segs.length) {
    load(cur + 1, startMs(segs[cur + 1]));
    return;
  }
  // The last one we know of: newer segments may have been recorded meanwhile.
  await follow();
}

async function follow() {
  clearTimeout(followTimer);
  const last = segs[segs.length - 1];
  if (!last || !view) return;
  const token = loadToken;
  let more = [];
  try {
    more = (await fetchSegments(last.camera_id, endMs(last) - 1000, Date.now() + 1000)).filter((sg) => startMs(sg) >= endMs(last) - 500 && sg.id !== last.id);
  } catch (e) {
    setStatus(e instanceof ApiError ? e.display : String(e), 'error');
  }
  if (token !== loadToken || !view) return;
  if (more.length) {
    segs = segs.concat(more);
    range.until = Math.max(range.until, endMs(more[more.length - 1]));
    drawTimeline();
    if (view.video.ended || !view.video.getAttribute('src')) load(cur + 1, startMs(segs[cur + 1]));
  } else {
    setStatus(t('playback.waiting'), 'warn');
    followTimer = setTimeout(follow, FOLLOW_MS);
  }
}

function onVideoError() {
  if (!view) return;
  if (!view.video.getAttribute('src') || cur < 0) return;
  const err = view.video.error;
  const sg = segs[cur];
  setStatus(t('playback.seg_error', { id: sg.id, msg: err ? `${err.code} ${err.message || ''}`.trim() : '?' }), 'error');
  // Go on with the next one rather than stopping the review.
  if (cur + 1 < segs.length) setTimeout(() => view && load(cur + 1, startMs(segs[cur + 1])), 2000);
}

function xOf(ms) {
  return ((ms - range.since) / (range.until - range.since)) * 100;
}

function drawTimeline() {
  const tl = view.timeline;
  clear(tl);
  if (!range) return;
  const track = h('div', { class: 'tl-track' });
  for (const sg of segs) {
    const a = Math.max(range.since, startMs(sg));
    const b = Math.min(range.until, endMs(sg));
    if (b <= a) continue;
    const el = h('div', {
      class: ['seg', sg.recovered ? 'recovered' : ''],
      'data-segment-id': sg.id,
      'data-start': sg.start,
      'data-end': sg.end,
      title: `${fmtTime(sg.start)} – ${fmtTime(sg.end, { date: false })} · ${fmtDuration((endMs(sg) - startMs(sg)) / 1000)} · ${sg.codec} · ${fmtBytes(sg.bytes)}${sg.recovered ? ` · ${t('playback.recovered')}` : ''}`,
    });
    el.style.left = `${xOf(a)}%`;
    el.style.width = `${Math.max(0.15, xOf(b) - xOf(a))}%`;
    track.append(el);
  }
  const cursor = h('div', { class: 'tl-cursor', hidden: true });
  track.append(cursor);
  track.addEventListener('click', (e) => {
    const r = track.getBoundingClientRect();
    const ms = range.since + ((e.clientX - r.left) / r.width) * (range.until - range.since);
    if (segs.length) playAt(ms);
  });
  // Hour/quarter ticks.
  const ticks = h('div', { class: 'tl-ticks' });
  const span = range.until - range.since;
  const step = span <= 20 * 60e3 ? 5 * 60e3 : span <= 2 * 3600e3 ? 15 * 60e3 : 3600e3;
  for (let x = Math.ceil(range.since / step) * step; x <= range.until; x += step) {
    const tk = h('span', { class: 'tl-tick' }, fmtTime(x, { date: false, seconds: false }));
    tk.style.left = `${xOf(x)}%`;
    ticks.append(tk);
  }
  const total = segs.reduce((a, sg) => a + (endMs(sg) - startMs(sg)), 0) / 1000;
  tl.append(track, ticks, h('div', { class: 'tl-legend muted' }, `${fmtTime(range.since)} → ${fmtTime(range.until)} · ${t('playback.summary', { n: segs.length, dur: fmtDuration(total) })}`));
  view.cursor = cursor;
  markCurrent();
}

function placeCursor(ms) {
  if (!view.cursor || !range) return;
  view.cursor.hidden = ms < range.since || ms > range.until;
  view.cursor.style.left = `${xOf(ms)}%`;
}

async function exportSpan() {
  const camera = view.camera.value;
  const startW = wallNow() ?? Date.parse(fromLocalInput(view.time.value) || '');
  if (!camera || !Number.isFinite(startW)) return setStatus(t('playback.pick_time'), 'error');
  const secs = Number(view.exportLen.value);
  const start = new Date(Math.floor(startW / 1000) * 1000);
  const end = new Date(start.getTime() + secs * 1000);
  view.exportBtn.disabled = true;
  view.exportMsg.textContent = t('playback.exporting');
  try {
    const blob = await fetchBlob('/api/v1/recordings/export.mp4', { query: { camera, start: start.toISOString(), end: end.toISOString() } });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: `${camera}-${start.toISOString().replace(/[:.]/g, '')}.mp4` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    view.exportMsg.textContent = t('playback.exported', { size: fmtBytes(blob.size), start: fmtTime(start), secs });
  } catch (e) {
    const busy = e instanceof ApiError && e.code === 'exports_busy';
    view.exportMsg.textContent = busy ? `${t('playback.export_busy', { secs: e.retryAfter || 5 })} (${e.message})`
      : e instanceof ApiError ? (e.status === 503 ? `${t('playback.export_pending')} (${e.message})` : e.display) : String(e);
  } finally {
    if (view) view.exportBtn.disabled = false;
  }
}

export function mount(container, context) {
  ctx = context;
  segs = [];
  range = null;
  cur = -1;
  const cams = ctx.cameras.map((c) => [c.id, `${c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id}${c.records === false ? ` — ${t('cameras.not_recording')}` : ''}`]);
  if (!settings.camera || !ctx.cameras.some((c) => c.id === settings.camera)) {
    const rec = ctx.cameras.find((c) => c.records !== false && c.state === 'online') || ctx.cameras.find((c) => c.records !== false);
    settings.camera = rec ? rec.id : (ctx.cameras[0] && ctx.cameras[0].id) || '';
  }
  if (!settings.time) settings.time = toLocalInput(new Date(Date.now() - 5 * 60e3));
  const field = (label, el) => h('label', { class: 'field' }, h('span', null, label), el);
  view = {
    camera: select({ 'data-testid': 'playback-camera', name: 'camera' }, cams, settings.camera),
    time: h('input', { type: 'datetime-local', 'data-testid': 'playback-time', name: 'time', value: settings.time, step: 1 }),
    window: select({ 'data-testid': 'playback-window', name: 'window' }, Object.keys(WINDOWS).map((k) => [k, t(`playback.window_${k}`)]), settings.window),
    video: h('video', { 'data-testid': 'playback-video', controls: true, preload: 'auto', playsinline: true, muted: true }),
    status: h('p', { class: 'playback-status', 'data-testid': 'playback-status', role: 'status' }),
    now: h('span', { class: 'playback-now', 'data-testid': 'playback-now' }),
    timeline: h('div', { class: 'timeline', 'data-testid': 'playback-timeline' }),
    exportLen: select({ 'data-testid': 'export-length' }, EXPORT_SPANS.map((n) => [String(n), fmtDuration(n)]), '60'),
    exportBtn: h('button', { type: 'button', class: 'btn', 'data-testid': 'export-go' }, t('playback.export')),
    exportMsg: h('span', { class: 'muted', 'data-testid': 'export-status' }),
    cursor: null,
  };
  view.exportBtn.addEventListener('click', exportSpan);
  const goBtn = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'playback-go' }, t('playback.go'));
  const form = h(
    'form',
    { class: 'filters' },
    field(t('filters.camera'), view.camera),
    field(t('playback.time'), view.time),
    field(t('playback.window'), view.window),
    h('div', { class: 'field field-button' }, goBtn),
    h('div', { class: 'field field-button' }, h('button', { type: 'button', class: 'btn btn-quiet', 'data-testid': 'playback-recent', on: { click: () => {
      view.time.value = toLocalInput(new Date(Date.now() - 2 * 60e3));
      go();
    } } }, t('playback.recent'))),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go();
  });
  view.video.addEventListener('loadedmetadata', onLoaded);
  view.video.addEventListener('timeupdate', onTime);
  view.video.addEventListener('ended', onEnded);
  view.video.addEventListener('error', onVideoError);
  container.append(
    h('div', { class: 'page-head' }, h('h1', null, t('playback.title'))),
    form,
    h(
      'section',
      { class: 'player card' },
      h('div', { class: 'player-video' }, view.video),
      h('div', { class: 'player-info' }, view.now, view.status),
      view.timeline,
      h('div', { class: 'export' }, h('span', null, t('playback.export_label')), view.exportLen, view.exportBtn, view.exportMsg),
    ),
  );
  setStatus(t('playback.hint'));
}

export function unmount() {
  clearTimeout(followTimer);
  loadToken++;
  if (view) {
    view.video.pause();
    view.video.removeAttribute('src');
    view.video.load();
  }
  view = null;
}

export function onKey(e) {
  if (typingInField(e) || !view || cur < 0) return;
  // , and . step a segment back/forward.
  if (e.key === '.' && cur + 1 < segs.length) {
    e.preventDefault();
    load(cur + 1, startMs(segs[cur + 1]));
  } else if (e.key === ',' && cur > 0) {
    e.preventDefault();
    load(cur - 1, startMs(segs[cur - 1]));
  }
}
