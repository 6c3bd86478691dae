// Incidents (`#/incidents`, `#/incidents/<id>`): the filtered event list, newest first,
// kept live from the event stream, with the detail of the open incident beside it and
// the triage shortcuts (j/k, Enter, a/r/f, n, Esc).

import { api, ApiError } from './api.js';
import { t } from './i18n.js';
import { h, fill, select, fmtTime, fmtDuration, fromLocalInput, typingInField, kindLabel } from './dom.js';
import { createDetail, canBecome, eventDuration, severityBadge, reviewBadge, stateBadge, NO_IMAGE } from './detail.js';

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'];
export const REVIEWS = ['new', 'acknowledged', 'resolved', 'false_alarm'];
const PAGE_SIZE = 50;
const FILTER_KEYS = ['camera', 'grid_cell', 'kind', 'severity', 'review', 'since', 'until'];
const STORE_KEY = 'gw.incidents.filters';

// State kept across visits to the page (and language switches).
let filters = loadFilters();
const clientSide = new Set(); // filters this server does not know: applied here instead
let events = [];
let nextBefore = null;
let selectedId = null;
let openId = null;
let listError = null;

// While mounted.
let ctx = null;
let view = null;
let detail = null;
let unsubLive = null;
let tickTimer = null;
let loadToken = 0;
const refetchTimers = new Map();

function loadFilters() {
  try {
    const f = JSON.parse(sessionStorage.getItem(STORE_KEY) || '{}');
    return Object.fromEntries(FILTER_KEYS.map((k) => [k, typeof f[k] === 'string' ? f[k] : '']));
  } catch {
    return Object.fromEntries(FILTER_KEYS.map((k) => [k, '']));
  }
}

function saveFilters() {
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(filters));
  } catch {
    // Private mode: filters just do not survive a reload.
  }
}

/** Whether `ev` passes the current filters (for live upserts and client-side filters). */
function matches(ev) {
  if (filters.camera && ev.camera_id !== filters.camera) return false;
  if (filters.grid_cell && ev.grid_cell !== filters.grid_cell) return false;
  if (filters.kind && ev.kind !== filters.kind) return false;
  if (filters.severity && ev.severity !== filters.severity) return false;
  if (filters.review && ev.review !== filters.review) return false;
  const since = fromLocalInput(filters.since), until = fromLocalInput(filters.until);
  if (since && Date.parse(ev.started_at) < Date.parse(since)) return false;
  if (until && Date.parse(ev.started_at) >= Date.parse(until)) return false;
  return true;
}

function query(before) {
  const q = { limit: PAGE_SIZE, before };
  for (const k of ['camera', 'grid_cell', 'kind', 'severity', 'review']) {
    if (filters[k] && !clientSide.has(k)) q[k] = filters[k];
  }
  q.since = fromLocalInput(filters.since);
  q.until = fromLocalInput(filters.until);
  return q;
}

/** GET /api/v1/events; a filter the server rejects as unknown is applied client-side. */
async function fetchPage(before) {
  for (;;) {
    try {
      const r = await api('/api/v1/events', { query: query(before) });
      return { events: (r.events || []).filter(matches), next_before: r.next_before ?? null };
    } catch (e) {
      const p = e instanceof ApiError && e.status === 400 ? e.parameter : null;
      if (p && ['severity', 'grid_cell'].includes(p) && !clientSide.has(p) && /unknown/i.test(e.message)) {
        clientSide.add(p);
        continue;
      }
      throw e;
    }
  }
}

function sortEvents() {
  events.sort((a, b) => b.seq - a.seq);
}

function upsert(ev, { insert = true } = {}) {
  const i = events.findIndex((e) => e.id === ev.id);
  if (i >= 0) events[i] = ev;
  else if (insert && matches(ev)) {
    events.push(ev);
    sortEvents();
  } else return false;
  return true;
}

async function reload({ keep = false } = {}) {
  const token = ++loadToken;
  if (view) view.status.textContent = t('common.loading');
  try {
    const page = await fetchPage(undefined);
    if (token !== loadToken) return;
    listError = null;
    if (keep && events.length) {
      // A refresh: merge the newest page into what is shown (older pages stay).
      for (const ev of page.events) upsert(ev);
    } else {
      events = page.events;
      nextBefore = page.next_before;
    }
  } catch (e) {
    if (token !== loadToken) return;
    listError = e instanceof ApiError ? e.display : String(e);
  }
  if (!selectedId || !events.some((e) => e.id === selectedId)) selectedId = openId || (events[0] && events[0].id) || null;
  renderList();
}

async function loadMore() {
  if (!nextBefore) return;
  const token = ++loadToken;
  view.more.disabled = true;
  try {
    const page = await fetchPage(nextBefore);
    if (token !== loadToken) return;
    for (const ev of page.events) upsert(ev);
    nextBefore = page.next_before;
    listError = null;
  } catch (e) {
    listError = e instanceof ApiError ? e.display : String(e);
  }
  renderList();
}

// ---------------------------------------------------------------------------------------
// Rendering

function filterBar() {
  const any = (key) => ['', t(key)];
  const cams = ctx.cameras.map((c) => [c.id, c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id]);
  const cells = [...new Set(ctx.cameras.map((c) => c.grid_cell).filter(Boolean))].sort().map((g) => [g, g]);
  // Kinds: those of the cameras' configured rules (GET /cameras), plus any seen in the list
  // (e.g. `storage_full`, or a rule removed since) and the current filter.
  const ruleKinds = ctx.cameras.flatMap((c) => (c.rules || []).map((r) => r.kind));
  const kinds = [...new Set([...ruleKinds, ...events.map((e) => e.kind), filters.kind].filter(Boolean))].map((k) => [k, kindLabel(k)]);
  const field = (label, el) => h('label', { class: 'field' }, h('span', null, label), el);
  const onChange = (key) => (e) => {
    filters[key] = e.target.value;
    saveFilters();
    reload();
  };
  const sel = (key, testid, opts, anyKey) => {
    const el = select({ 'data-testid': testid, name: key }, [any(anyKey), ...opts], filters[key]);
    el.addEventListener('change', onChange(key));
    return el;
  };
  const time = (key, testid) => {
    const el = h('input', { type: 'datetime-local', 'data-testid': testid, name: key, value: filters[key] });
    el.addEventListener('change', onChange(key));
    return el;
  };
  const reset = h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'data-testid': 'filter-reset' }, t('filters.reset'));
  reset.addEventListener('click', () => {
    filters = Object.fromEntries(FILTER_KEYS.map((k) => [k, '']));
    saveFilters();
    renderFilters();
    reload();
  });
  return h(
    'form',
    { class: 'filters', 'data-testid': 'incident-filters', on: { submit: (e) => e.preventDefault() } },
    field(t('filters.camera'), sel('camera', 'filter-camera', cams, 'filters.any_camera')),
    field(t('common.grid_cell'), sel('grid_cell', 'filter-grid-cell', cells, 'filters.any')),
    field(t('filters.kind'), sel('kind', 'filter-kind', kinds, 'filters.any')),
    field(t('filters.severity'), sel('severity', 'filter-severity', SEVERITIES.map((v) => [v, t(`severity.${v}`)]), 'filters.any')),
    field(t('filters.review'), sel('review', 'filter-review', REVIEWS.map((v) => [v, t(`review.${v}`)]), 'filters.any')),
    field(t('filters.since'), time('since', 'filter-since')),
    field(t('filters.until'), time('until', 'filter-until')),
    h('div', { class: 'field field-button' }, reset),
  );
}

function renderFilters() {
  const bar = filterBar();
  view.filters.replaceWith(bar);
  view.filters = bar;
}

const rowCache = new Map(); // event id → row element (kept so thumbnails are not refetched)

function buildRow(ev) {
  const thumb = h('img', { 'data-testid': 'thumb', class: 'thumb', alt: '', loading: 'lazy', decoding: 'async', src: ev.snapshot ? `/api/v1/events/${encodeURIComponent(ev.id)}/snapshot.jpg` : NO_IMAGE });
  thumb.addEventListener('error', () => {
    if (thumb.src !== NO_IMAGE) thumb.src = NO_IMAGE;
  });
  const row = h('div', { class: 'row', role: 'option', 'data-testid': 'incident-row', 'data-event-id': ev.id });
  row.addEventListener('click', () => {
    select_(ev.id);
    open(ev.id);
  });
  row._thumb = thumb;
  row._snap = !!ev.snapshot;
  return row;
}

function fillRow(row, ev) {
  row.setAttribute('data-review', ev.review);
  row.setAttribute('data-camera', ev.camera_id);
  row.setAttribute('data-kind', ev.kind);
  row.setAttribute('data-state', ev.state);
  row.setAttribute('data-severity', ev.severity);
  row.className = ['row', `sev-${ev.severity}`, ev.state === 'active' ? 'is-active' : '', ev.review === 'new' ? 'is-new' : ''].filter(Boolean).join(' ');
  if (ev.snapshot && !row._snap) {
    row._thumb.src = `/api/v1/events/${encodeURIComponent(ev.id)}/snapshot.jpg`;
    row._snap = true;
  }
  fill(row, 
    row._thumb,
    h(
      'div',
      { class: 'row-main' },
      h('div', { class: 'row-title' }, h('span', { class: 'kind' }, kindLabel(ev.kind)), severityBadge(ev.severity), ev.state === 'active' ? stateBadge('active') : null),
      h('div', { class: 'row-sub' }, h('span', { class: 'cam' }, ctx.cameraName(ev.camera_id)), ev.grid_cell ? h('span', { class: 'cell' }, ev.grid_cell) : null, ev.zone || ev.line ? h('span', { class: 'muted' }, ev.zone || ev.line) : null),
    ),
    h(
      'div',
      { class: 'row-side' },
      h('time', { class: 'started', datetime: ev.started_at }, fmtTime(ev.started_at)),
      h('span', { class: 'dur', title: t('detail.duration') }, fmtDuration(eventDuration(ev))),
      reviewBadge(ev.review),
    ),
  );
}

function renderList() {
  if (!view) return;
  const list = view.list;
  const seen = new Set();
  let prev = null;
  for (const ev of events) {
    seen.add(ev.id);
    let row = rowCache.get(ev.id);
    if (!row) {
      row = buildRow(ev);
      rowCache.set(ev.id, row);
    }
    fillRow(row, ev);
    row.setAttribute('aria-selected', ev.id === selectedId ? 'true' : 'false');
    row.classList.toggle('is-open', ev.id === openId);
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== row) list.insertBefore(row, want);
    prev = row;
  }
  for (const [id, row] of rowCache) {
    if (!seen.has(id)) {
      row.remove();
      rowCache.delete(id);
    }
  }
  view.empty.hidden = events.length > 0 || !!listError;
  view.error.textContent = listError || '';
  view.error.hidden = !listError;
  view.more.hidden = !nextBefore;
  view.more.disabled = false;
  const extra = clientSide.size ? ` · ${t('incidents.client_filtered')}` : '';
  view.status.textContent = t('incidents.count', { n: events.length }) + (nextBefore ? '+' : '') + extra;
  updateNav();
}

function updateNav() {
  if (!detail) return;
  const i = events.findIndex((e) => e.id === detail.id);
  detail.setNav(i > 0 ? events[i - 1].id : null, i >= 0 && i < events.length - 1 ? events[i + 1].id : null);
}

function select_(id, { scroll = true } = {}) {
  selectedId = id;
  if (!view) return;
  for (const row of view.list.children) {
    const on = row.getAttribute('data-event-id') === id;
    row.setAttribute('aria-selected', on ? 'true' : 'false');
    if (on && scroll) row.scrollIntoView({ block: 'nearest' });
  }
}

function open(id) {
  const hash = `#/incidents/${encodeURIComponent(id)}`;
  if (location.hash !== hash) location.hash = hash;
}

async function showDetail(id) {
  openId = id;
  view.section.classList.toggle('has-detail', !!id);
  for (const row of view.list.children) row.classList.toggle('is-open', row.getAttribute('data-event-id') === id);
  if (detail && detail.id === id) return;
  if (detail) detail.dispose();
  detail = null;
  if (!id) {
    fill(view.detail, h('div', { class: 'placeholder', 'data-testid': 'detail-placeholder' }, h('p', null, t('incidents.pick')), h('p', { class: 'muted' }, t('incidents.pick_keys'))));
    return;
  }
  select_(id);
  let ev = events.find((e) => e.id === id);
  if (!ev) {
    fill(view.detail, h('p', { class: 'placeholder' }, t('common.loading')));
    try {
      ev = await api(`/api/v1/events/${encodeURIComponent(id)}`);
    } catch (e) {
      if (openId !== id || !view) return;
      fill(view.detail, h('div', { class: 'placeholder error', 'data-testid': 'detail-error' }, e instanceof ApiError ? e.display : String(e)));
      return;
    }
    if (openId !== id || !view) return;
  }
  detail = createDetail(view.detail, ctx, ev, {
    onReview: (state) => review(id, state),
    onPrev: () => step(-1, true),
    onNext: () => step(1, true),
    onClose: () => (location.hash = '#/incidents'),
  });
  updateNav();
}

/** Moves the selection by `delta` rows; opens it when `openIt` (or when a detail is open). */
async function step(delta, openIt) {
  if (!events.length) return;
  let i = events.findIndex((e) => e.id === (openId || selectedId));
  if (i < 0) i = delta > 0 ? -1 : events.length;
  let j = i + delta;
  if (j >= events.length && nextBefore) {
    await loadMore();
  }
  j = Math.max(0, Math.min(events.length - 1, j));
  const id = events[j].id;
  select_(id);
  if (openIt || openId) open(id);
}

async function review(id, state) {
  if (!ctx.can('review')) {
    ctx.toast(t('review.no_permission'), 'error');
    return;
  }
  const ev = events.find((e) => e.id === id) || (detail && detail.id === id ? detail.event : null);
  if (ev && !canBecome(ev.review, state)) {
    ctx.toast(t('review.not_allowed', { from: t(`review.${ev.review}`), to: t(`review.${state}`) }), 'error');
    return;
  }
  const note = detail && detail.id === id ? detail.noteValue() : '';
  const body = { state };
  if (note) body.note = note;
  if (detail && detail.id === id) detail.showError(null);
  try {
    const updated = await api(`/api/v1/events/${encodeURIComponent(id)}/review`, { method: 'POST', body });
    upsert(updated, { insert: false });
    if (detail && detail.id === id) {
      detail.clearNote();
      detail.update(updated);
    }
    renderList();
    ctx.toast(t('review.done', { kind: kindLabel(updated.kind), state: t(`review.${updated.review}`) }), 'ok');
  } catch (e) {
    const msg = e instanceof ApiError ? e.display : String(e);
    if (detail && detail.id === id) detail.showError(msg);
    ctx.toast(msg, 'error');
    // 409: someone else moved it on; show what it is now.
    if (e instanceof ApiError && e.status === 409) refetch(id);
  }
}

/** Fetches one event and puts it where it belongs (list, open detail). */
async function refetch(id) {
  let ev;
  try {
    ev = await api(`/api/v1/events/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      events = events.filter((x) => x.id !== id);
      renderList();
    }
    return;
  }
  if (!view) return;
  const wasThere = events.some((e) => e.id === ev.id);
  upsert(ev);
  if (!wasThere && !selectedId) selectedId = ev.id;
  if (detail && detail.id === ev.id) detail.update(ev);
  renderList();
}

function onLive(msg) {
  if (msg.type === 'poll') {
    reload({ keep: true });
    if (detail) refetch(detail.id);
    return;
  }
  const env = msg.envelope || {};
  if (!env.event_id) return;
  // Coalesce bursts of updates of one event into one fetch.
  if (refetchTimers.has(env.event_id)) return;
  refetchTimers.set(
    env.event_id,
    setTimeout(() => {
      refetchTimers.delete(env.event_id);
      refetch(env.event_id);
    }, 300),
  );
}

// ---------------------------------------------------------------------------------------
// Page interface

export function mount(container, context, arg) {
  ctx = context;
  const list = h('div', { class: 'list', role: 'listbox', tabindex: '0', 'aria-label': t('incidents.title'), 'data-testid': 'incident-list' });
  const more = h('button', { type: 'button', class: 'btn more', 'data-testid': 'load-more', hidden: true, on: { click: () => loadMore() } }, t('incidents.more'));
  view = {
    list,
    more,
    filters: h('form'),
    status: h('span', { class: 'list-status', 'data-testid': 'list-status' }),
    error: h('p', { class: 'form-error', 'data-testid': 'list-error', role: 'alert', hidden: true }),
    empty: h('p', { class: 'empty', 'data-testid': 'incidents-empty', hidden: true }, t('incidents.empty')),
    detail: h('div', { class: 'detail-pane' }),
    section: null,
  };
  view.section = h(
    'section',
    { class: 'incidents' },
    h('div', { class: 'list-pane' }, view.filters, h('div', { class: 'list-head' }, h('h1', null, t('incidents.title')), view.status), view.error, h('div', { class: 'list-scroll' }, list, view.empty, more)),
    view.detail,
  );
  container.append(view.section);
  renderFilters();
  rowCache.clear();
  renderList();
  reload({ keep: events.length > 0 });
  showDetail(arg);
  unsubLive = ctx.live.subscribe(onLive);
  tickTimer = setInterval(() => {
    if (document.hidden || !view) return;
    for (const row of view.list.querySelectorAll('.row.is-active .dur')) {
      const ev = events.find((e) => e.id === row.closest('.row').getAttribute('data-event-id'));
      if (ev) row.textContent = fmtDuration(eventDuration(ev));
    }
    if (detail) detail.tick();
  }, 1000);
  if (!arg) list.focus({ preventScroll: true });
}

export function update(arg) {
  if (!view) return;
  showDetail(arg);
  if (!arg) view.list.focus({ preventScroll: true });
}

export function unmount() {
  if (detail) detail.dispose();
  detail = null;
  if (unsubLive) unsubLive();
  unsubLive = null;
  clearInterval(tickTimer);
  for (const tm of refetchTimers.values()) clearTimeout(tm);
  refetchTimers.clear();
  loadToken++;
  view = null;
  rowCache.clear();
}

export function onKey(e) {
  if (!view) return;
  if (typingInField(e)) {
    if (e.key === 'Escape') {
      e.target.blur();
      e.preventDefault();
    }
    return;
  }
  const k = e.key;
  // Enter on a focused button or link activates it, not the shortcut.
  if ((k === 'Enter' || k === ' ') && e.target instanceof Element && e.target.closest('button, a, video')) return;
  if (k.startsWith('Arrow') && e.target instanceof Element && e.target.closest('video')) return;
  const target = openId || selectedId;
  const act = (fn) => {
    e.preventDefault();
    fn();
  };
  if (k === 'j' || k === 'ArrowDown') act(() => step(1, false));
  else if (k === 'k' || k === 'ArrowUp') act(() => step(-1, false));
  else if ((k === 'Enter' || k === 'o') && selectedId) act(() => open(selectedId));
  else if (k === 'a' && target) act(() => review(target, 'acknowledged'));
  else if (k === 'r' && target) act(() => review(target, 'resolved'));
  else if (k === 'f' && target) act(() => review(target, 'false_alarm'));
  else if (k === 'n' && target) {
    act(() => {
      if (detail && detail.id === target) detail.focusNote();
      else {
        open(target);
        // Focus once the detail is there.
        const wait = setInterval(() => {
          if (detail && detail.id === target) {
            clearInterval(wait);
            detail.focusNote();
          }
        }, 50);
        setTimeout(() => clearInterval(wait), 3000);
      }
    });
  } else if (k === 'Escape' && openId) act(() => (location.hash = '#/incidents'));
}
