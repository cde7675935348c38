// Shared by the node tests of clients/js (run by tests/api/js_client.rs against a real server).
// Reads ROLLGATE_URL and ROLLGATE_ADMIN_TOKEN; prints one line per check and ends with
// `N passed, M failed`, exiting non-zero on any failure, an uncaught exception or an
// unhandled rejection (the library must never cause either).

export const URL_BASE = (process.env.ROLLGATE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_TOKEN = process.env.ROLLGATE_ADMIN_TOKEN ?? '';

let passed = 0;
let failed = 0;
const escaped = [];
process.on('unhandledRejection', (e) => escaped.push(`unhandled rejection: ${e?.stack ?? e}`));
process.on('uncaughtException', (e) => escaped.push(`uncaught exception: ${e?.stack ?? e}`));

export function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}: ${detail}`);
  }
}

export function finish() {
  check('no uncaught exception or unhandled rejection reached the app', escaped.length === 0, escaped.join('\n'));
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

export async function admin(method, path, body) {
  const res = await fetch(URL_BASE + path, {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

export function boolFlag(key, rollout) {
  return { key, type: 'boolean', variants: { off: false, on: true }, off_variant: 'off', on_variant: 'on', enabled: true, rollout, rules: [] };
}

export async function clientToken(name) {
  const created = await admin('POST', '/api/v1/tokens', { name: `${name}-${Math.random().toString(16).slice(2, 10)}`, role: 'client' });
  return created.token;
}

/** The server's `rollgate_signals_total{flag, variant, metric}` (0 when the series is absent). */
export async function serverTotal(token, flag, variant, metric, audience) {
  const res = await fetch(`${URL_BASE}/metrics`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  const labels = `flag="${flag}",variant="${variant}",metric="${metric}"` + (audience ? `,audience="${audience}"` : '');
  const prefix = `rollgate_signals_total{${labels}} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(prefix.length)) : 0;
}

/** A `fetch` that forwards to the real one and records what was sent and answered. */
export function observedFetch() {
  const calls = [];
  const f = async (url, init) => {
    const call = { at: Date.now(), url, body: JSON.parse(init.body), headers: init.headers, status: null };
    calls.push(call);
    try {
      const res = await fetch(url, init);
      call.status = res.status;
      call.retryAfter = res.headers.get('retry-after');
      return res;
    } catch (e) {
      call.status = `error: ${e.message}`;
      throw e;
    }
  };
  return { fetch: f, calls };
}

/** Awaits `cond()` (sync or async) with a deadline instead of sleeping. */
export async function until(cond, ms = 10_000, step = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, step));
  }
}

export function tally(map, key, n = 1) {
  map.set(key, (map.get(key) ?? 0) + n);
}
