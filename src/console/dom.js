// Small DOM helpers: element builders and time/duration formatting.
// No innerHTML anywhere: every text goes in through text nodes, so nothing from the
// server (camera names, notes, error messages) is ever interpreted as markup.

import { t, getLang } from './i18n.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'muted') el[k] = v;
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** `h('div', {class: 'x', 'data-testid': 'y', on: {click}}, child, …)` */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** Like `h`, in the SVG namespace. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replaces `el`'s children (null/false children are skipped, unlike `Element.append`). */
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Local time `YYYY-MM-DD HH:MM:SS` (unambiguous in both languages). */
export function fmtTime(v, { seconds = true, date = true } = {}) {
  if (!v) return '—';
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ':' + pad(d.getSeconds()) : ''}`;
  return date ? `${day} ${time}` : time;
}

/** Seconds → `1h 02m`, `3m 07s`, `12s` (or the Chinese units). */
export function fmtDuration(secs) {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return '—';
  const n = Math.max(0, Math.round(secs));
  const hh = Math.floor(n / 3600), mm = Math.floor((n % 3600) / 60), ss = n % 60;
  const u = getLang() === 'zh' ? { h: '小时', m: '分', s: '秒' } : { h: 'h', m: 'm', s: 's' };
  if (hh) return `${hh}${u.h} ${pad(mm)}${u.m}`;
  if (mm) return `${mm}${u.m} ${pad(ss)}${u.s}`;
  return `${ss}${u.s}`;
}

/** `Date` → the value a `datetime-local` input takes (local time, minutes). */
export function toLocalInput(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value → RFC 3339 UTC, or null when empty/invalid. */
export function fromLocalInput(v) {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Whether keyboard input currently goes to a form field (shortcuts stay quiet then). */
export function typingInField(e) {
  const el = e.target;
  if (!(el instanceof HTMLElement)) return false;
  return el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName);
}

/** A `<select>` with `[value, label]` options. */
export function select(attrs, options, current) {
  return h('select', attrs, options.map(([v, label]) => h('option', { value: v, selected: v === current }, label)));
}

/** Translated label of an event kind (`intrusion` → 入侵), falling back to the raw kind. */
export function kindLabel(kind) {
  const key = `kind.${kind}`;
  const s = t(key);
  return s === key ? kind : s;
}
