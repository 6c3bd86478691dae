// The console's entry point: session, shell (navigation, language, live status), hash
// routing and the global keyboard shortcuts. Pages are modules with
// `mount(container, ctx, arg)`, optional `update(arg)`, `unmount()` and `onKey(event)`.

import { api, ApiError, setUnauthorizedHandler } from './api.js';
import { t, getLang, setLang, LANGS } from './i18n.js';
import { h, fill, clear, select, typingInField } from './dom.js';
import { Live } from './live.js';
import * as incidents from './incidents.js';
import * as cameras from './cameras.js';
import * as stats from './stats.js';
import * as playback from './playback.js';
import { renderLogin } from './login.js';

const PAGES = { incidents, cameras, stats, playback };
const DEFAULT_ROUTE = '#/incidents';

const root = document.getElementById('app');
const live = new Live();

/** Shared by the pages. */
const ctx = {
  me: null,
  live,
  cameras: [],
  can(perm) {
    return !!(this.me && Array.isArray(this.me.permissions) && this.me.permissions.includes(perm));
  },
  cameraName(id) {
    const c = this.cameras.find((c) => c.id === id);
    return c && c.name ? c.name : id;
  },
  async loadCameras() {
    const r = await api('/api/v1/cameras');
    this.cameras = (r && r.cameras) || [];
    return this.cameras;
  },
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  toast,
};

let current = { name: null, module: null, arg: null };
let shell = null; // {main, nav links, ...} while logged in
let afterLogin = null; // the hash a 401 interrupted

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || '', arg: parts[1] || null };
}

// ---------------------------------------------------------------------------------------
// Toasts: short messages that go away by themselves (errors stay until clicked).

let toastBox = null;
function toast(message, kind = 'info') {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = h('div', { class: 'toasts', 'data-testid': 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const el = h('div', { class: ['toast', `toast-${kind}`], 'data-testid': 'toast' }, message);
  const remove = () => el.remove();
  el.addEventListener('click', remove);
  toastBox.append(el);
  setTimeout(remove, kind === 'error' ? 12000 : 4000);
}

// ---------------------------------------------------------------------------------------
// Shortcut help ('?')

let helpDialog = null;
function toggleHelp(force) {
  if (!helpDialog || !helpDialog.isConnected) {
    const rows = [
      ['j / ↓', 'help.next'],
      ['k / ↑', 'help.prev'],
      ['Enter / o', 'help.open'],
      ['a', 'help.ack'],
      ['r', 'help.resolve'],
      ['f', 'help.false'],
      ['n', 'help.note'],
      ['Esc', 'help.back'],
      ['g i / g c / g s / g p', 'help.goto'],
      ['?', 'help.help'],
    ];
    helpDialog = h(
      'div',
      { class: 'help-backdrop', 'data-testid': 'shortcut-help', role: 'dialog', 'aria-modal': 'true', 'aria-label': t('help.title') },
      h(
        'div',
        { class: 'help-card' },
        h('h2', null, t('help.title')),
        h('table', { class: 'help-table' }, h('tbody', null, rows.map(([k, key]) => h('tr', null, h('td', null, h('kbd', null, k)), h('td', null, t(key)))))),
        h('p', { class: 'muted' }, t('help.close')),
        h('button', { type: 'button', class: 'btn', on: { click: () => toggleHelp(false) } }, t('common.close')),
      ),
    );
    helpDialog.addEventListener('click', (e) => {
      if (e.target === helpDialog) toggleHelp(false);
    });
    helpDialog.hidden = true;
    document.body.append(helpDialog);
  }
  const show = force === undefined ? helpDialog.hidden : force;
  helpDialog.hidden = !show;
}

// ---------------------------------------------------------------------------------------
// Shell

function buildShell() {
  clear(root);
  const nav = (name, key) => h('a', { href: `#/${name}`, class: 'nav-link', 'data-testid': `nav-${name}`, 'data-page': name }, t(key));
  const liveStatus = h(
    'span',
    { class: 'live-status', 'data-testid': 'live-status', 'data-state': live.state, title: t('live.title') },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'live-label' }),
  );
  const langSel = select(
    { 'data-testid': 'lang-switch', 'aria-label': t('lang.label'), class: 'lang-switch' },
    LANGS.map((l) => [l, t(`lang.${l}`)]),
    getLang(),
  );
  langSel.addEventListener('change', () => setLang(langSel.value));
  const logout = h('button', { type: 'button', class: 'btn btn-quiet', 'data-testid': 'logout' }, t('nav.logout'));
  logout.addEventListener('click', doLogout);
  const me = ctx.me || {};
  const main = h('main', { class: 'page', id: 'page' });
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: DEFAULT_ROUTE }, h('img', { src: '/ui/icon.svg', alt: '', width: 22, height: 22 }), 'gridwatch'),
    h(
      'nav',
      { class: 'nav', 'aria-label': t('nav.label') },
      nav('incidents', 'nav.incidents'),
      nav('cameras', 'nav.cameras'),
      nav('stats', 'nav.stats'),
      nav('playback', 'nav.playback'),
    ),
    h('div', { class: 'spacer' }),
    liveStatus,
    h('span', { class: 'whoami', 'data-testid': 'whoami', title: (me.permissions || []).join(', ') }, me.name || '', h('span', { class: 'role' }, t(`role.${me.role}`))),
    langSel,
    h('button', { type: 'button', class: 'btn btn-quiet help-btn', title: t('help.title'), 'aria-label': t('help.title'), on: { click: () => toggleHelp() } }, '?'),
    logout,
  );
  root.append(header, main);
  const unsub = live.onState((state) => {
    liveStatus.setAttribute('data-state', state);
    liveStatus.querySelector('.live-label').textContent = t(`live.${state}`);
  });
  shell = { main, header, unsub };
}

function teardownShell() {
  if (current.module && current.module.unmount) current.module.unmount();
  current = { name: null, module: null, arg: null };
  if (shell) shell.unsub();
  shell = null;
}

function markNav(name) {
  if (!shell) return;
  for (const a of shell.header.querySelectorAll('.nav-link')) {
    const on = a.getAttribute('data-page') === name;
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------------------------------
// Routing

function showLogin(message) {
  teardownShell();
  live.stop();
  document.title = `${t('login.title')} · gridwatch`;
  renderLogin(root, { message, onDone: loggedIn });
}

async function loggedIn(me) {
  ctx.me = me;
  try {
    await ctx.loadCameras();
  } catch (e) {
    toast(e instanceof ApiError ? e.display : String(e), 'error');
  }
  live.start();
  const target = afterLogin && !afterLogin.startsWith('#/login') ? afterLogin : DEFAULT_ROUTE;
  afterLogin = null;
  if (location.hash === target) route();
  else location.hash = target;
}

function route() {
  const { name, arg } = parseHash();
  if (!ctx.me) {
    if (name !== 'login') afterLogin = location.hash || null;
    if (name !== 'login') {
      location.replace('#/login');
      return;
    }
    showLogin();
    return;
  }
  if (name === 'login' || !PAGES[name]) {
    location.replace(DEFAULT_ROUTE);
    return;
  }
  if (!shell) buildShell();
  markNav(name);
  document.title = `${t(`nav.${name}`)} · gridwatch`;
  toggleHelp(false);
  if (current.name === name && current.module.update) {
    current.arg = arg;
    current.module.update(arg);
    return;
  }
  if (current.module && current.module.unmount) current.module.unmount();
  clear(shell.main);
  shell.main.className = `page page-${name}`;
  current = { name, module: PAGES[name], arg };
  current.module.mount(shell.main, ctx, arg);
}

async function doLogout() {
  try {
    await api('/api/v1/auth/logout', { method: 'POST', quiet401: true });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) toast(e instanceof ApiError ? e.display : String(e), 'error');
  }
  ctx.me = null;
  afterLogin = null;
  live.stop();
  location.hash = '#/login';
}

setUnauthorizedHandler(() => {
  if (!ctx.me) return;
  ctx.me = null;
  afterLogin = location.hash;
  live.stop();
  showLogin(t('login.expired'));
  if (!location.hash.startsWith('#/login')) history.replaceState(null, '', '#/login');
});

// ---------------------------------------------------------------------------------------
// Keyboard

let pendingG = false;
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const help = helpDialog && !helpDialog.hidden;
  if (help && (e.key === 'Escape' || e.key === '?')) {
    toggleHelp(false);
    e.preventDefault();
    return;
  }
  if (!ctx.me || !shell) return;
  if (!typingInField(e)) {
    if (e.key === '?') {
      toggleHelp(true);
      e.preventDefault();
      return;
    }
    if (pendingG) {
      pendingG = false;
      const to = { i: 'incidents', c: 'cameras', s: 'stats', p: 'playback' }[e.key];
      if (to) {
        location.hash = `#/${to}`;
        e.preventDefault();
        return;
      }
    } else if (e.key === 'g') {
      pendingG = true;
      setTimeout(() => (pendingG = false), 1500);
      return;
    }
  }
  if (help) return;
  if (current.module && current.module.onKey) current.module.onKey(e);
});

// ---------------------------------------------------------------------------------------
// Language: re-render everything in place (pages keep their state in module variables).

function applyLang() {
  document.documentElement.lang = getLang();
  if (helpDialog) {
    helpDialog.remove();
    helpDialog = null;
  }
  if (ctx.me && shell) {
    teardownShell();
    route();
  } else if (!ctx.me) {
    showLogin();
  }
}

// ---------------------------------------------------------------------------------------
// Start

async function boot() {
  document.documentElement.lang = getLang();
  window.addEventListener('hashchange', route);
  document.addEventListener('gw:lang', applyLang);
  let me = null;
  for (;;) {
    try {
      me = await api('/api/v1/auth/me', { quiet401: true });
      break;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) break;
      // The box is unreachable or failing: say so and retry.
      fill(root, 
        h('div', { class: 'fatal', 'data-testid': 'boot-error' }, h('h1', null, 'gridwatch'), h('p', null, e instanceof ApiError ? e.display : String(e)), h('p', { class: 'muted' }, t('boot.retrying'))),
      );
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
  if (me) {
    afterLogin = location.hash || null;
    await loggedIn(me);
  } else {
    route();
  }
}

boot();
