// End-to-end scenario of the gridwatch operator console in headless Debian chromium, driven
// by playwright-core (which never downloads a browser). tests/console_browser.rs starts the
// real appliance on a looping test video, creates an operator and runs this script.
//
// Environment:
//   GW_BASE_URL     the appliance, e.g. http://127.0.0.1:8080 (required; must be 127.0.0.1)
//   GW_USER         an operator's user name (required)
//   GW_PASSWORD     … and password (required)
//   GW_OUT_DIR      folder for the screenshots (required; created)
//   GW_CHROMIUM     browser executable (default /usr/bin/chromium)
//   GW_LIVE_SECS    how long to wait for a new incident over the live stream (default 90)
//   GW_CLIP_SECS    how long to wait for the incident's clip (default 90)
//
// The DOM names and routes are the console contract (docs/console.md). Every request the
// page makes (documents, scripts, images, media, EventSource, fetch) is recorded; one to
// any host other than 127.0.0.1 fails the run. A JS error in the page or a Content Security
// Policy violation fails it too. Prints one JSON summary line (`{"ok":…}`) at the end and
// exits 1 with the step and what was seen when something fails.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined || v === '') {
    console.error(`console.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return v;
};
const BASE = env('GW_BASE_URL').replace(/\/$/, '');
const USER = env('GW_USER');
const PASSWORD = env('GW_PASSWORD');
const OUT = env('GW_OUT_DIR');
const CHROMIUM = env('GW_CHROMIUM', '/usr/bin/chromium');
const LIVE_SECS = Number(env('GW_LIVE_SECS', '90'));
const CLIP_SECS = Number(env('GW_CLIP_SECS', '90'));
const NOTE = 'checked on camera, person on the walkway';
const SMALL = { width: 1366, height: 768 };
const LARGE = { width: 1920, height: 1080 };

mkdirSync(OUT, { recursive: true });

const t0 = Date.now();
const summary = { ok: false, steps: [], screenshots: [], requests: 0, hosts: [], out_dir: OUT };
let step = 'start';
const problems = []; // things seen by listeners (foreign hosts, page errors, CSP violations)

class StepError extends Error {}
const fail = (msg) => {
  throw new StepError(msg);
};
const checkProblems = () => {
  if (problems.length) fail(problems.join('; '));
};
const begin = (name) => {
  checkProblems(); // anything the listeners saw during the previous step fails it
  step = name;
  summary.steps.push({ step: name, at_s: +((Date.now() - t0) / 1000).toFixed(1) });
  console.error(`[console.mjs] ${((Date.now() - t0) / 1000).toFixed(1)} s: ${name}`);
};

// Is this URL allowed to leave the page? Only 127.0.0.1 (any port); data: and blob: stay
// inside the browser (a blob: URL carries its origin, which must be 127.0.0.1 as well).
const foreign = (url) => {
  let u;
  try {
    u = new URL(url);
  } catch {
    return `unparseable URL ${url}`;
  }
  if (u.protocol === 'data:' || url === 'about:blank') return null;
  if (u.protocol === 'blob:') return foreign(url.slice('blob:'.length));
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol)) return `scheme ${u.protocol} in ${url}`;
  return u.hostname === '127.0.0.1' ? null : `host ${u.hostname} in ${url}`;
};

const hosts = new Set();
const requests = []; // { url, type }, each distinct URL and resource type once
const seen = new Set();
const record = (kind) => (req) => {
  const url = typeof req === 'string' ? req : req.url();
  const type = typeof req === 'string' ? kind : req.resourceType();
  if (seen.has(`${type} ${url}`)) return;
  seen.add(`${type} ${url}`);
  requests.push({ url, type });
  try {
    hosts.add(new URL(url.startsWith('blob:') ? url.slice(5) : url).host || url.split(':')[0]);
  } catch {
    hosts.add(url);
  }
  const bad = foreign(url);
  if (bad) problems.push(`request left 127.0.0.1 (${type}): ${bad}`);
};

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
});
const context = await browser.newContext({ viewport: SMALL, locale: 'en-US', timezoneId: 'UTC' });
context.on('request', record('context'));
context.on('requestfailed', (r) => {
  if (foreign(r.url())) problems.push(`request left 127.0.0.1 (failed ${r.resourceType()}): ${r.url()}`);
});
const page = await context.newPage();
page.on('request', record('page'));
page.on('websocket', (ws) => record('websocket')(ws.url()));
page.on('worker', (w) => record('worker')(w.url()));
page.on('pageerror', (e) => problems.push(`JavaScript error in the page during step "${step}": ${e.message} (${(e.stack || '').split('\n').slice(1, 3).map((l) => l.trim()).join(' ')})`));
page.on('console', (m) => {
  const text = m.text();
  if (/Content Security Policy|Refused to (load|execute|apply|connect|frame)/i.test(text)) {
    problems.push(`CSP violation during step "${step}": ${text}`);
  }
});
const clipStatuses = [];
page.on('response', (r) => {
  if (/\/api\/v1\/events\/[^/]+\/clip\.mp4/.test(r.url())) clipStatuses.push(r.status());
});
page.setDefaultTimeout(15000);

let shotN = 0;
const shot = async (name, viewport = SMALL) => {
  if (viewport !== SMALL) await page.setViewportSize(viewport);
  const file = join(OUT, `${String(++shotN).padStart(2, '0')}-${name}${viewport === SMALL ? '' : `-${viewport.width}x${viewport.height}`}.png`);
  await page.screenshot({ path: file, fullPage: false });
  if (viewport !== SMALL) await page.setViewportSize(SMALL);
  summary.screenshots.push(file);
};
const tid = (id) => `[data-testid="${id}"]`;
const attr = (sel, name) => page.locator(sel).first().getAttribute(name);
const rowIds = () => page.$$eval(`${tid('incident-list')} ${tid('incident-row')}`, (rows) => rows.map((r) => r.dataset.eventId));
const text = async (sel) => ((await page.locator(sel).first().textContent({ timeout: 2000 }).catch(() => null)) ?? '').trim().slice(0, 300);
// waitForFunction with a message naming what was awaited and what the page showed.
const waitFor = async (what, fn, arg, secs, seen) => {
  try {
    return await page.waitForFunction(fn, arg, { timeout: secs * 1000, polling: 250 });
  } catch (e) {
    checkProblems();
    fail(`timed out after ${secs} s waiting for ${what}; seen: ${seen ? await seen() : 'n/a'}`);
  }
};
const api = (path, init) =>
  page.evaluate(
    async ([p, i]) => {
      const r = await fetch(p, i);
      let body = null;
      try {
        body = await r.json();
      } catch {}
      return { status: r.status, body };
    },
    [path, init ?? {}],
  );

let ackId = null;
let falseId = null;
try {
  // ---- login page ---------------------------------------------------------------------
  begin('login page');
  await page.goto(`${BASE}/`);
  await page.waitForSelector(`form${tid('login-form')}`, { state: 'visible' });
  if (!(await page.evaluate(() => location.hash)).startsWith('#/login')) {
    fail(`not logged in but the hash is ${await page.evaluate(() => location.hash)} (expected #/login)`);
  }
  await shot('login');

  begin('wrong password is refused with a message');
  await page.fill(`${tid('login-form')} input[name=username]`, USER);
  await page.fill(`${tid('login-form')} input[name=password]`, `${PASSWORD}-wrong`);
  await page.click(`${tid('login-form')} button[type=submit]`);
  await page.waitForSelector(tid('login-error'), { state: 'visible' });
  if (!(await text(tid('login-error')))) fail('login-error is visible but empty');
  await shot('login-error');

  begin('log in');
  await page.fill(`${tid('login-form')} input[name=password]`, PASSWORD);
  await page.click(`${tid('login-form')} button[type=submit]`);
  await waitFor('#/incidents after login', () => location.hash.startsWith('#/incidents'), null, 15, () =>
    page.evaluate(() => `hash ${location.hash}`),
  );
  await page.waitForSelector(tid('incident-list'), { state: 'visible' });
  const who = await text(tid('whoami'));
  if (!who.includes(USER)) fail(`whoami shows "${who}", expected the user name ${USER}`);
  for (const n of ['nav-incidents', 'nav-cameras', 'nav-stats', 'nav-playback', 'logout', 'lang-switch']) {
    if (!(await page.locator(tid(n)).count())) fail(`the shell has no [data-testid=${n}]`);
  }

  // ---- a new incident arrives over the live stream, without a reload ---------------------
  begin('live stream connects');
  await waitFor('live-status data-state="open"', (s) => document.querySelector(s)?.dataset.state === 'open', tid('live-status'), 20, async () =>
    `live-status data-state=${await attr(tid('live-status'), 'data-state')}`,
  );
  // What existed at load: the rows shown plus everything the API lists (the list may still
  // be rendering); a new incident is one that is in neither and started after this point.
  await page.waitForTimeout(1000);
  const loadedAt = Date.now();
  const listed = await api('/api/v1/events?limit=500');
  if (listed.status !== 200) fail(`GET /api/v1/events from the page: ${listed.status} ${JSON.stringify(listed.body)}`);
  const known = new Set([...(await rowIds()), ...listed.body.events.map((e) => e.id)]);
  await page.evaluate(() => {
    window.__gwNoReload = true;
  });
  await shot('incidents');
  summary.rows_at_load = (await rowIds()).length;

  begin('a new incident appears live');
  const fresh = await waitFor(
    'a new incident row to appear over the live stream',
    ([sel, ids]) => {
      const row = [...document.querySelectorAll(sel)].find((r) => !ids.includes(r.dataset.eventId));
      return row ? row.dataset.eventId : null;
    },
    [`${tid('incident-list')} ${tid('incident-row')}`, [...known]],
    LIVE_SECS,
    async () => `${(await rowIds()).length} rows, live-status ${await attr(tid('live-status'), 'data-state')}`,
  );
  const newId = await fresh.jsonValue();
  summary.live_incident = { id: newId, after_s: +((Date.now() - loadedAt) / 1000).toFixed(1) };
  if (!(await page.evaluate(() => window.__gwNoReload === true))) fail('the page reloaded while waiting for the live incident');
  const liveState = await attr(tid('live-status'), 'data-state');
  if (liveState !== 'open') fail(`live-status data-state=${liveState} when the new incident arrived (expected open)`);
  const ev = await api(`/api/v1/events/${newId}`);
  if (ev.status !== 200) fail(`GET /api/v1/events/${newId}: ${ev.status}`);
  if (Date.parse(ev.body.started_at) < loadedAt - 15000) {
    fail(`row ${newId} is not a new incident: it started at ${ev.body.started_at}, the page loaded at ${new Date(loadedAt).toISOString()}`);
  }
  const row = page.locator(`${tid('incident-row')}[data-event-id="${newId}"]`);
  for (const [a, want] of [['data-camera', ev.body.camera_id], ['data-kind', ev.body.kind]]) {
    const got = await row.getAttribute(a);
    if (got !== want) fail(`new row ${newId}: ${a}="${got}", the API says "${want}"`);
  }
  if (!['active', 'ended'].includes(await row.getAttribute('data-state'))) fail(`new row data-state="${await row.getAttribute('data-state')}"`);
  if ((await row.getAttribute('data-review')) !== 'new') fail(`new row data-review="${await row.getAttribute('data-review')}" (expected new)`);
  await waitFor('the new row\'s thumbnail to load', (s) => {
    const img = document.querySelector(s);
    return img && img.complete && img.naturalWidth > 0;
  }, `${tid('incident-row')}[data-event-id="${newId}"] img${tid('thumb')}`, 20, async () => 'thumb not loaded');
  await shot('incidents', LARGE);

  // ---- open it: snapshot, clip plays and seeks -------------------------------------------
  begin('open the new incident');
  await row.click();
  await page.waitForSelector(`${tid('incident-detail')}[data-event-id="${newId}"]`, { state: 'visible' });
  if (!(await page.evaluate(() => location.hash)).startsWith(`#/incidents/${newId}`)) {
    fail(`opened incident but the hash is ${await page.evaluate(() => location.hash)}`);
  }
  await waitFor('the detail snapshot to load', (s) => {
    const img = document.querySelector(s);
    return img && img.complete && img.naturalWidth > 0;
  }, `img${tid('snapshot')}`, 20, async () => 'snapshot not loaded');
  if (!(await page.locator(tid('objects')).count())) fail('the detail has no objects table [data-testid=objects]');
  if (!(await page.locator(tid('rule')).count())) fail('the detail has no rule info [data-testid=rule]');

  begin('the clip becomes ready (after the post-roll; the console retries)');
  const clipStatusSeen = new Set();
  const clipDeadline = Date.now() + CLIP_SECS * 1000;
  for (;;) {
    const st = await page.evaluate((s) => {
      const v = document.querySelector(s.v);
      const status = document.querySelector(s.st);
      return {
        status: status && status.offsetParent !== null ? status.textContent.trim() : '',
        ready: !!v && v.readyState >= 2 && Number.isFinite(v.duration) && v.duration > 0 && v.videoWidth > 0,
        src: v ? v.currentSrc || v.getAttribute('src') || '' : null,
        error: v && v.error ? `${v.error.code} ${v.error.message}` : null,
      };
    }, { v: `video${tid('clip')}`, st: tid('clip-status') });
    if (st.status) clipStatusSeen.add(st.status);
    if (st.ready) break;
    if (Date.now() > clipDeadline) {
      fail(`clip not playable after ${CLIP_SECS} s: video src "${st.src}", media error ${st.error}, clip-status "${st.status}", clip.mp4 responses ${JSON.stringify(clipStatuses)}`);
    }
    checkProblems();
    await page.waitForTimeout(500);
  }
  summary.clip_status_seen = [...clipStatusSeen];
  if (clipStatuses.includes(503) && clipStatusSeen.size === 0) {
    fail(`clip.mp4 answered 503 (not ready) but [data-testid=clip-status] never showed a message (responses ${JSON.stringify(clipStatuses)})`);
  }
  summary.clip_responses = clipStatuses.slice(0, 20);
  const clipSrc = await page.$eval(`video${tid('clip')}`, (v) => v.currentSrc);
  if (!clipSrc.includes(`/api/v1/events/${newId}/clip.mp4`)) fail(`clip video src is ${clipSrc}`);

  begin('the clip plays and seeks');
  const dur = await page.$eval(`video${tid('clip')}`, (v) => v.duration);
  const seekTo = Math.min(1.0, dur / 4);
  const played = await page.$eval(
    `video${tid('clip')}`,
    async (v, seekTo) => {
      v.muted = true;
      await v.play();
      const seeked = new Promise((res) => v.addEventListener('seeked', res, { once: true }));
      v.currentTime = seekTo;
      await seeked;
      const after = v.currentTime;
      if (v.paused) await v.play();
      const t1 = Date.now();
      while (Date.now() - t1 < 8000 && !(v.currentTime > seekTo + 0.5)) await new Promise((r) => setTimeout(r, 100));
      return { after, now: v.currentTime, paused: v.paused, ended: v.ended, w: v.videoWidth, h: v.videoHeight };
    },
    seekTo,
  );
  summary.clip = { duration_s: +dur.toFixed(2), seek_to: seekTo, ...played };
  if (Math.abs(played.after - seekTo) > 0.6) fail(`seek to ${seekTo} s landed at ${played.after} s`);
  if (!(played.now > seekTo + 0.5)) fail(`after seeking to ${seekTo} s the clip did not advance: currentTime ${played.now}, paused ${played.paused}, ended ${played.ended}`);
  await shot('incident-clip');
  await shot('incident-clip', LARGE);

  // ---- review: acknowledge this one, mark another a false alarm (keyboard) --------------
  begin('acknowledge the incident with a note (n focuses the note)');
  const ackBtn = page.locator(tid('review-acknowledge'));
  if (await ackBtn.isDisabled()) fail('review-acknowledge is disabled on a new incident');
  await page.evaluate(() => document.activeElement?.blur());
  await page.keyboard.press('n');
  const noteFocused = await page.evaluate((s) => document.activeElement === document.querySelector(s), `textarea${tid('review-note')}`);
  if (!noteFocused) fail(`pressing n did not focus textarea[data-testid=review-note] (focus is on ${await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120))})`);
  await page.keyboard.type(NOTE);
  await ackBtn.click();
  await waitFor('review-state data-review="acknowledged"', (s) => document.querySelector(s)?.dataset.review === 'acknowledged', tid('review-state'), 10, async () =>
    `review-state data-review=${await attr(tid('review-state'), 'data-review')}`,
  );
  ackId = newId;
  if (!(await ackBtn.isDisabled())) fail('review-acknowledge is still enabled on an acknowledged incident');
  const by = await text(tid('review-by'));
  if (!by.includes(USER)) fail(`review-by shows "${by}", expected ${USER}`);

  begin('open another incident and mark it a false alarm with the keyboard (f)');
  await page.keyboard.press('Escape');
  await waitFor('the list after Escape', () => location.hash === '#/incidents' || location.hash === '#/incidents/', null, 5, () =>
    page.evaluate(() => `hash ${location.hash}`),
  );
  const other = await page.$$eval(`${tid('incident-row')}[data-review="new"]`, (rows, ack) => rows.map((r) => r.dataset.eventId).find((id) => id !== ack), ackId);
  if (!other) fail(`no other incident with data-review="new" in the list (${(await rowIds()).length} rows)`);
  await page.locator(`${tid('incident-row')}[data-event-id="${other}"]`).click();
  await page.waitForSelector(`${tid('incident-detail')}[data-event-id="${other}"]`, { state: 'visible' });
  await page.evaluate(() => document.activeElement?.blur()); // no text field has the focus
  await page.keyboard.press('f');
  await waitFor('review-state data-review="false_alarm" after pressing f', (s) => document.querySelector(s)?.dataset.review === 'false_alarm', tid('review-state'), 10, async () =>
    `review-state data-review=${await attr(tid('review-state'), 'data-review')}`,
  );
  falseId = other;
  await shot('incident-false-alarm');

  // ---- the review states persist across a reload -----------------------------------------
  begin('reload: review states persisted');
  await page.goto(`${BASE}/#/incidents`);
  await page.reload();
  await page.waitForSelector(tid('incident-list'), { state: 'visible' });
  await page.waitForSelector(`${tid('incident-row')}`, { state: 'attached' });
  for (const [id, want] of [[ackId, 'acknowledged'], [falseId, 'false_alarm']]) {
    const r = page.locator(`${tid('incident-row')}[data-event-id="${id}"]`);
    if (await r.count()) {
      const got = await r.getAttribute('data-review');
      if (got !== want) fail(`after reload row ${id} has data-review="${got}", expected ${want}`);
    }
  }
  await shot('incidents-after-reload');
  for (const [id, want] of [[ackId, 'acknowledged'], [falseId, 'false_alarm']]) {
    await page.goto(`${BASE}/#/incidents/${id}`);
    await page.reload();
    await page.waitForSelector(`${tid('incident-detail')}[data-event-id="${id}"]`, { state: 'visible' });
    await waitFor(`review-state of ${id} to read ${want} after reload`, ([s, w]) => document.querySelector(s)?.dataset.review === w, [tid('review-state'), want], 10, async () =>
      `review-state data-review=${await attr(tid('review-state'), 'data-review')}`,
    );
  }
  summary.reviewed = { acknowledged: ackId, false_alarm: falseId, note: NOTE };

  // ---- cameras ----------------------------------------------------------------------------
  begin('cameras page: tile online, live image, zones, lines with A/B sides and the calibration drawn');
  await page.click(tid('nav-cameras'));
  await waitFor('#/cameras', () => location.hash.startsWith('#/cameras'), null, 5, () => page.evaluate(() => location.hash));
  await page.waitForSelector(tid('camera-tile'), { state: 'visible' });
  await waitFor('a camera tile with data-state="online"', (s) => [...document.querySelectorAll(s)].some((t) => t.dataset.state === 'online'), tid('camera-tile'), 20, async () =>
    JSON.stringify(await page.$$eval(tid('camera-tile'), (ts) => ts.map((t) => [t.dataset.cameraId, t.dataset.state]))),
  );
  await waitFor('the live image of the online tile', (s) => {
    const img = document.querySelector(s);
    return img && img.complete && img.naturalWidth > 0;
  }, `${tid('camera-tile')}[data-state="online"] img${tid('live')}`, 20, async () => 'live image not loaded');
  const overlay = await page.$eval(`${tid('camera-tile')}[data-state="online"] svg${tid('overlay')}`, (svg) => ({
    zones: svg.querySelectorAll('polygon.zone').length,
    lines: svg.querySelectorAll('polyline.line').length,
  })).catch(() => null);
  if (!overlay) fail('the online tile has no svg[data-testid=overlay]');
  if (overlay.zones < 1 || overlay.lines < 1) fail(`overlay has ${overlay.zones} polygon.zone and ${overlay.lines} polyline.line (expected ≥ 1 each)`);
  // The calibration quadrilateral with its 4 side lengths (the test config: 16 m × 20 m).
  const calib = await page.$$eval(`${tid('camera-tile')}[data-state="online"] ${tid('calibration-length')}`, (ls) => ls.map((l) => l.getAttribute('data-metres')));
  overlay.calibration = await page.locator(`${tid('camera-tile')}[data-state="online"] svg${tid('overlay')} polygon.calibration`).count();
  if (overlay.calibration !== 1 || JSON.stringify(calib) !== JSON.stringify(['16.00', '20.00', '16.00', '20.00'])) fail(`calibration drawing: ${overlay.calibration} polygon.calibration, side lengths ${JSON.stringify(calib)} (expected 1 and 16/20/16/20 m)`);
  // Line `middle` is drawn top → bottom: side A on the walker's left is the image's right half.
  const sides = await page.$$eval(`${tid('camera-tile')}[data-state="online"] .geo-label.side[data-line="middle"]`, (ls) => Object.fromEntries(ls.map((l) => [l.dataset.side, [parseFloat(l.style.left), l.textContent]])));
  if (!sides.A || !sides.B || !(sides.A[0] > 50 && sides.B[0] < 50) || sides.A[1] !== 'A' || sides.B[1] !== 'B') fail(`the A/B marks of line middle are wrong: ${JSON.stringify(sides)} (expected A right of x = 50 %, B left of it)`);
  overlay.sides = sides;
  summary.overlay = overlay;
  // The live image refreshes (a second frame is fetched).
  const liveReqs = () => requests.filter((r) => r.url.includes('/latest.jpg')).length;
  const before = liveReqs();
  await page.waitForTimeout(2500);
  if (liveReqs() <= before) fail(`the live image did not refresh in 2.5 s (${before} latest.jpg requests so far)`);
  await shot('cameras');

  // ---- statistics -------------------------------------------------------------------------
  begin('stats page: counts chart with non-zero bars');
  await page.click(tid('nav-stats'));
  await waitFor('#/stats', () => location.hash.startsWith('#/stats'), null, 5, () => page.evaluate(() => location.hash));
  await page.waitForSelector(`svg${tid('counts-chart')}, ${tid('stats-empty')}`, { state: 'attached' });
  const barsOk = () =>
    page.$$eval(`svg${tid('counts-chart')} rect.bar`, (bars) => bars.map((b) => Number(b.getAttribute('data-value'))).filter((v) => v > 0).length);
  const statsDeadline = Date.now() + 45000;
  while ((await barsOk()) === 0) {
    if (Date.now() > statsDeadline) {
      const bars = await page.$$eval(`svg${tid('counts-chart')} rect.bar`, (bs) => bs.map((b) => b.getAttribute('data-value')));
      fail(`no rect.bar with data-value > 0 in the counts chart after 45 s (bars: ${JSON.stringify(bars.slice(0, 20))}, stats-empty "${await text(tid('stats-empty'))}")`);
    }
    checkProblems();
    // Ask again (the chart shows what was counted when it was drawn): re-pick the bucket.
    await page.waitForTimeout(3000);
    const b = page.locator(`select${tid('stats-bucket')}`);
    if (await b.count()) {
      const v = await b.inputValue();
      await b.selectOption(v === 'hour' ? 'day' : 'hour');
      await b.selectOption(v);
    }
  }
  // The line names its directions (`directions` in the config): the totals show the names.
  const dirCells = await page.$$eval(`${tid('counts-totals')} td[data-direction]`, (tds) => tds.map((td) => [td.getAttribute('data-direction'), td.textContent]));
  const named = { a_to_b: 'westbound', b_to_a: 'eastbound' };
  if (!dirCells.length || !dirCells.every(([d, txt]) => txt.includes(named[d]))) fail(`the counts totals do not name the directions (${JSON.stringify(named)}): ${JSON.stringify(dirCells)}`);
  // The camera is calibrated: the crossings carry ground speeds, shown as a mean per line.
  const speedCells = () => page.$$eval(`${tid('counts-totals')} td[data-stat="mean_speed_kmh"]`, (tds) => tds.map((td) => td.textContent));
  const speedDeadline = Date.now() + 30000;
  while (!(await speedCells()).some((v) => Number(v) > 0)) {
    if (Date.now() > speedDeadline) fail(`no mean speed in the counts totals after 30 s: ${JSON.stringify(await speedCells())}`);
    await page.waitForTimeout(3000);
    await page.click(tid('stats-refresh'));
  }
  if (!(await page.locator(`svg${tid('speed-chart')} circle.point`).count())) fail('the stats page has no points in svg[data-testid=speed-chart]');
  summary.stats_speed = await speedCells();
  summary.stats = {
    directions: dirCells.map(([, txt]) => txt),
    bars_nonzero: await barsOk(),
    bars: await page.$$eval(`svg${tid('counts-chart')} rect.bar`, (bs) => bs.length),
    occupancy_chart: await page.locator(`svg${tid('occupancy-chart')}`).count(),
  };
  for (const n of ['stats-camera', 'stats-period', 'stats-bucket']) {
    if (!(await page.locator(`select${tid(n)}`).count())) fail(`the stats page has no select[data-testid=${n}]`);
  }
  await shot('stats');

  // ---- playback ---------------------------------------------------------------------------
  begin('playback page: recorded footage plays');
  await page.click(tid('nav-playback'));
  await waitFor('#/playback', () => location.hash.startsWith('#/playback'), null, 5, () => page.evaluate(() => location.hash));
  await page.waitForSelector(`select${tid('playback-camera')}`, { state: 'visible' });
  await page.waitForSelector(tid('playback-timeline'), { state: 'attached' });
  // 30 s ago in the browser's local time (the context runs in UTC), as datetime-local wants.
  // (Chromium drops ':00' seconds from the value, which page.fill would call malformed.)
  const when = new Date(Date.now() - 30000).toISOString().slice(0, 19).replace(/:00$/, '');
  await page.fill(`input${tid('playback-time')}`, when);
  await page.click(tid('playback-go'));
  await waitFor('the playback video to load recorded footage', (s) => {
    const v = document.querySelector(s);
    return v && v.readyState >= 2 && v.videoWidth > 0;
  }, `video${tid('playback-video')}`, 30, async () =>
    JSON.stringify(await page.$eval(`video${tid('playback-video')}`, (v) => ({ src: v.currentSrc, rs: v.readyState, err: v.error && v.error.code }))),
  );
  summary.playback_src = await page.$eval(`video${tid('playback-video')}`, (v) => v.currentSrc);
  await shot('playback');

  // ---- language ---------------------------------------------------------------------------
  begin('language switch: Chinese and back');
  const cjk = /[\u4e00-\u9fff]/;
  await page.selectOption(`select${tid('lang-switch')}`, 'zh');
  await waitFor('<html lang="zh…"> after choosing 中文', () => document.documentElement.lang.startsWith('zh'), null, 5, () =>
    page.evaluate(() => `lang=${document.documentElement.lang}`),
  );
  const navZh = await text(tid('nav-incidents'));
  if (!cjk.test(navZh)) fail(`after choosing zh the incidents link reads "${navZh}" (no Chinese characters)`);
  await shot('playback-zh');
  await page.selectOption(`select${tid('lang-switch')}`, 'en');
  await waitFor('<html lang="en"> after choosing English', () => document.documentElement.lang === 'en', null, 5, () =>
    page.evaluate(() => `lang=${document.documentElement.lang}`),
  );
  const navEn = await text(tid('nav-incidents'));
  if (cjk.test(navEn)) fail(`after choosing en the incidents link still reads "${navEn}"`);
  summary.lang = { zh: navZh, en: navEn };

  begin('a Chinese browser gets the Chinese console');
  {
    const zhContext = await browser.newContext({ viewport: SMALL, locale: 'zh-CN', timezoneId: 'UTC' });
    zhContext.on('request', record('context'));
    const zhPage = await zhContext.newPage();
    await zhPage.goto(`${BASE}/`);
    await zhPage.waitForSelector(`form${tid('login-form')}`, { state: 'visible' });
    const lang = await zhPage.evaluate(() => document.documentElement.lang);
    const form = await zhPage.locator(tid('login-form')).innerText();
    if (!lang.startsWith('zh') || !cjk.test(form)) fail(`a zh-CN browser got lang=${lang}, login form "${form}"`);
    const file = join(OUT, `${String(++shotN).padStart(2, '0')}-login-zh.png`);
    await zhPage.screenshot({ path: file });
    summary.screenshots.push(file);
    await zhContext.close();
  }

  // ---- log out ----------------------------------------------------------------------------
  begin('log out');
  await page.click(tid('logout'));
  await page.waitForSelector(`form${tid('login-form')}`, { state: 'visible' });
  await waitFor('#/login after logout', () => location.hash.startsWith('#/login'), null, 5, () => page.evaluate(() => location.hash));
  const me = await api('/api/v1/auth/me');
  if (me.status !== 401) fail(`GET /api/v1/auth/me after logout answered ${me.status}, expected 401`);
  await shot('logged-out');

  checkProblems();
  // The listeners saw the kinds of requests the no-foreign-host check is about.
  for (const [type, part] of [['eventsource', '/api/v1/events/stream'], ['media', '/clip.mp4'], ['image', '/snapshot.jpg'], [null, '/latest.jpg'], ['script', '/ui/']]) {
    if (!requests.some((r) => (type === null || r.type === type) && r.url.includes(part))) {
      fail(`no ${type} request for ${part} was recorded (types seen: ${[...new Set(requests.map((r) => r.type))].join(', ')})`);
    }
  }
  summary.ok = true;
} catch (e) {
  summary.ok = false;
  summary.failed_step = step;
  summary.error = e instanceof StepError ? e.message : `${e.name}: ${e.message.split('\n').slice(0, 6).join(' | ')}`;
  summary.error = summary.error.replace(/\u001b\[[0-9;]*m/g, "");
  if (problems.length) summary.problems = problems;
  try {
    await page.screenshot({ path: join(OUT, 'failure.png') });
    summary.screenshots.push(join(OUT, 'failure.png'));
    summary.failure_hash = await page.evaluate(() => location.hash);
  } catch {}
} finally {
  summary.requests = requests.length;
  summary.hosts = [...hosts];
  summary.request_types = requests.reduce((m, r) => ((m[r.type] = (m[r.type] || 0) + 1), m), {});
  summary.secs = +((Date.now() - t0) / 1000).toFixed(1);
  await browser.close().catch(() => {});
}
console.log(JSON.stringify(summary));
if (!summary.ok) {
  console.error(`console.mjs: FAILED at step "${summary.failed_step}": ${summary.error}`);
  process.exit(1);
}
