// The login page (`#/login`).

import { api, ApiError } from './api.js';
import { t, getLang, setLang, LANGS } from './i18n.js';
import { h, clear, select } from './dom.js';

/** Renders the login form into `root`; `onDone(me)` runs after a successful login. */
export function renderLogin(root, { message, onDone }) {
  clear(root);
  const error = h('p', { class: 'login-error', 'data-testid': 'login-error', role: 'alert' });
  const showError = (msg) => {
    error.textContent = msg || '';
    error.hidden = !msg;
  };
  showError(null);
  const user = h('input', { name: 'username', type: 'text', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, t('login.submit'));
  const langSel = select({ 'data-testid': 'lang-switch', class: 'lang-switch', 'aria-label': t('lang.label') }, LANGS.map((l) => [l, t(`lang.${l}`)]), getLang());
  langSel.addEventListener('change', () => setLang(langSel.value));
  const form = h(
    'form',
    { class: 'login-card', 'data-testid': 'login-form', novalidate: true },
    h('div', { class: 'login-head' }, h('img', { src: '/ui/icon.svg', alt: '', width: 36, height: 36 }), h('div', null, h('h1', null, 'gridwatch'), h('p', { class: 'muted' }, t('login.subtitle')))),
    message ? h('p', { class: 'login-note', 'data-testid': 'login-note' }, message) : null,
    h('label', null, h('span', null, t('login.username')), user),
    h('label', null, h('span', null, t('login.password')), pass),
    error,
    submit,
    h('div', { class: 'login-foot' }, langSel),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!user.value.trim() || !pass.value) {
      showError(t('login.missing'));
      (user.value.trim() ? pass : user).focus();
      return;
    }
    submit.disabled = true;
    showError(null);
    try {
      await api('/api/v1/auth/login', { method: 'POST', body: { username: user.value.trim(), password: pass.value }, quiet401: true });
      const me = await api('/api/v1/auth/me', { quiet401: true });
      pass.value = '';
      onDone(me);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) showError(t('login.wrong'));
      else if (err instanceof ApiError && err.status === 429) {
        const wait = err.retryAfter ? t('login.retry_in', { secs: err.retryAfter }) : '';
        showError(`${t('login.locked')} ${wait} (${err.message})`);
      } else showError(err instanceof ApiError ? err.display : String(err));
      pass.select();
    } finally {
      submit.disabled = false;
    }
  });
  root.append(h('div', { class: 'login-page' }, form));
  user.focus();
}
