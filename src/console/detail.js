// One incident in detail (`#/incidents/<id>`): snapshot, clip, objects, rule and the
// review workflow. Created by incidents.js, which owns the list and the shortcuts.

import { probeMedia } from './api.js';
import { t, directionLabel } from './i18n.js';
import { h, fill, s, fmtTime, fmtDuration, kindLabel } from './dom.js';

/** Transitions the workflow allows (src/types.rs `Review::can_become`). */
export function canBecome(from, to) {
  return (from === 'new' && ['acknowledged', 'resolved', 'false_alarm'].includes(to)) || (from === 'acknowledged' && ['resolved', 'false_alarm'].includes(to));
}

export const NO_IMAGE =
  'data:image/svg+xml,' +
  encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 120"><rect width="160" height="120" fill="#1b2630"/><path d="M58 78l16-20 12 14 8-9 14 15z" fill="#3a4b59"/><circle cx="96" cy="46" r="7" fill="#3a4b59"/></svg>');

export function eventDuration(ev, now = Date.now()) {
  const start = Date.parse(ev.started_at);
  const end = ev.ended_at ? Date.parse(ev.ended_at) : now;
  return (end - start) / 1000;
}

export function severityBadge(sev) {
  return h('span', { class: ['badge', `sev-${sev}`] }, t(`severity.${sev}`));
}

export function reviewBadge(review, attrs = {}) {
  return h('span', { class: ['badge', `review-${review}`], 'data-review': review, ...attrs }, t(`review.${review}`));
}

export function stateBadge(state) {
  return h('span', { class: ['badge', `state-${state}`] }, t(`state.${state}`));
}

function fmtDetailValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** The zone/line the rule watches, drawn over the snapshot (normalised coordinates). */
function geometryOverlay(camera, ev) {
  if (!camera) return null;
  const zone = ev.zone && (camera.zones || []).find((z) => z.name === ev.zone);
  const line = ev.line && (camera.lines || []).find((l) => l.name === ev.line);
  if (!zone && !line) return null;
  const pts = (p) => p.map(([x, y]) => `${x},${y}`).join(' ');
  return s(
    'svg',
    { class: 'overlay', viewBox: '0 0 1 1', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    zone ? s('polygon', { class: 'zone', points: pts(zone.points) }) : null,
    line ? s('polyline', { class: 'line', points: pts(line.points) }) : null,
  );
}

/**
 * Renders event `ev` into `container`. `handlers`: `onReview(state)`, `onPrev()`,
 * `onNext()`, `onClose()`. Returns a handle to update it and to dispose of its timers.
 */
export function createDetail(container, ctx, ev, handlers) {
  let event = ev;
  let disposed = false;
  let retryTimer = null;
  const abort = new AbortController();
  const clipUrl = `/api/v1/events/${encodeURIComponent(ev.id)}/clip.mp4`;
  const snapUrl = `/api/v1/events/${encodeURIComponent(ev.id)}/snapshot.jpg`;
  const camera = ctx.cameras.find((c) => c.id === ev.camera_id);
  const canReview = ctx.can('review');

  // Header
  const title = h('h2', { class: 'detail-title' });
  const meta = h('div', { class: 'detail-meta' });
  const prevBtn = h('button', { type: 'button', class: 'btn', 'data-testid': 'prev-incident', title: `${t('detail.prev')} (k)`, on: { click: () => handlers.onPrev() } }, '↑ ', t('detail.prev'));
  const nextBtn = h('button', { type: 'button', class: 'btn', 'data-testid': 'next-incident', title: `${t('detail.next')} (j)`, on: { click: () => handlers.onNext() } }, '↓ ', t('detail.next'));
  const closeBtn = h('button', { type: 'button', class: 'btn btn-quiet', title: `${t('detail.close')} (Esc)`, 'aria-label': t('detail.close'), on: { click: () => handlers.onClose() } }, '✕');

  // Media
  const snapshot = h('img', { 'data-testid': 'snapshot', alt: t('detail.snapshot'), src: ev.snapshot ? snapUrl : NO_IMAGE });
  snapshot.addEventListener('error', () => {
    if (snapshot.src !== NO_IMAGE) snapshot.src = NO_IMAGE;
  });
  const snapFrame = h('div', { class: 'frame' }, snapshot, geometryOverlay(camera, ev));
  const video = h('video', { 'data-testid': 'clip', controls: true, preload: 'auto', playsinline: true, muted: true, poster: ev.snapshot ? snapUrl : NO_IMAGE });
  const clipStatus = h('p', { class: 'clip-status', 'data-testid': 'clip-status', role: 'status' });
  const clipRetry = h('button', { type: 'button', class: 'btn btn-small', hidden: true, on: { click: () => loadClip() } }, t('clip.retry_now'));
  const clipDownload = h('a', { class: 'btn btn-small', href: clipUrl, download: `${ev.camera_id}-${ev.kind}-${ev.id}.mp4`, hidden: true }, t('clip.download'));
  video.addEventListener('error', () => {
    if (!video.getAttribute('src')) return;
    const err = video.error;
    setClipStatus(t('clip.play_error', { msg: err ? `${err.code} ${err.message || ''}` : '?' }), 'error');
    clipRetry.hidden = false;
  });

  // Review
  const reviewState = h('span', { 'data-testid': 'review-state' });
  const reviewBy = h('p', { class: 'review-by', 'data-testid': 'review-by' });
  const note = canReview ? h('textarea', { 'data-testid': 'review-note', rows: 2, maxlength: 2000, placeholder: t('review.note_placeholder'), 'aria-label': t('review.note') }) : null;
  const btn = (state, testid, key, shortcut) =>
    h('button', { type: 'button', class: ['btn', `btn-${state}`], 'data-testid': testid, 'data-state': state, title: `${t(key)} (${shortcut})`, on: { click: () => handlers.onReview(state) } }, t(key), h('kbd', null, shortcut));
  const reviewButtons = canReview
    ? [btn('acknowledged', 'review-acknowledge', 'review.do_acknowledge', 'a'), btn('resolved', 'review-resolve', 'review.do_resolve', 'r'), btn('false_alarm', 'review-false-alarm', 'review.do_false_alarm', 'f')]
    : [];
  const reviewError = h('p', { class: 'form-error', 'data-testid': 'review-error', role: 'alert', hidden: true });

  // Rule and objects
  const ruleBox = h('dl', { class: 'kv', 'data-testid': 'rule' });
  const objects = h('table', { class: 'table', 'data-testid': 'objects' });

  const root = h(
    'article',
    { class: 'detail', 'data-testid': 'incident-detail', 'data-event-id': ev.id, tabindex: '-1' },
    h('header', { class: 'detail-head' }, h('div', { class: 'detail-heading' }, title, meta), h('div', { class: 'detail-nav' }, prevBtn, nextBtn, closeBtn)),
    h(
      'div',
      { class: 'media' },
      h('figure', null, snapFrame, h('figcaption', null, t('detail.snapshot'))),
      h('figure', null, h('div', { class: 'frame' }, video), h('figcaption', null, h('span', null, t('detail.clip')), clipStatus, clipRetry, clipDownload)),
    ),
    h(
      'section',
      { class: 'review-box' },
      h('h3', null, t('review.title'), ' ', reviewState),
      reviewBy,
      canReview ? h('div', { class: 'review-form' }, note, h('div', { class: 'review-buttons' }, reviewButtons)) : h('p', { class: 'muted' }, t('review.read_only')),
      reviewError,
    ),
    h('div', { class: 'detail-cols' }, h('section', null, h('h3', null, t('detail.rule')), ruleBox), h('section', null, h('h3', null, t('detail.objects')), objects)),
  );
  fill(container, root);

  function setClipStatus(text, kind = 'info') {
    clipStatus.textContent = text || '';
    clipStatus.hidden = !text;
    clipStatus.className = `clip-status clip-${kind}`;
  }

  // While the clip is pending: when the next try is (the status counts down to it).
  let pending = null;
  function showPending() {
    const secs = Math.max(0, Math.ceil((pending.until - Date.now()) / 1000));
    setClipStatus(t(event.state === 'active' ? 'clip.pending_active' : 'clip.pending', { secs }), 'pending');
  }

  async function loadClip() {
    clearTimeout(retryTimer);
    pending = null;
    clipRetry.hidden = true;
    setClipStatus(t('clip.checking'));
    let r;
    try {
      r = await probeMedia(clipUrl, { signal: abort.signal });
    } catch {
      return; // aborted: the detail is gone
    }
    if (disposed) return;
    if (r.ok) {
      setClipStatus(null);
      video.src = clipUrl;
      clipDownload.hidden = false;
      return;
    }
    const e = r.error;
    if (e.status === 503) {
      const secs = Math.min(Math.max(e.retryAfter || 3, 2), 15);
      pending = { until: Date.now() + secs * 1000 };
      showPending();
      retryTimer = setTimeout(loadClip, secs * 1000);
    } else if (e.status === 404) {
      setClipStatus(`${t('clip.none')} (${e.message})`, 'error');
    } else if (e.status === 401) {
      // The session is gone; the login page takes over.
    } else {
      setClipStatus(`${t('clip.error')}: ${e.display}`, 'error');
      clipRetry.hidden = false;
      retryTimer = setTimeout(loadClip, 15000);
    }
  }

  function renderHead() {
    fill(title, kindLabel(event.kind), ' ', severityBadge(event.severity), ' ', stateBadge(event.state));
    root.setAttribute('data-state', event.state);
    const cam = ctx.cameraName(event.camera_id);
    fill(meta, 
      h('span', { class: 'cam' }, cam, cam !== event.camera_id ? h('span', { class: 'muted' }, ` (${event.camera_id})`) : null),
      event.grid_cell ? h('span', { class: 'cell' }, `${t('common.grid_cell')} ${event.grid_cell}`) : null,
      h('span', null, `${t('detail.started')} ${fmtTime(event.started_at)}`),
      h('span', null, event.ended_at ? `${t('detail.ended')} ${fmtTime(event.ended_at)}` : t('state.active')),
      h('span', { class: 'dur' }, `${t('detail.duration')} ${fmtDuration(eventDuration(event))}`),
      h('span', { class: 'muted' }, `#${event.seq}`),
    );
  }

  function renderReview() {
    reviewState.className = ['badge', `review-${event.review}`].join(' ');
    reviewState.setAttribute('data-review', event.review);
    reviewState.textContent = t(`review.${event.review}`);
    if (event.reviewed_by) {
      fill(reviewBy, 
        t('review.by', { who: event.reviewed_by, when: fmtTime(event.reviewed_at) }),
        event.review_note ? h('q', { class: 'review-note-text' }, event.review_note) : null,
      );
    } else {
      fill(reviewBy, h('span', { class: 'muted' }, t('review.not_yet')));
    }
    for (const b of reviewButtons) b.disabled = !canBecome(event.review, b.getAttribute('data-state'));
    if (note) note.disabled = !['new', 'acknowledged'].includes(event.review);
  }

  function renderRule() {
    const rows = [
      [t('detail.rule_id'), event.rule || '—'],
      [t('detail.zone'), event.zone || '—'],
      [t('detail.line'), event.line || '—'],
    ];
    if (event.detail && typeof event.detail === 'object') {
      for (const [k, v] of Object.entries(event.detail)) {
        // line_crossing: the direction with the line's name for it, on one row.
        if (k === 'direction_name' && 'direction' in event.detail) continue;
        if (k === 'direction' && (v === 'a_to_b' || v === 'b_to_a')) rows.push([t('detail.direction'), directionLabel(v, event.detail.direction_name), 'detail-direction']);
        else rows.push([k, fmtDetailValue(v)]);
      }
    }
    fill(ruleBox, rows.map(([k, v, testid]) => [h('dt', null, k), h('dd', testid ? { 'data-testid': testid } : null, v)]));
  }

  function renderObjects() {
    const objs = event.objects || [];
    const pct = (v) => `${(v * 100).toFixed(0)}%`;
    fill(objects, 
      h('thead', null, h('tr', null, h('th', null, t('objects.class')), h('th', null, t('objects.score')), h('th', null, t('objects.box')), h('th', null, t('objects.track')))),
      h(
        'tbody',
        null,
        objs.length
          ? objs.map((o) => {
              const b = o.box || o.bbox;
              return h(
                'tr',
                null,
                h('td', null, o.class),
                h('td', { class: 'num' }, Number.isFinite(o.score) ? o.score.toFixed(2) : '—'),
                h('td', { class: 'num' }, b ? `${pct(b.x1)},${pct(b.y1)} – ${pct(b.x2)},${pct(b.y2)}` : '—'),
                h('td', { class: 'num' }, o.track_id ?? '—'),
              );
            })
          : h('tr', null, h('td', { colspan: 4, class: 'muted' }, t('objects.none'))),
      ),
    );
  }

  renderHead();
  renderReview();
  renderRule();
  renderObjects();
  loadClip();

  return {
    id: ev.id,
    root,
    get event() {
      return event;
    },
    /** New data for the same event (live change, review done). */
    update(next) {
      const wasActive = event.state === 'active';
      event = next;
      renderHead();
      renderReview();
      renderRule();
      renderObjects();
      // Ended: the clip may be ready soon; check now rather than at the next retry.
      if (wasActive && next.state !== 'active' && !video.getAttribute('src')) loadClip();
    },
    tick() {
      if (pending) showPending();
      if (event.state === 'active') {
        const d = meta.querySelector('.dur');
        if (d) d.textContent = `${t('detail.duration')} ${fmtDuration(eventDuration(event))}`;
      }
    },
    setNav(prevId, nextId) {
      prevBtn.disabled = !prevId;
      nextBtn.disabled = !nextId;
    },
    noteValue: () => (note ? note.value.trim() : ''),
    clearNote() {
      if (note) note.value = '';
    },
    focusNote() {
      if (note && !note.disabled) note.focus();
    },
    showError(msg) {
      reviewError.textContent = msg || '';
      reviewError.hidden = !msg;
    },
    dispose() {
      disposed = true;
      clearTimeout(retryTimer);
      abort.abort();
      video.pause();
      video.removeAttribute('src');
      video.load();
    },
  };
}

