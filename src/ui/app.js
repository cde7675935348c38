// The dashboard's shell: sign-in, the hash router (#/releases, #/release/<id>, #/flags,
// #/audit), the two live streams (flag changes: /api/v1/stream; guard history points:
// /api/v1/history/stream), the notices and the confirmed controls. Data is re-read when a
// stream says something changed — never on a timer.
import { call, get, follow, token, onUnauthorized } from './api.js';
import { appendPoint, parsePercentage, pct, stateWords } from './logic.js';
import * as views from './views.js';
import { stats } from './chart.js';

const $ = (id) => document.getElementById(id);
const ctx = {
  me: null, admin: false, releases: [], flags: [], release: null, history: null, audit: [],
  auditFilter: {}, flagSearch: '', actions: {},
};
let streams = [];
let current = null; // the rendered view element
let route = { view: 'releases' };

// ——— notices ———

function notice(text, kind = 'alert', keep = false) {
  const close = views.h('button', { type: 'button', class: 'quiet', onclick: () => el.remove() }, 'Dismiss');
  const el = views.h('div', { class: `notice ${kind === 'info' ? 'info' : ''}`, role: kind === 'info' ? 'status' : 'alert' }, views.h('p', {}, text), close);
  $('notices').prepend(el);
  while ($('notices').children.length > 3) $('notices').lastElementChild.remove();
  if (!keep) setTimeout(() => el.remove(), kind === 'info' ? 6000 : 20000);
  return el;
}

// ——— confirmation dialog ———

/**
 * Asks before acting: `title`, `text` (what will happen), optional `field` ({label, value,
 * inputmode}), then runs `act(value, reason)`; a failure shows the server's message in the
 * dialog and keeps it open.
 */
function confirmThen({ title, text, field, danger, act }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-error').textContent = '';
  const fields = $('confirm-fields');
  fields.replaceChildren();
  let input = null;
  if (field) {
    input = views.h('input', { id: 'confirm-value', value: field.value ?? '', inputmode: field.inputmode ?? 'text', autocomplete: 'off' });
    fields.append(views.h('label', { for: 'confirm-value' }, field.label), input);
  }
  const reason = views.h('input', { id: 'confirm-reason', autocomplete: 'off', placeholder: 'optional, recorded in the audit log' });
  fields.append(views.h('label', { for: 'confirm-reason' }, 'Reason'), reason);
  const ok = $('confirm-ok');
  ok.className = danger ? 'danger' : '';
  ok.textContent = title;
  const form = $('confirm-form');
  const cancel = $('confirm-cancel');
  const done = () => {
    form.onsubmit = null;
    cancel.onclick = null;
    dialog.close();
  };
  cancel.onclick = done;
  form.onsubmit = async (e) => {
    e.preventDefault();
    ok.disabled = true;
    try {
      await act(input ? input.value : undefined, reason.value.trim() || undefined);
      done();
    } catch (err) {
      $('confirm-error').textContent = err.message;
    } finally {
      ok.disabled = false;
    }
  };
  dialog.showModal();
  (input ?? ok).focus();
}

ctx.actions.release = (r, command) => {
  const words = {
    start: `Start release ${r.name}: its first module begins ramping at its first stage.`,
    pause: `Pause release ${r.name}: every ramping module stops where it is; nothing is rolled back.`,
    resume: `Resume release ${r.name}: paused modules ramp again from their current stage.`,
    rollback: `Roll back release ${r.name}: every live module's flag goes to 0 % at once (the old variant for everyone); it never re-ramps by itself.`,
  }[command];
  confirmThen({
    title: { start: 'Start', pause: 'Pause', resume: 'Resume', rollback: 'Roll back' }[command],
    text: words,
    danger: command === 'rollback',
    act: async (_, reason) => {
      const status = await call('POST', `/api/v1/releases/${encodeURIComponent(r.id)}/${command}`, reason ? { reason } : {});
      notice(`Release ${status.name} is now ${stateWords(status.state)}.`, 'info');
      refresh('releases');
    },
  });
};

ctx.actions.rollout = (f) => {
  confirmThen({
    title: 'Set percentage',
    text: `Set ${f.key}'s rollout: that share of users (outside its rules) gets ${f.on_variant}. Now ${pct(f.rollout)}. A module of a live release holding this flag is then held by hand.`,
    field: { label: 'New percentage (0–100)', value: String(f.rollout), inputmode: 'decimal' },
    act: async (value, reason) => {
      const body = { percentage: parsePercentage(value) };
      if (reason) body.reason = reason;
      const flag = await call('PUT', `/api/v1/flags/${encodeURIComponent(f.key)}/rollout`, body);
      notice(`${flag.key} is now at ${pct(flag.rollout)}.`, 'info');
    },
  });
};

ctx.actions.kill = (f, kill) => {
  confirmThen({
    title: kill ? 'Kill' : 'Unkill',
    text: kill
      ? `Kill ${f.key}: everyone gets ${f.off_variant} at once; its rollout (${pct(f.rollout)}) is kept for an unkill.`
      : `Unkill ${f.key}: it serves its rules and its ${pct(f.rollout)} rollout again.`,
    danger: kill,
    act: async (_, reason) => {
      await call('POST', `/api/v1/flags/${encodeURIComponent(f.key)}/${kill ? 'kill' : 'unkill'}`, reason ? { reason } : {});
    },
  });
};

ctx.actions.audit = (filter) => {
  ctx.auditFilter = filter;
  loadAudit().then(render);
};

// ——— data ———

async function loadReleases() {
  ctx.releases = (await get('/api/v1/releases')).releases;
}
async function loadFlags() {
  ctx.flags = (await get('/api/v1/flags')).flags;
}
async function loadRelease(id) {
  const [status, history] = await Promise.all([
    get(`/api/v1/releases/${encodeURIComponent(id)}`),
    get(`/api/v1/releases/${encodeURIComponent(id)}/history?max_points=120`),
  ]);
  ctx.release = status;
  ctx.history = views.historyModel(history);
}
async function loadAudit() {
  const f = ctx.auditFilter;
  const q = new URLSearchParams({ limit: '200' });
  if (f.flag) q.set('flag', f.flag);
  if (f.release) q.set('release', f.release);
  if (f.since) q.set('since', String(Date.parse(`${f.since}Z`)));
  try {
    ctx.audit = (await get(`/api/v1/audit?${q}`)).entries;
    ctx.auditError = null;
  } catch (e) {
    ctx.audit = [];
    ctx.auditError = e.message;
  }
}

// Coalesced refreshes: a burst of stream events costs one re-read per kind per 200 ms.
const dirty = new Set();
let refreshTimer = null;
function refresh(kind) {
  dirty.add(kind);
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const kinds = [...dirty];
    dirty.clear();
    try {
      await Promise.all(kinds.map((k) => {
        if (k === 'releases') {
          return route.view === 'release' ? loadReleaseStatus() : loadReleases();
        }
        if (k === 'flags') return loadFlags();
        return null;
      }));
      render();
    } catch (e) {
      notice(e.message);
    }
  }, 200);
}
async function loadReleaseStatus() {
  ctx.release = await get(`/api/v1/releases/${encodeURIComponent(route.id)}`);
  await loadReleases();
}

// ——— live ———

function setLive(text, on) {
  const el = $('live');
  el.hidden = false;
  el.textContent = text;
  el.className = `live ${on ? 'on' : 'off'}`;
}

function onChange(e) {
  if (e.event === 'config') {
    refresh('flags');
    return;
  }
  if (e.event !== 'change') return;
  let change;
  try {
    change = JSON.parse(e.data);
  } catch {
    return;
  }
  if (change.type === 'flag' && change.flag) {
    const i = ctx.flags.findIndex((f) => f.key === change.key);
    if (change.action === 'delete') {
      if (i >= 0) ctx.flags.splice(i, 1);
    } else if (i >= 0) ctx.flags[i] = change.flag;
    else ctx.flags.push(change.flag);
    if (route.view === 'flags') renderSoon();
  } else {
    refresh('flags');
  }
  const action = change.cause?.action ?? '';
  if (action.includes('rollback')) {
    const r = ctx.releases.find((x) => x.id === change.cause?.release);
    notice(`Rolled back: ${change.key}${r ? ` (release ${r.name})` : ''} is at ${pct(change.flag?.rollout)} — by ${change.cause.actor}${change.cause.reason ? `: ${change.cause.reason}` : ''}.`, 'alert', true);
  }
  if (change.cause?.release || action.startsWith('module.')) refresh('releases');
}

function onPoint(e) {
  if (e.event !== 'point') return;
  let p;
  try {
    p = JSON.parse(e.data);
  } catch {
    return;
  }
  if (route.view === 'release' && ctx.release && p.release === ctx.release.id) {
    const m = (ctx.history[p.module] ??= { points: [], series: new Map() });
    m.points.push(p.point);
    appendPoint(m.series, p.point);
    current?.fill?.(ctx.history);
  }
  if (p.point?.mark) refresh('releases');
}

function startStreams() {
  stopStreams();
  streams.push(follow('/api/v1/stream', {
    onEvent: onChange,
    onState: (s, detail) => {
      if (s === 'open') setLive('live', true);
      else if (s === 'retrying') {
        setLive('reconnecting…', false);
      } else setLive(`not live: ${detail}`, false);
      if (s === 'open') refresh('releases');
    },
  }));
  // After a reconnect (not the first open) the points missed meanwhile are read again.
  let historyOpened = false;
  streams.push(follow('/api/v1/history/stream', {
    onEvent: onPoint,
    onState: (s) => {
      if (s !== 'open') return;
      if (historyOpened && route.view === 'release') go();
      historyOpened = true;
    },
  }));
}
function stopStreams() {
  for (const s of streams) s.stop();
  streams = [];
}

// ——— routing and rendering ———

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  if (parts[0] === 'release' && parts[1]) return { view: 'release', id: decodeURIComponent(parts[1]) };
  if (['flags', 'audit', 'releases'].includes(parts[0])) return { view: parts[0] };
  return { view: 'releases' };
}

let renderQueued = false;
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  if (!ctx.me) return;
  for (const a of document.querySelectorAll('#nav a')) {
    const on = a.dataset.view === route.view || (route.view === 'release' && a.dataset.view === 'releases');
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const keepFocus = document.activeElement?.id;
  const el = views[route.view](ctx);
  $('view').replaceChildren(el);
  current = el;
  el.fill?.(ctx.history);
  if (keepFocus && document.getElementById(keepFocus) && keepFocus !== 'main') {
    const f = document.getElementById(keepFocus);
    f.focus();
    if (f.setSelectionRange && f.type === 'search') f.setSelectionRange(f.value.length, f.value.length);
  }
}

async function go() {
  route = parseRoute();
  try {
    const t0 = performance.now();
    if (route.view === 'release') {
      ctx.release = null;
      await loadRelease(route.id);
      window.__rollgate.timing = { loaded: performance.now() - t0 };
      // The list (for names in notices) after the page is drawn.
      setTimeout(() => loadReleases().catch(() => {}), 0);
    } else if (route.view === 'releases') await loadReleases();
    else if (route.view === 'flags') await Promise.all([loadFlags(), loadReleases()]);
    else if (route.view === 'audit') await loadAudit();
    render();
    window.__rollgate.rendered = performance.now();
    if (window.__rollgate.timing) window.__rollgate.timing.rendered = performance.now() - t0;
    document.title = `rollgate · ${route.view === 'release' ? ctx.release?.name : route.view}`;
  } catch (e) {
    $('view').replaceChildren(views.h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

// ——— sign-in ———

async function signIn() {
  try {
    ctx.me = await get('/api/v1/whoami');
  } catch (e) {
    token.clear();
    showSignIn(e.message);
    return;
  }
  if (ctx.me.role === 'client') {
    token.clear();
    showSignIn('This is a client token: the dashboard needs an admin or viewer token.');
    return;
  }
  ctx.admin = ctx.me.role === 'admin';
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  $('who').hidden = false;
  $('who').textContent = `${ctx.me.name} (${ctx.me.role}${ctx.admin ? '' : ', read-only'})`;
  document.body.dataset.role = ctx.me.role;
  startStreams();
  await go();
}

function showSignIn(message = '') {
  ctx.me = null;
  stopStreams();
  $('view').replaceChildren();
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('who').hidden = true;
  $('live').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('token-input').focus();
}

onUnauthorized(() => {
  if (!ctx.me) return;
  token.clear();
  showSignIn('Your token is no longer valid (expired or revoked): sign in again.');
});

window.__rollgate = { stats, ctx, rendered: 0 };

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token.set($('token-input').value.trim());
    $('token-input').value = '';
    signIn();
  });
  $('signout').addEventListener('click', () => {
    token.clear();
    showSignIn();
  });
  window.addEventListener('hashchange', () => {
    if (ctx.me) go();
  });
  if (token.get()) signIn();
  else showSignIn();
});
