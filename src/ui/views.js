// The dashboard's views, built as DOM (never from HTML strings: every text is data). Each view
// is `render(ctx)` → element; `ctx` holds the data, the role and the actions (app.js).
import {
  stateWords, pct, rate, time, duration, progress, formatDecision, buildSeries, ruleWords,
  guardedBy, matchesSearch, diff, sideValue, guardName, evidenceOf, audienceRows,
} from './logic.js';
import { LineChart } from './chart.js';

/** `h('a', {href: '#'}, 'text', child…)`: an element. `on*` attributes are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (state) => h('span', { class: `badge ${state}` }, stateWords(state));

function bar(module) {
  const p = progress(module);
  return h('div', {
    class: `bar ${module.state}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': p.total,
    'aria-valuenow': p.done, 'aria-valuetext': p.label, title: p.label,
  }, h('span', { style: `width: ${Math.round(p.fraction * 100)}%` }));
}

/** A module's audiences in ramp order, each with its own stage bar (none without audiences). */
function audiences(module) {
  const rows = audienceRows(module);
  if (!rows.length) return null;
  return h('ul', { class: 'audiences', 'aria-label': `audiences of ${module.flag}` },
    rows.map((a) => h('li', { class: 'audience-row', 'data-audience': a.label },
      h('span', {}, a.label, a.protected ? ' (protected)' : ''),
      h('div', {
        class: `bar ${a.state}`, role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': a.progress.total,
        'aria-valuenow': a.progress.done, 'aria-valuetext': `${a.label}: ${a.progress.label}`, title: a.progress.label,
      }, h('span', { style: `width: ${Math.round(a.progress.fraction * 100)}%` })),
      h('span', { class: 'meta' }, `${a.state === 'waiting' ? 'waiting for everyone else' : stateWords(a.state)} · ${pct(a.percentage)}`))));
}

// ——— Releases ———

export function releases(ctx) {
  const list = ctx.releases ?? [];
  const cards = list.slice().reverse().map((r) => h('article', { class: 'card', 'data-release': r.id },
    h('header', {},
      h('a', { href: `#/release/${encodeURIComponent(r.id)}` }, r.name),
      badge(r.state),
      h('span', { class: 'meta' }, r.policy ? `policy ${r.policy}` : 'no policy')),
    h('div', { class: 'meta' }, `created ${r.created}`),
    r.modules.map((m) => h('div', { class: 'module-row', 'data-flag': m.flag },
      h('span', {}, m.flag),
      bar(m),
      h('span', { class: 'meta' }, `${stateWords(m.state)} · ${pct(m.percentage)}`),
      audiences(m))),
    ctx.admin && r.state === 'pending'
      ? h('div', { class: 'controls' }, h('button', { type: 'button', id: `start-${r.id}`, onclick: () => ctx.actions.release(r, 'start') }, `Start ${r.name}`))
      : null));
  return h('section', { 'aria-labelledby': 'releases-title' },
    h('h1', { id: 'releases-title' }, 'Releases'),
    list.length ? h('div', { class: 'cards' }, cards) : h('p', {}, 'No releases yet.'));
}

// ——— One release ———

const RATE_LINES = [
  { key: 'new', label: 'new variant', colorVar: '--line-new', width: 2 },
  { key: 'old', label: 'old variant', colorVar: '--line-old' },
  { key: 'band', label: 'band ceiling', colorVar: '--line-band', dash: [5, 4] },
];
const EVIDENCE_LINES = [
  { key: 'evidence', label: 'log evidence', colorVar: '--line-evidence', width: 2 },
  { key: 'threshold', label: 'threshold', colorVar: '--line-threshold', dash: [5, 4] },
];

function legend(lines) {
  return h('div', { class: 'legend', 'aria-hidden': 'true' },
    lines.map((l) => h('span', { style: `--c: var(${l.colorVar})` }, l.label)));
}

function fmtValue(v) {
  if (Math.abs(v) < 1) return rate(v);
  return String(Math.round(v * 100) / 100);
}

/** A guard's card: its reading in words and, when `charts` is given, its charts over time. */
function guardCard(reading, charts, moduleIndex) {
  const name = guardName(reading);
  const q = reading.quantile && typeof reading.quantile === 'object' ? reading.quantile : null;
  const { evidence, threshold } = evidenceOf(reading);
  const rateCanvas = charts ? h('canvas', { class: 'chart', 'data-chart': `${moduleIndex}:${name}:rate` }) : null;
  const evCanvas = charts ? h('canvas', { class: 'chart', 'data-chart': `${moduleIndex}:${name}:evidence` }) : null;
  charts?.push({ module: moduleIndex, guard: name, rate: new LineChart(rateCanvas, { lines: RATE_LINES, format: fmtValue }),
    evidence: new LineChart(evCanvas, { lines: EVIDENCE_LINES, format: (v) => v.toFixed(1) }) });
  const newV = sideValue(reading, 'new');
  const oldV = sideValue(reading, 'old');
  const fmt = q ? (v) => String(Math.round(v * 10000) / 10000) : fmtValue;
  return h('section', { class: 'guard', 'aria-label': `guard ${name}` },
    h('h4', {}, name, h('span', { class: `badge ${reading.state}` }, reading.state), h('span', { class: 'meta' }, reading.class)),
    h('dl', {},
      h('dt', {}, q ? `p${Math.round(q.quantile * 1000) / 10} new / old` : 'new / old'),
      h('dd', {}, `${newV === null ? '—' : fmt(newV)} / ${oldV === null ? '—' : fmt(oldV)}`),
      q && typeof q.max_value === 'number' ? [h('dt', {}, 'ceiling'), h('dd', {}, fmt(q.max_value))] : null,
      reading.max_relative_increase !== null && reading.max_relative_increase !== undefined
        ? [h('dt', {}, 'band'), h('dd', {}, `up to +${Math.round(reading.max_relative_increase * 100)} % over old`)] : null,
      reading.max_rate !== null && reading.max_rate !== undefined ? [h('dt', {}, 'ceiling'), h('dd', {}, rate(reading.max_rate))] : null,
      reading.max_count !== null && reading.max_count !== undefined
        ? [h('dt', {}, 'count'), h('dd', {}, `${reading.count_since_start ?? 0} of at most ${reading.max_count}`)] : null,
      h('dt', {}, 'evidence'),
      h('dd', {}, evidence !== null && threshold !== null ? `${evidence.toFixed(2)} of ${threshold.toFixed(2)}` : '—')),
    h('p', { class: 'meta' }, reading.explanation ?? ''),
    charts ? [h('h5', { class: 'meta' }, q ? `p${Math.round(q.quantile * 1000) / 10} over time` : 'rate over time'), rateCanvas, legend(RATE_LINES),
      h('h5', { class: 'meta' }, 'evidence against the threshold'), evCanvas, legend(EVIDENCE_LINES)] : null);
}

/** The guards of each audience phase that has started (its own series, docs/guards.md): the
 * readings in words; the module's charts follow everyone else. */
function audienceGuards(module) {
  return (module.audiences ?? [])
    .filter((a) => (a.guards ?? []).length && !['pending', 'waiting'].includes(a.state))
    .map((a) => {
      const label = a.segment ?? 'everyone else';
      return h('details', { class: 'audience-guards', 'data-audience-guards': label, open: a.state === 'ramping' || a.state === 'paused' },
        h('summary', {}, `${label}: guards (${stateWords(a.state)})`),
        h('div', { class: 'guards' }, a.guards.map((g) => guardCard(g, null, null))));
    });
}

function decisionBlock(record, note) {
  const f = formatDecision(record);
  if (!f) return h('div', { class: 'decision' }, h('p', {}, note ? `No decision yet: ${note}.` : 'No decision yet.'));
  return h('div', { class: `decision ${record.action}` },
    h('p', {}, h('strong', {}, f.title), ` — ${f.when}`),
    f.reason ? h('p', {}, `Why: ${f.reason}`) : null,
    f.figures.length ? h('p', { class: 'meta' }, f.figures.join(' · ')) : null,
    note ? h('p', { class: 'meta' }, `Now: ${note}`) : null);
}

function reachBlock(reach) {
  if (!reach) return null;
  const share = reach.share === null || reach.share === undefined ? 'no live clients' : `${Math.round(reach.share * 1000) / 10} % of ${reach.live_clients} live clients`;
  const speed = reach.p50_ms !== null && reach.p50_ms !== undefined ? `, median ${duration(reach.p50_ms)}, p99 ${duration(reach.p99_ms)}` : '';
  return h('p', { class: 'meta', 'data-reach': '' }, `Newest change (rev ${reach.revision}, ${reach.action ?? 'change'}): confirmed by ${share}${speed} — ${reach.state}`);
}

/** The decision records of a module from its history's marked points, newest first. */
function records(points) {
  const seen = new Set();
  const out = [];
  for (const p of points) {
    const d = p.decision;
    if (!d || seen.has(`${d.at_ms}:${d.action}`)) continue;
    seen.add(`${d.at_ms}:${d.action}`);
    out.push(d);
  }
  return out.reverse();
}

export function release(ctx) {
  const r = ctx.release;
  if (!r) return h('p', {}, 'Loading…');
  const charts = [];
  const controls = ctx.admin ? h('div', { class: 'controls' },
    r.state === 'pending' ? h('button', { type: 'button', id: 'do-start', onclick: () => ctx.actions.release(r, 'start') }, 'Start') : null,
    r.state === 'running' ? h('button', { type: 'button', id: 'do-pause', onclick: () => ctx.actions.release(r, 'pause') }, 'Pause') : null,
    r.state === 'paused' ? h('button', { type: 'button', id: 'do-resume', onclick: () => ctx.actions.release(r, 'resume') }, 'Resume') : null,
    ['running', 'paused'].includes(r.state)
      ? h('button', { type: 'button', id: 'do-rollback', class: 'danger', onclick: () => ctx.actions.release(r, 'rollback') }, 'Roll back') : null) : null;
  const modules = r.modules.map((m, i) => {
    const hist = ctx.history?.[i]?.points ?? [];
    const recs = records(hist);
    return h('section', { class: 'module', 'aria-labelledby': `m${i}`, 'data-module': i },
      h('header', {}, h('h2', { id: `m${i}` }, m.flag), badge(m.state), h('span', { class: 'meta' }, `${pct(m.percentage)} · ${progress(m).label}`)),
      bar(m), audiences(m), audienceGuards(m),
      decisionBlock(m.decision, m.waiting),
      reachBlock(m.reach),
      h('div', { class: 'guards' }, (m.guards ?? []).map((g) => guardCard(g, charts, i))),
      recs.length ? h('details', {}, h('summary', {}, `Decision records (${recs.length})`),
        h('ul', { class: 'records' }, recs.map((d) => {
          const f = formatDecision(d);
          return h('li', {}, h('strong', {}, f.title), ` ${f.when}: ${f.reason}`, f.figures.length ? h('div', { class: 'meta' }, f.figures.join(' · ')) : null);
        }))) : null);
  });
  const el = h('section', { 'aria-labelledby': 'release-title' },
    h('p', {}, h('a', { href: '#/releases' }, '← Releases')),
    h('h1', { id: 'release-title' }, r.name, ' ', badge(r.state)),
    h('p', { class: 'meta' }, `${r.policy ? `policy ${r.policy}` : 'no policy'} · created ${r.created} · id ${r.id}`),
    controls, modules);
  // Fill the charts from the history once they are in the document.
  el.charts = charts;
  el.fill = (history) => {
    for (const c of charts) {
      const series = history?.[c.module]?.series?.get(c.guard);
      if (series) {
        c.rate.set(series);
        c.evidence.set(series);
      } else {
        c.rate.set(null);
        c.evidence.set(null);
      }
    }
  };
  return el;
}

/** History answer → per module `{points, series}`. */
export function historyModel(answer) {
  const out = [];
  for (const m of answer?.modules ?? []) out[m.module] = { points: m.points, series: buildSeries(m.points) };
  return out;
}

// ——— Flags ———

export function flags(ctx) {
  const search = h('input', { id: 'flag-search', type: 'search', value: ctx.flagSearch ?? '', placeholder: 'key, description, tag' });
  const body = h('tbody', {});
  const fill = () => {
    body.replaceChildren(...(ctx.flags ?? []).filter((f) => matchesSearch(f, search.value)).map((f) => {
      const guards = guardedBy(f, ctx.releases ?? []);
      return h('tr', { 'data-flag': f.key },
        h('td', { 'data-label': 'flag' }, h('strong', {}, f.key), f.description ? h('div', { class: 'meta' }, f.description) : null),
        h('td', { 'data-label': 'type' }, f.type),
        h('td', { 'data-label': 'rollout', 'data-rollout': '' }, pct(f.rollout)),
        h('td', { 'data-label': 'state' }, f.enabled ? h('span', { class: 'badge ok' }, 'on') : h('span', { class: 'badge rolled_back' }, 'killed')),
        h('td', { 'data-label': 'rules' }, (f.rules ?? []).length ? h('ol', { class: 'rules' }, f.rules.map((r) => h('li', {}, ruleWords(r)))) : h('span', { class: 'meta' }, 'no rules')),
        h('td', { 'data-label': 'guarded by' }, guards.length ? guards.join(', ') : h('span', { class: 'meta' }, 'nothing')),
        ctx.admin ? h('td', { 'data-label': 'actions' }, h('div', { class: 'controls' },
          h('button', { type: 'button', id: `rollout-${f.key}`, onclick: () => ctx.actions.rollout(f) }, 'Set percentage'),
          f.enabled
            ? h('button', { type: 'button', id: `kill-${f.key}`, class: 'danger', onclick: () => ctx.actions.kill(f, true) }, 'Kill')
            : h('button', { type: 'button', id: `kill-${f.key}`, onclick: () => ctx.actions.kill(f, false) }, 'Unkill'))) : null);
    }));
  };
  search.addEventListener('input', () => {
    ctx.flagSearch = search.value;
    fill();
  });
  fill();
  return h('section', { 'aria-labelledby': 'flags-title' },
    h('h1', { id: 'flags-title' }, 'Flags'),
    h('div', { class: 'filters' }, h('div', {}, h('label', { for: 'flag-search' }, 'Search'), search)),
    h('table', { class: 'flags' },
      h('thead', {}, h('tr', {}, ['Flag', 'Type', 'Rollout', 'State', 'Rules', 'Guarded by', ctx.admin ? 'Actions' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
      body));
}

// ——— Audit ———

export function audit(ctx) {
  const f = ctx.auditFilter ?? {};
  const field = (id, label, attrs) => h('div', {}, h('label', { for: id }, label), h('input', { id, ...attrs }));
  const form = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    const data = new FormData(e.target);
    ctx.actions.audit(Object.fromEntries(data.entries()));
  } },
  field('audit-flag', 'Flag', { name: 'flag', value: f.flag ?? '' }),
  field('audit-release', 'Release id', { name: 'release', value: f.release ?? '' }),
  field('audit-actor', 'Actor', { name: 'actor', value: f.actor ?? '' }),
  field('audit-since', 'Since (UTC)', { name: 'since', type: 'datetime-local', value: f.since ?? '' }),
  h('button', { type: 'submit' }, 'Filter'));
  const entries = (ctx.audit ?? []).filter((e) => !f.actor || e.actor === f.actor);
  return h('section', { 'aria-labelledby': 'audit-title' },
    h('h1', { id: 'audit-title' }, 'Audit'),
    form,
    ctx.auditError ? h('p', { class: 'error', role: 'alert' }, ctx.auditError) : null,
    entries.length ? h('ol', { class: 'timeline' }, entries.map((e) => {
      const changes = diff(e.before ?? null, e.after ?? null);
      return h('li', {},
        h('div', {}, h('strong', {}, e.action), ' by ', e.actor, h('span', { class: 'meta' }, ` · ${e.time}`)),
        h('div', { class: 'meta' }, [e.flag ? `flag ${e.flag}` : null, e.release ? `release ${e.release}` : null, e.subject ? `subject ${e.subject}` : null].filter(Boolean).join(' · ')),
        e.reason ? h('div', {}, `Reason: ${e.reason}`) : null,
        changes.length ? h('details', {}, h('summary', {}, `Changes (${changes.length})`),
          h('table', { class: 'diff' }, h('thead', {}, h('tr', {}, h('th', {}, 'field'), h('th', {}, 'before'), h('th', {}, 'after'))),
            h('tbody', {}, changes.slice(0, 200).map((c) => h('tr', {}, h('td', {}, c.path), h('td', { class: 'before' }, c.before), h('td', { class: 'after' }, c.after)))))) : null);
    })) : h('p', {}, 'No entries.'));
}

export { time };
