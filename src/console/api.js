// The console's only door to the server: a fetch wrapper that turns the API's JSON errors
// (`{"error":{"code","message","parameter"}}`) into `ApiError`s with a message to show,
// and sends the user to the login page on 401.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message, { parameter = null, retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.parameter = parameter;
    this.retryAfter = retryAfter;
  }
  /** The text to show the operator: what went wrong, in their language, and the server's words. */
  get display() {
    if (this.status === 0) return t('err.network');
    const head = t(`err.status.${this.status}`);
    const known = head !== `err.status.${this.status}`;
    return `${known ? head : t('err.status.other', { status: this.status })}: ${this.message}`;
  }
}

let onUnauthorized = () => {};
/** Called (once per failing request) when the server answers 401: the session is gone. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** `{a: 1, b: '', c: null}` → `a=1` (empty values left out). */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}

async function errorFrom(resp) {
  let code = 'http_' + resp.status, message = resp.statusText || '', parameter = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      parameter = body.error.parameter || null;
    }
  } catch {
    // Not JSON (a proxy's page?): keep the status text.
  }
  const ra = Number(resp.headers.get('Retry-After'));
  return new ApiError(resp.status, code, message, { parameter, retryAfter: Number.isFinite(ra) && ra > 0 ? ra : null });
}

async function send(url, init, quiet401) {
  let resp;
  try {
    resp = await fetch(url, { credentials: 'same-origin', ...init });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', String(e && e.message ? e.message : e));
  }
  if (!resp.ok) {
    const err = await errorFrom(resp);
    if (resp.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  return resp;
}

/**
 * JSON request. `opts`: `method`, `query` (object), `body` (sent as JSON), `signal`,
 * `quiet401` (do not treat 401 as "session gone": the login form itself).
 */
export async function api(path, { method = 'GET', query, body, signal, quiet401 = false } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await send(path + qs(query), init, quiet401);
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

/** GET a binary resource (JPEG, MP4) as a Blob. */
export async function fetchBlob(path, { query, signal } = {}) {
  const resp = await send(path + qs(query), { signal }, false);
  return resp.blob();
}

/**
 * Whether a media URL can be played now: asks for its first byte only. Resolves to
 * `{ok: true}` or `{ok: false, error: ApiError}` (503 `clip_pending` carries `retryAfter`).
 */
export async function probeMedia(path, { signal } = {}) {
  try {
    const resp = await send(path, { signal, headers: { Range: 'bytes=0-0' } }, false);
    // Drain the one byte so the connection is reused.
    await resp.arrayBuffer();
    return { ok: true };
  } catch (e) {
    if (e instanceof ApiError) return { ok: false, error: e };
    throw e;
  }
}
