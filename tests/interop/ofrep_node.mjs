// Interop: the official OpenFeature Node SDK + OFREP provider against a rollgate server.
//
// Reads ROLLGATE_URL and ROLLGATE_ADMIN_TOKEN, creates its own `js-*` flags and a client
// token over the admin API (plain fetch), then evaluates through `@openfeature/server-sdk`
// + `@openfeature/ofrep-provider` with the CLIENT token. Prints one line per check and ends
// with `N passed, M failed`; exits non-zero on any failure.
//
// Run by tests/api/interop.rs with the node_modules made by tests/interop/setup.sh.

import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ErrorCode, OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

// The provider joins `${baseUrl}/ofrep/v1/...` by string concatenation: no trailing slash.
const URL_BASE = (process.env.ROLLGATE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const ADMIN_TOKEN = process.env.ROLLGATE_ADMIN_TOKEN ?? '';

let passed = 0;
let failed = 0;

function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}: ${detail}`);
  }
}

function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

async function admin(method, path, body) {
  const res = await fetch(URL_BASE + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
  }
  return text ? JSON.parse(text) : null;
}

function flag(key, type, variants, off, on, rollout, rules = [], enabled = true) {
  return { key, type, variants, off_variant: off, on_variant: on, enabled, rollout, rules };
}

const BOOL = { off: false, on: true };
const INNOVATION = { when: [{ attribute: 'tier', op: 'in', values: ['innovation'] }], variant: 'on' };

const FLAGS = [
  flag('js-rule', 'boolean', BOOL, 'off', 'on', 0, [INNOVATION]),
  flag('js-string', 'string', { old: 'classic', new: 'fresh' }, 'old', 'new', 100),
  flag('js-number', 'number', { small: 7, big: 42.5 }, 'small', 'big', 100),
  flag(
    'js-object',
    'object',
    { a: { color: 'blue', size: 3, tags: ['x', 'y'] }, b: { color: 'red' } },
    'b',
    'a',
    100,
  ),
  flag('js-kill', 'boolean', BOOL, 'off', 'on', 100),
  flag('js-split', 'boolean', BOOL, 'off', 'on', 50),
  flag('js-partial', 'boolean', BOOL, 'off', 'on', 12.5),
  flag('js-ramp', 'boolean', BOOL, 'off', 'on', 0),
];

const show = (d) =>
  JSON.stringify({
    value: d.value,
    variant: d.variant,
    reason: d.reason,
    errorCode: d.errorCode,
    errorMessage: d.errorMessage,
  });

function expect(name, d, { value, variant, reason, errorCode }) {
  let ok = isDeepStrictEqual(d.value, value) && d.errorCode === errorCode;
  if (variant !== undefined) ok = ok && d.variant === variant;
  if (reason !== undefined) ok = ok && d.reason === reason;
  check(name, ok, show(d));
}

function providerWith(headers) {
  return new OFREPProvider({ baseUrl: URL_BASE, headers });
}

async function runChecks(client, token) {
  let d;

  // Typed values, variants and reasons.
  d = await client.getBooleanDetails('js-rule', false, { targetingKey: 'user-1', tier: 'innovation' });
  expect('boolean rule match -> true, TARGETING_MATCH', d, { value: true, variant: 'on', reason: 'TARGETING_MATCH' });

  d = await client.getBooleanDetails('js-rule', true, { targetingKey: 'user-1', tier: 'basic' });
  expect('boolean no rule match, 0% rollout -> false, DEFAULT', d, { value: false, variant: 'off', reason: 'DEFAULT' });

  d = await client.getStringDetails('js-string', 'fallback', { targetingKey: 'user-1' });
  expect("string flag -> 'fresh', STATIC", d, { value: 'fresh', variant: 'new', reason: 'STATIC' });

  d = await client.getStringDetails('js-string', 'fallback', { tier: 'basic' });
  expect('no targetingKey is fine when no split is needed', d, { value: 'fresh', variant: 'new', reason: 'STATIC' });

  d = await client.getNumberDetails('js-number', 0, { targetingKey: 'user-1' });
  expect('number flag -> 42.5', d, { value: 42.5, variant: 'big', reason: 'STATIC' });

  d = await client.getObjectDetails('js-object', {}, { targetingKey: 'user-1' });
  expect('object flag -> nested object', d, {
    value: { color: 'blue', size: 3, tags: ['x', 'y'] },
    variant: 'a',
    reason: 'STATIC',
  });

  // Kill switch.
  d = await client.getBooleanDetails('js-kill', false, { targetingKey: 'user-1' });
  expect('before kill -> true', d, { value: true, variant: 'on', reason: 'STATIC' });
  await admin('POST', '/api/v1/flags/js-kill/kill');
  d = await client.getBooleanDetails('js-kill', true, { targetingKey: 'user-1' });
  expect('after kill -> off variant, DISABLED', d, { value: false, variant: 'off', reason: 'DISABLED' });
  await admin('POST', '/api/v1/flags/js-kill/unkill');
  d = await client.getBooleanDetails('js-kill', false, { targetingKey: 'user-1' });
  expect('after unkill -> true again', d, { value: true, variant: 'on', reason: 'STATIC' });

  // Percentage split: deterministic per user, both sides populated at 50%.
  const seen = new Set();
  const bad = [];
  let stable = true;
  for (let i = 0; i < 40; i += 1) {
    const a = await client.getBooleanDetails('js-split', false, { targetingKey: `user-${i}` });
    const b = await client.getBooleanDetails('js-split', false, { targetingKey: `user-${i}` });
    if (a.reason !== 'SPLIT' || a.errorCode !== undefined || a.variant !== (a.value ? 'on' : 'off')) {
      bad.push(show(a));
    }
    stable = stable && a.value === b.value && a.variant === b.variant;
    seen.add(a.value);
  }
  check('50% rollout with targetingKey -> SPLIT, variant matches value', bad.length === 0, bad.slice(0, 3).join('; '));
  check('same user gets the same answer twice', stable);
  check('50% rollout serves both variants over 40 users', seen.size === 2, `seen=${[...seen]}`);

  // Partial rollout without a targetingKey.
  d = await client.getBooleanDetails('js-partial', true, { tier: 'basic' });
  expect('partial rollout without targetingKey -> default, TARGETING_KEY_MISSING', d, {
    value: true,
    reason: 'ERROR',
    errorCode: ErrorCode.TARGETING_KEY_MISSING,
  });

  // Missing flag.
  d = await client.getStringDetails('js-does-not-exist', 'fallback', { targetingKey: 'user-1' });
  expect('missing flag -> default, FLAG_NOT_FOUND', d, {
    value: 'fallback',
    reason: 'ERROR',
    errorCode: ErrorCode.FLAG_NOT_FOUND,
  });

  // Type mismatch: a boolean flag asked as a string (detected by the provider).
  d = await client.getStringDetails('js-rule', 'fallback', { targetingKey: 'user-1', tier: 'innovation' });
  expect('boolean flag asked as string -> default, TYPE_MISMATCH', d, {
    value: 'fallback',
    reason: 'ERROR',
    errorCode: ErrorCode.TYPE_MISMATCH,
  });

  // A rollout change through the admin API is seen by the very next evaluation.
  const who = { targetingKey: 'ramp-user', tier: 'basic' };
  d = await client.getBooleanDetails('js-ramp', true, who);
  expect('ramp at 0% -> false', d, { value: false, variant: 'off', reason: 'STATIC' });
  await admin('PUT', '/api/v1/flags/js-ramp/rollout', { percentage: 100 });
  d = await client.getBooleanDetails('js-ramp', false, who);
  expect('ramp raised to 100% -> next evaluation is true', d, { value: true, variant: 'on', reason: 'STATIC' });
  await admin('PUT', '/api/v1/flags/js-ramp/rollout', { percentage: 33.333 });
  d = await client.getBooleanDetails('js-ramp', false, who);
  expect('ramp set to 33.333% -> next evaluation is a SPLIT', d, {
    value: d.value,
    variant: d.value ? 'on' : 'off',
    reason: 'SPLIT',
  });
  await admin('PUT', '/api/v1/flags/js-ramp/rollout', { percentage: 0 });
  d = await client.getBooleanDetails('js-ramp', true, who);
  expect('ramp back to 0% -> next evaluation is false', d, { value: false, variant: 'off', reason: 'STATIC' });

  // Auth: a provider with a wrong token gets defaults, never a value.
  await OpenFeature.setProviderAndWait('rollgate-js-badtoken', providerWith({ Authorization: 'Bearer not-a-token' }));
  d = await OpenFeature.getClient('rollgate-js-badtoken').getBooleanDetails('js-kill', false, { targetingKey: 'user-1' });
  expect('wrong token -> default, GENERAL', d, { value: false, reason: 'ERROR', errorCode: ErrorCode.GENERAL });

  // X-API-Key is accepted as well as Authorization: Bearer.
  await OpenFeature.setProviderAndWait('rollgate-js-apikey', providerWith({ 'X-API-Key': token }));
  d = await OpenFeature.getClient('rollgate-js-apikey').getStringDetails('js-string', 'fallback', {
    targetingKey: 'user-1',
  });
  expect('X-API-Key header is accepted', d, { value: 'fresh', variant: 'new', reason: 'STATIC' });
}

async function main() {
  if (!ADMIN_TOKEN) {
    check('ROLLGATE_ADMIN_TOKEN is set', false, 'empty');
    finish();
  }
  let token;
  try {
    for (const f of FLAGS) {
      await admin('PUT', `/api/v1/flags/${f.key}`, f);
    }
    const created = await admin('POST', '/api/v1/tokens', {
      name: `js-interop-${randomUUID().slice(0, 8)}`,
      role: 'client',
    });
    token = created.token;
    check('setup: flags and a client token created over the admin API', created.role === 'client', JSON.stringify(created));
  } catch (e) {
    check('setup: flags and a client token created over the admin API', false, e.stack ?? e);
    finish();
  }

  await OpenFeature.setProviderAndWait('rollgate-js', providerWith({ Authorization: `Bearer ${token}` }));
  const client = OpenFeature.getClient('rollgate-js');
  try {
    await runChecks(client, token);
  } catch (e) {
    check('checks ran to the end', false, e.stack ?? e);
  } finally {
    await OpenFeature.close();
  }
  finish();
}

await main();
