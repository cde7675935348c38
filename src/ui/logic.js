// The dashboard's pure logic: formatting and chart series. No DOM, no fetch: unit-tested by
// `node --test src/ui/test/` (tests/api/ui.rs runs them).

/** Words for a module or release state. */
export const STATE_WORDS = {
  pending: 'pending',
  ramping: 'ramping',
  running: 'running',
  paused: 'paused',
  held: 'held by hand',
  completed: 'completed',
  rolled_back: 'rolled back',
};

export function stateWords(state) {
  return STATE_WORDS[state] ?? String(state ?? 'unknown');
}

/** A percentage for people: `12.5 %`, `0 %`, `—` for none. */
export function pct(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return '—';
  const n = Number(value);
  const text = Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000);
  return `${text} %`;
}

/** A rate (events per exposure) for people: `1.23 %` with enough digits for small rates. */
export function rate(value) {
  if (value === null || value === undefined) return '—';
  const p = value * 100;
  if (p === 0) return '0 %';
  const digits = p < 0.01 ? 4 : p < 1 ? 3 : 2;
  return `${p.toFixed(digits)} %`;
}

/** A time as `2026-12-02 01:23:45 UTC`. */
export function time(ms) {
  if (!ms && ms !== 0) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** A duration in ms for people: `850 ms`, `12 s`, `3 min`, `2 h 5 min`. */
export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 120) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

/**
 * A module's progress through its stages: `{done, total, fraction, label}`. `stage` is the
 * index of the current stage (null before the first); a completed module is full, a rolled-back
 * one is empty.
 */
export function progress(module) {
  const stages = module.stages ?? [];
  const total = stages.length;
  let done = module.stage === null || module.stage === undefined ? 0 : module.stage + 1;
  if (module.state === 'completed') done = total;
  if (module.state === 'rolled_back') done = 0;
  const fraction = total === 0 ? 0 : done / total;
  const label = module.state === 'completed'
    ? `completed (${total} of ${total} stages)`
    : module.state === 'rolled_back'
      ? 'rolled back'
      : `stage ${done} of ${total} at ${pct(module.percentage)}`;
  return { done, total, fraction, label };
}

const ACTION_WORDS = {
  start: 'started',
  advance: 'advanced',
  complete: 'completed',
  pause: 'paused',
  resume: 'resumed',
  rollback: 'rolled back',
  hold: 'held by hand',
};

/**
 * One decision record in words: `{title, reason, actor, when, figures}`. `figures` lists the
 * numbers worth reading (stage, percentage, each guard named in the record's numbers).
 */
export function formatDecision(record) {
  if (!record) return null;
  const verb = ACTION_WORDS[record.action] ?? record.action;
  const n = record.numbers ?? {};
  const figures = [];
  const stageText = (s) => (s === null || s === undefined ? 'no stage' : `stage ${s + 1}`);
  if (n.from && n.to && (n.from.state !== n.to.state || n.from.stage !== n.to.stage)) {
    figures.push(`${stateWords(n.from.state)}, ${stageText(n.from.stage)} → ${stateWords(n.to.state)}, ${stageText(n.to.stage)}`);
  } else if (typeof n.stage === 'number') {
    figures.push(stageText(n.stage));
  }
  if (typeof n.rollout_before === 'number' && typeof n.rollout_after === 'number' && n.rollout_before !== n.rollout_after) {
    figures.push(`rollout ${pct(n.rollout_before)} → ${pct(n.rollout_after)}`);
  } else if (typeof n.rollout_after === 'number') {
    figures.push(`rollout ${pct(n.rollout_after)}`);
  }
  if (typeof n.exposures_total === 'number') figures.push(`${n.exposures_total} exposures in all`);
  const guards = n.guards && typeof n.guards === 'object' ? n.guards : {};
  for (const [name, g] of Object.entries(guards)) {
    if (!g || typeof g !== 'object') continue;
    const metric = g.metric ?? name;
    const parts = [];
    if (g.new?.rate !== undefined && g.new?.rate !== null) parts.push(`new ${rate(g.new.rate)}`);
    if (g.old?.rate !== undefined && g.old?.rate !== null) parts.push(`old ${rate(g.old.rate)}`);
    if (typeof g.ln_evidence === 'number' && typeof g.ln_threshold === 'number') {
      parts.push(`evidence ${g.ln_evidence.toFixed(2)} of ${g.ln_threshold.toFixed(2)}`);
    }
    if (g.state) parts.push(g.state);
    figures.push(`${metric}: ${parts.join(', ')}`);
  }
  return {
    title: `${verb} by ${record.actor === 'controller' ? 'the controller' : record.actor}`,
    reason: record.reason ?? '',
    actor: record.actor,
    when: time(record.at_ms),
    figures,
  };
}

/** A latency guard's quantile reading (`GuardReading.quantile`, docs/guards.md), if it is one. */
function quantileOf(reading) {
  const q = reading?.quantile;
  return q && typeof q === 'object' && typeof q.quantile === 'number' ? q : null;
}

/** The value a guard reading charts for a variant side (`new` or `old`): its rate, or for a
 * latency guard the variant's quantile. */
export function sideValue(reading, side) {
  const q = quantileOf(reading);
  if (q) return typeof q[side]?.value === 'number' ? q[side].value : null;
  const s = reading?.[side];
  if (!s || typeof s !== 'object') return null;
  for (const k of ['rate', 'quantile', 'value', 'p']) {
    if (typeof s[k] === 'number') return s[k];
  }
  return null;
}

/** The band's ceiling for the new variant: the old value raised by the allowed increase, or an
 * absolute ceiling. */
export function bandOf(reading) {
  const q = quantileOf(reading);
  if (q) {
    if (typeof q.threshold === 'number') return q.threshold;
    return typeof q.max_value === 'number' ? q.max_value : null;
  }
  const old = sideValue(reading, 'old');
  const rel = reading?.max_relative_increase;
  if (typeof old === 'number' && typeof rel === 'number') return old * (1 + rel);
  for (const k of ['max_rate', 'max_value', 'max_quantile']) {
    if (typeof reading?.[k] === 'number') return reading[k];
  }
  return null;
}

/** A guard's name within a module: its metric (plus quantile, when it has one). */
export function guardName(reading) {
  const q = quantileOf(reading);
  return q ? `${reading.metric} p${Math.round(q.quantile * 1000) / 10}` : String(reading?.metric ?? '?');
}

/** The log evidence of a reading and where it fires (a latency guard's own, when it is one). */
export function evidenceOf(reading) {
  const q = quantileOf(reading);
  const ev = typeof reading?.ln_evidence === 'number' ? reading.ln_evidence : q?.ln_evidence;
  const th = typeof reading?.ln_threshold === 'number' && !q ? reading.ln_threshold : q?.ln_threshold ?? reading?.ln_threshold;
  return { evidence: typeof ev === 'number' ? ev : null, threshold: typeof th === 'number' ? th : null };
}

/**
 * A module's audiences as rows (docs/releases.md#audiences): in ramp order, everyone else
 * (`segment: null`) named so, each with its state, percentage and stage progress. Empty for a
 * module without audiences.
 */
export function audienceRows(module) {
  const list = Array.isArray(module?.audiences) ? module.audiences : [];
  return list.map((a) => ({
    label: a.segment === null || a.segment === undefined ? 'everyone else' : a.segment,
    protected: a.protected === true,
    state: a.state,
    percentage: a.percentage,
    progress: progress({ ...a, state: a.state === 'waiting' ? 'pending' : a.state }),
  }));
}

/**
 * Chart series from history points: per guard name, `{x: [s], new: [], old: [], band: [],
 * evidence: [], threshold: []}` with `x` in Unix seconds and `null` where a point has no value.
 * Points are oldest first; a guard missing from a point gets nulls there, so every array of a
 * guard has the length of `x`.
 */
export function buildSeries(points) {
  const series = new Map();
  const x = [];
  const ensure = (name) => {
    if (!series.has(name)) {
      const nulls = () => new Array(x.length - 1).fill(null);
      series.set(name, { x, new: nulls(), old: nulls(), band: nulls(), evidence: nulls(), threshold: nulls() });
    }
    return series.get(name);
  };
  for (const p of points) {
    x.push(p.at_ms / 1000);
    const seen = new Set();
    for (const g of p.guards ?? []) {
      const name = guardName(g);
      if (seen.has(name)) continue;
      seen.add(name);
      const s = ensure(name);
      s.new.push(sideValue(g, 'new'));
      s.old.push(sideValue(g, 'old'));
      s.band.push(bandOf(g));
      const { evidence, threshold } = evidenceOf(g);
      s.evidence.push(evidence);
      s.threshold.push(threshold);
    }
    for (const [name, s] of series) {
      if (!seen.has(name)) for (const k of ['new', 'old', 'band', 'evidence', 'threshold']) s[k].push(null);
    }
  }
  return series;
}

/** Appends one point to series built by `buildSeries` (live updates), keeping at most `max`. */
export function appendPoint(series, point, max = 5000) {
  const x = series.size ? series.values().next().value.x : [];
  const fresh = buildSeries([point]);
  const n = x.length;
  x.push(point.at_ms / 1000);
  for (const [name, one] of fresh) {
    if (!series.has(name)) {
      const nulls = () => new Array(n).fill(null);
      series.set(name, { x, new: nulls(), old: nulls(), band: nulls(), evidence: nulls(), threshold: nulls() });
    }
  }
  for (const [name, s] of series) {
    s.x = x;
    const one = fresh.get(name);
    for (const k of ['new', 'old', 'band', 'evidence', 'threshold']) s[k].push(one ? one[k][0] : null);
  }
  if (x.length > max) {
    const cut = x.length - max;
    x.splice(0, cut);
    for (const s of series.values()) for (const k of ['new', 'old', 'band', 'evidence', 'threshold']) s[k].splice(0, cut);
  }
  return series;
}

/** A condition in words: `country eq de`, `age ≥ 60`, `in segment seniors`. */
export function conditionWords(c) {
  if (c.segment) return `in segment ${c.segment}`;
  const ops = { eq: '=', neq: '≠', lt: '<', lte: '≤', gt: '>', gte: '≥', in: 'in', not_in: 'not in' };
  const op = ops[c.op] ?? c.op.replaceAll('_', ' ');
  const values = (c.values ?? []).map((v) => JSON.stringify(v)).join(', ');
  return `${c.attribute} ${op} ${values}`;
}

/** A targeting rule in words. */
export function ruleWords(rule) {
  const when = (rule.when ?? []).length ? `if ${rule.when.map(conditionWords).join(' and ')}` : 'always';
  const then = rule.variant !== undefined && rule.variant !== null ? `serve ${rule.variant}` : `roll out ${pct(rule.rollout)}`;
  return `${when}: ${then}`;
}

/** What guards a flag: the live releases holding it and its own policy. */
export function guardedBy(flag, releases) {
  const out = [];
  for (const r of releases) {
    if (!['pending', 'running', 'paused'].includes(r.state)) continue;
    if ((r.modules ?? []).some((m) => m.flag === flag.key)) out.push(`release ${r.name}`);
  }
  if (flag.policy) out.push(`policy ${flag.policy}`);
  return out;
}

/** Does the flag match a search text (key, description, tags)? */
export function matchesSearch(flag, text) {
  const q = text.trim().toLowerCase();
  if (!q) return true;
  return [flag.key, flag.description ?? '', ...(flag.tags ?? [])].some((s) => s.toLowerCase().includes(q));
}

/**
 * The fields that differ between an audit entry's `before` and `after`, as
 * `{path, before, after}` (JSON text), nested objects flattened with dots.
 */
export function diff(before, after, prefix = '') {
  const out = [];
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(before) && isObj(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    for (const k of keys) out.push(...diff(before[k], after[k], prefix ? `${prefix}.${k}` : k));
    return out;
  }
  const a = JSON.stringify(before);
  const b = JSON.stringify(after);
  if (a !== b) out.push({ path: prefix || '(whole)', before: a ?? '—', after: b ?? '—' });
  return out;
}

/** Parses Server-Sent Events out of a text buffer: `{events, rest}`. */
export function parseSse(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const e = { event: 'message', data: '', id: null };
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') e.event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') e.id = value;
    }
    if (data.length) {
      e.data = data.join('\n');
      events.push(e);
    }
  }
  return { events, rest };
}

/** The message to show for a failed API call: the server's own words, with the status. */
export function errorText(status, body) {
  const message = body?.error?.message ?? body?.errorDetails ?? (typeof body === 'string' ? body : '');
  const what = {
    400: 'Bad request',
    401: 'Not signed in (the token is missing, expired or revoked)',
    403: 'Not allowed',
    404: 'Not found',
    409: 'Conflict',
    422: 'Refused',
  }[status] ?? `Error ${status}`;
  return message ? `${what}: ${message}` : what;
}

/** Parses a percentage typed by a person: a number, or the text itself (the server judges). */
export function parsePercentage(text) {
  const t = String(text).trim().replace(/%$/, '').trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}
