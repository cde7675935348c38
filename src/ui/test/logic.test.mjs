// Unit tests of the dashboard's pure logic (ui/logic.js): `node --test src/ui/test/`.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  formatDecision, buildSeries, appendPoint, progress, ruleWords, diff, parseSse, errorText,
  guardedBy, matchesSearch, pct, rate, duration, bandOf, parsePercentage, audienceRows,
} from '../logic.js';

const reading = (metric, newRate, oldRate, extra = {}) => ({
  metric, class: 'core', state: 'ok',
  new: { events: 1, exposures: 100, rate: newRate },
  old: { events: 1, exposures: 100, rate: oldRate },
  max_relative_increase: 0.25, ln_evidence: 1.5, ln_threshold: 6.9, ...extra,
});

test('a rollback record reads as words with its figures', () => {
  const f = formatDecision({
    action: 'rollback', reason: 'payment_error rate above its band', at_ms: Date.UTC(2026, 11, 2, 1, 2, 3),
    actor: 'controller',
    numbers: {
      from: { state: 'ramping', stage: 1 }, to: { state: 'rolled_back', stage: 1 },
      rollout_before: 5, rollout_after: 0, exposures_total: 4200,
      guards: { guard: reading('payment_error', 0.031, 0.02, { state: 'breach', ln_evidence: 7.2 }) },
    },
  });
  assert.equal(f.title, 'rolled back by the controller');
  assert.equal(f.reason, 'payment_error rate above its band');
  assert.equal(f.when, '2026-12-02 01:02:03 UTC');
  assert.deepEqual(f.figures, [
    'ramping, stage 2 → rolled back, stage 2',
    'rollout 5 % → 0 %',
    '4200 exposures in all',
    'payment_error: new 3.10 %, old 2.00 %, evidence 7.20 of 6.90, breach',
  ]);
});

test('an operator pause names the operator and has no guard figures', () => {
  const f = formatDecision({ action: 'pause', reason: 'lunch', at_ms: 0, actor: 'alice', numbers: { rollout_after: 25 } });
  assert.equal(f.title, 'paused by alice');
  assert.deepEqual(f.figures, ['rollout 25 %']);
  assert.equal(formatDecision(null), null);
});

test('series: one per guard, aligned on x, nulls where a guard is missing, band from old × (1 + increase)', () => {
  const points = [
    { at_ms: 1000, guards: [reading('a', 0.1, 0.1)] },
    { at_ms: 6000, guards: [reading('a', 0.2, 0.1), reading('b', 0.01, 0.02, { max_relative_increase: null, max_rate: 0.05 })] },
    { at_ms: 11000, guards: [reading('b', 0.03, 0.02, { max_relative_increase: null, max_rate: 0.05 })] },
  ];
  const s = buildSeries(points);
  assert.deepEqual([...s.keys()], ['a', 'b']);
  const a = s.get('a');
  const b = s.get('b');
  assert.deepEqual(a.x, [1, 6, 11]);
  assert.deepEqual(a.new, [0.1, 0.2, null]);
  assert.deepEqual(a.band.map((v) => v && Math.round(v * 1000) / 1000), [0.125, 0.125, null]);
  assert.deepEqual(b.new, [null, 0.01, 0.03]);
  assert.deepEqual(b.band, [null, 0.05, 0.05]);
  assert.deepEqual(a.evidence, [1.5, 1.5, null]);
  assert.deepEqual(a.threshold, [6.9, 6.9, null]);
});

test('latency guards chart their quantile per variant against the threshold, named by the quantile', () => {
  // The server's shape (GuardReading.quantile, src/analysis/quantile.rs): the rate fields of a
  // latency guard are its observation counts, never what it charts.
  const q = {
    metric: 'checkout_latency', class: 'core', state: 'ok', ln_evidence: null, ln_threshold: 5.3,
    new: { events: 900, exposures: 900, rate: 1 }, old: { events: 880, exposures: 880, rate: 1 },
    quantile: { quantile: 0.95, relative_accuracy: 0.01, new: { observations: 900, value: 0.52 },
      old: { observations: 880, value: 0.46 }, threshold: 0.6, ln_evidence: 1.5, ln_threshold: 6.0, max_value: 5 },
  };
  const s = buildSeries([{ at_ms: 0, guards: [q] }]);
  assert.deepEqual([...s.keys()], ['checkout_latency p95']);
  const g = s.get('checkout_latency p95');
  assert.deepEqual([g.new[0], g.old[0], g.band[0], g.evidence[0], g.threshold[0]], [0.52, 0.46, 0.6, 1.5, 6.0]);
  // Without a relative band, the ceiling is the band.
  assert.equal(bandOf({ ...q, quantile: { ...q.quantile, threshold: null } }), 5);
});

test('audience rows: ramp order, everyone else named, waiting protected audiences at 0', () => {
  const module = {
    flag: 'qr', state: 'ramping', stages: [5, 100], stage: null, percentage: 0,
    audiences: [
      { segment: 'innovation', protected: false, state: 'completed', stage: 1, stages: [50, 100], percentage: 100 },
      { segment: null, protected: false, state: 'ramping', stage: 0, stages: [5, 100], percentage: 5 },
      { segment: 'seniors', protected: true, state: 'waiting', stage: null, stages: [100], percentage: 0 },
    ],
  };
  const rows = audienceRows(module);
  assert.deepEqual(rows.map((r) => [r.label, r.protected, r.state, r.percentage]),
    [['innovation', false, 'completed', 100], ['everyone else', false, 'ramping', 5], ['seniors', true, 'waiting', 0]]);
  assert.deepEqual(rows.map((r) => r.progress.done), [2, 1, 0]);
  assert.deepEqual(audienceRows({ flag: 'plain' }), []);
});

test('appending live points keeps every series aligned and bounded', () => {
  const s = buildSeries([{ at_ms: 0, guards: [reading('a', 0.1, 0.1)] }]);
  appendPoint(s, { at_ms: 5000, guards: [reading('a', 0.2, 0.1), reading('c', 0.3, 0.3)] });
  assert.deepEqual(s.get('a').new, [0.1, 0.2]);
  assert.deepEqual(s.get('c').new, [null, 0.3]);
  assert.equal(s.get('c').x, s.get('a').x);
  for (let i = 0; i < 10; i++) appendPoint(s, { at_ms: 10000 + i, guards: [reading('a', 0.1, 0.1)] }, 5);
  assert.equal(s.get('a').x.length, 5);
  assert.equal(s.get('c').new.length, 5);
});

test('progress of a module through its stages', () => {
  assert.deepEqual(progress({ state: 'ramping', stage: 1, stages: [1, 5, 25, 100], percentage: 5 }),
    { done: 2, total: 4, fraction: 0.5, label: 'stage 2 of 4 at 5 %' });
  assert.equal(progress({ state: 'completed', stage: 3, stages: [1, 5, 25, 100] }).fraction, 1);
  assert.equal(progress({ state: 'rolled_back', stage: 1, stages: [1, 5] }).label, 'rolled back');
  assert.equal(progress({ state: 'pending', stage: null, stages: [] }).fraction, 0);
});

test('rules, diff, search, guarded-by, numbers', () => {
  assert.equal(ruleWords({ when: [{ attribute: 'country', op: 'eq', values: ['de'] }, { segment: 'seniors' }], rollout: 50 }),
    'if country = "de" and in segment seniors: roll out 50 %');
  assert.equal(ruleWords({ when: [], variant: 'on' }), 'always: serve on');
  assert.deepEqual(diff({ rollout: 5, enabled: true, rules: [] }, { rollout: 0, enabled: true, rules: [] }),
    [{ path: 'rollout', before: '5', after: '0' }]);
  assert.deepEqual(diff(null, { a: 1 }), [{ path: '(whole)', before: 'null', after: '{"a":1}' }]);
  assert.ok(matchesSearch({ key: 'qr-ordering', tags: ['checkout'] }, 'CHECK'));
  assert.ok(!matchesSearch({ key: 'points' }, 'qr'));
  assert.deepEqual(guardedBy({ key: 'f', policy: 'checkout' }, [
    { name: 'r1', state: 'running', modules: [{ flag: 'f' }] },
    { name: 'old', state: 'completed', modules: [{ flag: 'f' }] },
  ]), ['release r1', 'policy checkout']);
  assert.equal(pct(12.5), '12.5 %');
  assert.equal(pct(null), '—');
  assert.equal(rate(0.0005), '0.050 %');
  assert.equal(duration(90_000), '90 s');
  assert.equal(duration(7_500_000), '2 h 5 min');
  assert.equal(parsePercentage(' 12.5 % '), 12.5);
  assert.equal(parsePercentage('lots'), 'lots');
});

test('SSE frames are parsed across chunk boundaries', () => {
  let { events, rest } = parseSse('retry: 1000\n\nid: 4\nevent: change\ndata: {"a":1}\n\n: heartbeat\n\nevent: po');
  assert.deepEqual(events, [{ event: 'change', data: '{"a":1}', id: '4' }]);
  ({ events, rest } = parseSse(`${rest}int\ndata: x\n\n`));
  assert.deepEqual(events, [{ event: 'point', data: 'x', id: null }]);
  assert.equal(rest, '');
});

test('errors show the server message with the status in words', () => {
  assert.equal(errorText(422, { error: { code: 'invalid', message: 'percentage must be 0–100' } }),
    'Refused: percentage must be 0–100');
  assert.equal(errorText(401, {}), 'Not signed in (the token is missing, expired or revoked)');
  assert.equal(errorText(409, { error: { message: 'nothing to pause' } }), 'Conflict: nothing to pause');
});
