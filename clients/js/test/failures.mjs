// A signals server that is down, answers 500, hangs, refuses the token or rate-limits (429):
// the app never sees an exception or an unhandled rejection, nothing blocks longer than its
// timeout, a 429 is retried after its Retry-After, and the queue bound drops and counts.
// ROLLGATE_URL is a real rollgate with `signals_per_second = 100` (tests/api/js_client.rs);
// the 500 and hanging servers are plain node:http fixtures in this script.
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { InMemoryProvider, OpenFeature } from '@openfeature/server-sdk';
import { RollgateSignals } from '@rollgate/openfeature';
import { URL_BASE, admin, boolFlag, check, clientToken, finish, observedFetch, serverTotal, until } from './helpers.mjs';

const listen = (handler) =>
  new Promise((resolve) => {
    const server = createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
const urlOf = (server) => `http://127.0.0.1:${server.address().port}`;

/** An app: the SDK with an in-memory flag, evaluated through the hook. */
async function evaluateThrough(signals, domain, times) {
  OpenFeature.setProvider(domain, new InMemoryProvider({ f: { variants: { on: true, off: false }, defaultVariant: 'on', disabled: false } }));
  const client = OpenFeature.getClient(domain);
  client.addHooks(signals);
  for (let i = 0; i < times; i += 1) await client.getBooleanValue('f', false, { targetingKey: `u${i}` });
}

async function main() {
  // Down: a port that was just closed.
  const closed = await listen(() => {});
  const downUrl = urlOf(closed);
  await new Promise((r) => closed.close(r));
  const down = new RollgateSignals({ baseUrl: downUrl, token: 't', flushIntervalMs: 50 });
  await evaluateThrough(down, 'down', 20);
  let t0 = Date.now();
  await down.flush();
  check('server down: flush resolves, the failure is counted, the signals stay queued',
    down.stats().failures >= 1 && down.stats().queued === 20 && Date.now() - t0 < 5000, JSON.stringify(down.stats()));
  check('server down: the timer keeps failing quietly', await until(() => down.stats().failures >= 2, 5000));

  // 500.
  let hits500 = 0;
  const failing = await listen((req, res) => {
    hits500 += 1;
    req.resume();
    res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":{"code":"internal"}}');
  });
  const s500 = new RollgateSignals({ baseUrl: urlOf(failing), token: 't', flushIntervalMs: 50 });
  await evaluateThrough(s500, 'five-hundred', 7);
  await s500.flush();
  check('500: flush resolves, the signals stay queued for the next try', hits500 >= 1 && s500.stats().queued === 7 && s500.stats().failures >= 1, JSON.stringify(s500.stats()));

  // A server that never answers: bounded by timeoutMs.
  const hanging = await listen(() => {});
  const slow = new RollgateSignals({ baseUrl: urlOf(hanging), token: 't', timeoutMs: 300 });
  await evaluateThrough(slow, 'hanging', 3);
  t0 = Date.now();
  await slow.flush();
  check('a hanging server: flush returns after the request timeout', Date.now() - t0 < 3000 && slow.stats().failures === 1, `${Date.now() - t0} ms ${JSON.stringify(slow.stats())}`);

  // The queue bound: 10 distinct pending signals at most; the rest are dropped and counted.
  const bounded = new RollgateSignals({ baseUrl: downUrl, token: 't', maxQueue: 10, flushIntervalMs: 60_000 });
  await evaluateThrough(bounded, 'bounded', 1); // one exposure entry
  let queuedReports = 0;
  for (let i = 0; i < 25; i += 1) if (bounded.report('f', `m${i}`, { count: 2 }, { targetingKey: 'u0' })) queuedReports += 1;
  bounded.report('f', 'm0', { count: 5 }, { targetingKey: 'u0' }); // an existing entry still aggregates
  const b = bounded.stats();
  check('queue bound: 9 reports fit beside the exposure, 16 dropped and counted (32 events)',
    queuedReports === 9 && b.pending === 10 && b.droppedQueueFull === 32 && b.queued === 1 + 9 * 2 + 5, JSON.stringify(b));
  await bounded.flush();
  check('queue bound: a failed send requeues within the bound', bounded.stats().pending === 10 && bounded.stats().queued === 24, JSON.stringify(bounded.stats()));

  // Refused for good (a wrong token, 401): dropped and counted, not retried forever.
  await admin('PUT', '/api/v1/flags/fail-flag', boolFlag('fail-flag', 100));
  const wrong = new RollgateSignals({ baseUrl: URL_BASE, token: 'not-a-token', clientReport: false });
  wrong.after({ flagKey: 'fail-flag', context: {} }, { variant: 'on', flagMetadata: {} });
  await wrong.flush();
  check('401: the batch is dropped and counted', wrong.stats().droppedRefused === 1 && wrong.stats().queued === 0 && /401/.test(wrong.stats().lastError), JSON.stringify(wrong.stats()));

  // 429 from the real server (100 signals/s, a two-second burst of 200): the second batch of
  // 150 is refused with Retry-After, and sent again no earlier than that.
  const token = await clientToken('js-429');
  const seen = observedFetch();
  const limited = new RollgateSignals({ baseUrl: URL_BASE, token, clientReport: false, flushIntervalMs: 50, fetch: seen.fetch });
  limited.after({ flagKey: 'fail-flag', context: { targetingKey: 'u' } }, { variant: 'on', flagMetadata: {} });
  for (let i = 0; i < 149; i += 1) limited.report('fail-flag', `a${i}`, {}, { targetingKey: 'u' });
  await limited.flush();
  for (let i = 0; i < 150; i += 1) limited.report('fail-flag', `b${i}`, {}, { targetingKey: 'u' });
  // The timer sends them and meets the 429; an explicit flush then waits out the Retry-After.
  check('429: the timer met the rate limit', await until(() => limited.stats().rateLimited === 1, 5000), JSON.stringify(limited.stats()));
  await limited.flush();
  const all = limited.stats().accepted === 300;
  const refused = seen.calls.find((c) => c.status === 429);
  const retry = refused && seen.calls.find((c) => c.at > refused.at && c.status === 200);
  check('429: the server rate-limited a batch', refused !== undefined && Number(refused.retryAfter) >= 1, JSON.stringify(seen.calls.map((c) => [c.status, c.retryAfter])));
  check('429: retried no earlier than Retry-After', retry !== undefined && retry.at - refused.at >= Number(refused.retryAfter) * 1000 - 20,
    retry && refused ? `${retry.at - refused.at} ms after, Retry-After ${refused.retryAfter}` : 'no retry');
  check('429: no request at all while waiting', seen.calls.filter((c) => refused && c.at > refused.at && c.at < refused.at + Number(refused.retryAfter) * 1000 - 20).length === 0);
  check('429: flush() waited out Retry-After and every signal arrived', all && (await serverTotal(token, 'fail-flag', 'on', 'b149')) === 1 && (await serverTotal(token, 'fail-flag', 'on', 'exposure')) === 1, JSON.stringify(limited.stats()));

  // Misuse never throws.
  let threw = null;
  try {
    const none = new RollgateSignals();
    none.after(null, null);
    none.error(undefined);
    none.complaint();
    none.report('f', 'm', { count: -1 });
    await none.flush();
    await none.close();
    check('bad options: the instance is inert and says why', none.stats().disabled === 'baseUrl is required');
    down.after({ flagKey: 'f', context: null }, { variant: 'on', flagMetadata: null });
    down.error({ flagKey: 'f' });
    check('a report with a bad count or value is dropped and counted',
      down.report('f', 'm', { count: 0 }) === false && down.report('f', 'm', { value: Infinity }) === false && down.report('f', 'm', { value: 1e13 }) === false);
  } catch (e) {
    threw = e;
  }
  check('misuse never throws', threw === null, threw?.stack);

  // The Node timer is unref()ed: a process that never closes its hook still exits.
  const exited = await new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e',
      `import { RollgateSignals } from '@rollgate/openfeature';
       const s = new RollgateSignals({ baseUrl: '${downUrl}', token: 't', flushIntervalMs: 50 });
       s.after({ flagKey: 'f', context: {} }, { variant: 'on', flagMetadata: { revision: 3 } });`],
    { timeout: 10_000 }, (error) => resolve(error === null));
  });
  check('a process that never closes the hook still exits by itself (timer unref)', exited);

  for (const s of [down, s500, slow, bounded, wrong, limited]) await s.close();
  failing.close();
  hanging.closeAllConnections();
  hanging.close();
  await OpenFeature.close();
}

try {
  await main();
} catch (e) {
  check('the checks ran to the end', false, e.stack ?? e);
}
finish();
