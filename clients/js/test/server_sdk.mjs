// The hook with the real @openfeature/server-sdk + @openfeature/ofrep-provider (unmodified)
// against a real rollgate server: exposures arrive exact per variant, complaints, reports and
// errors are attributed to the variant each user was served, and the client report carries the
// revision the evaluations carried.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { RollgateSignals, SDK_NAME } from '@rollgate/openfeature';
import { URL_BASE, admin, boolFlag, check, clientToken, finish, observedFetch, serverTotal, tally, until } from './helpers.mjs';

// Whether this server takes the `client` report (docs/clients.md). The reach part of issue 10
// adds it; until then the server answers 400 naming `client` and the hook stops sending it.
const SERVER_TAKES_CLIENT = process.env.ROLLGATE_TAKES_CLIENT_REPORT === '1';
const USERS = 300;

async function main() {
  await admin('PUT', '/api/v1/flags/sig-split', boolFlag('sig-split', 50));
  await admin('PUT', '/api/v1/flags/sig-static', boolFlag('sig-static', 100));
  const token = await clientToken('js-signals');
  const seen = observedFetch();
  const signals = new RollgateSignals({ baseUrl: URL_BASE, token, flushIntervalMs: 200, fetch: seen.fetch });
  OpenFeature.addHooks(signals);
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: URL_BASE, headers: { Authorization: `Bearer ${token}` } }));
  const client = OpenFeature.getClient();

  // N evaluations for users: the variants served, as the SDK returned them.
  const served = new Map(); // user → variant of sig-split
  const expected = new Map(); // "flag/variant" → exposures
  let maxRevision = -1;
  for (let i = 0; i < USERS; i += 1) {
    const ctx = { targetingKey: `user-${i}` };
    const d = await client.getBooleanDetails('sig-split', false, ctx);
    served.set(ctx.targetingKey, d.variant);
    tally(expected, `sig-split/${d.variant}`);
    maxRevision = Math.max(maxRevision, d.flagMetadata.revision ?? -1);
    if (i % 3 === 0) {
      const s = await client.getBooleanDetails('sig-static', false, ctx);
      tally(expected, `sig-static/${s.variant}`);
      tally(expected, `sig-static/${s.variant}`);
      await client.getBooleanValue('sig-static', false, ctx);
    }
  }
  check('both variants were served over the users', expected.has('sig-split/on') && expected.has('sig-split/off'), JSON.stringify([...expected]));
  check('the OFREP answers carry metadata.revision', maxRevision > 0, String(maxRevision));

  // Complaints for 40 users: each for the variant THAT user was served.
  const complaints = new Map();
  let allQueued = true;
  for (let i = 0; i < 40; i += 1) {
    const user = `user-${(i * 7) % USERS}`;
    allQueued = signals.complaint('sig-split', { targetingKey: user }) && allQueued;
    tally(complaints, served.get(user));
  }
  check('complaints for evaluated users are queued', allQueued);
  check('a complaint for a user never evaluated is dropped, not thrown', signals.complaint('sig-split', { targetingKey: 'stranger' }) === false && signals.stats().droppedUnattributed === 1);

  // A report with a value: 3 events of 0.25 s for user-5's variant.
  const v5 = served.get('user-5');
  check('a report with a value is queued', signals.report('sig-split', 'latency', { count: 3, value: 0.25 }, { targetingKey: 'user-5' }));
  check('an invalid metric name is dropped and counted', signals.report('sig-split', 'bad metric!', {}, { targetingKey: 'user-5' }) === false && signals.stats().droppedInvalid === 1);

  // The error stage: a boolean flag asked as a string (TYPE_MISMATCH) for user-8 → an error for user-8's variant.
  const mismatch = await client.getStringDetails('sig-split', 'x', { targetingKey: 'user-8' });
  check('a type mismatch is an evaluation error', mismatch.errorCode === 'TYPE_MISMATCH', JSON.stringify(mismatch));
  // A flag never served has no variant to attribute an error to: dropped and counted.
  await client.getBooleanDetails('sig-missing', false, { targetingKey: 'user-8' });
  check('an error for a flag never served is dropped and counted', signals.stats().droppedUnattributed === 2, JSON.stringify(signals.stats()));

  await signals.flush();

  for (const [key, n] of expected) {
    const [flag, variant] = key.split('/');
    const total = await serverTotal(token, flag, variant, 'exposure');
    check(`exactly ${n} exposures of ${flag}/${variant} on the server`, total === n, `server has ${total}`);
  }
  for (const variant of ['on', 'off']) {
    const total = await serverTotal(token, 'sig-split', variant, 'complaint');
    check(`complaints of sig-split/${variant} = those of the users served ${variant}`, total === (complaints.get(variant) ?? 0), `server ${total}, expected ${complaints.get(variant)}`);
  }
  check('the report is counted for the reporting user\'s variant', (await serverTotal(token, 'sig-split', v5, 'latency')) === 3);
  check('the report went out with its value and count', seen.calls.some((c) => c.body.signals.some((s) => s.metric === 'latency' && s.variant === v5 && s.value === 0.25 && s.count === 3)));
  const served8 = served.get('user-8');
  const other8 = served8 === 'on' ? 'off' : 'on';
  check('the error stage records one error for the variant user-8 was served',
    (await serverTotal(token, 'sig-split', served8, 'error')) === 1 && (await serverTotal(token, 'sig-split', other8, 'error')) === 0);
  check('exposures were aggregated per (flag, variant), not one signal per evaluation',
    seen.calls.every((c) => new Set(c.body.signals.filter((s) => s.metric === 'exposure').map((s) => `${s.flag}/${s.variant}`)).size === c.body.signals.filter((s) => s.metric === 'exposure').length));
  check('every request carried the client token', seen.calls.every((c) => c.headers.Authorization === `Bearer ${token}`));
  const stats = signals.stats();
  check('the server accepted every signal sent', stats.rejected === 0 && stats.droppedRefused === 0 && stats.failures === 0, JSON.stringify(stats));

  // The client report (docs/clients.md): the first request carries it, well formed.
  const first = seen.calls[0]?.body.client;
  check('the client report is sent: id, revision = highest metadata.revision, applied_ms_ago, sdk',
    first !== undefined && /^[A-Za-z0-9._:-]{1,64}$/.test(first.id) && first.id === signals.id && first.revision === maxRevision &&
      Number.isInteger(first.applied_ms_ago) && first.applied_ms_ago >= 0 && first.applied_ms_ago <= 86_400_000 &&
      first.sdk === SDK_NAME && SDK_NAME === '@rollgate/openfeature/0.1.0',
    JSON.stringify(first));
  check(SERVER_TAKES_CLIENT ? 'the server takes the client report' : 'this server refuses the client field (400) and the signals still arrived without it',
    stats.clientReport === (SERVER_TAKES_CLIENT ? 'on' : 'refused') &&
      (SERVER_TAKES_CLIENT || seen.calls.some((c) => c.status === 400 && c.body.client && seen.calls.some((d) => d.status === 200 && !d.body.client))),
    JSON.stringify(seen.calls.map((c) => [c.status, !!c.body.client])));

  // A config change raises the revision the next evaluation carries, and the hook follows it.
  await admin('PUT', '/api/v1/flags/sig-static/rollout', { percentage: 90 });
  const after = await client.getBooleanDetails('sig-static', false, { targetingKey: 'user-1' });
  check('a change raises the revision seen by the hook', after.flagMetadata.revision > maxRevision && signals.stats().revision === after.flagMetadata.revision,
    `${after.flagMetadata.revision} vs ${signals.stats().revision}`);
  if (SERVER_TAKES_CLIENT) {
    // Reach: once the hook has sent the new revision, the server counts this client as live
    // and as having applied the change.
    await signals.flush();
    const reach = await admin('GET', '/api/v1/reach?flag=sig-static');
    const change = reach.changes.find((c) => c.revision === after.flagMetadata.revision);
    check('the server counts this client as live and the change as confirmed by it',
      reach.live_clients === 1 && change !== undefined && change.live_clients === 1 && change.confirmed === 1,
      JSON.stringify(reach));
  }

  // The heartbeat: idle, with a revision known, the hook sends `{"signals": [], "client": …}`.
  const hb = observedFetch();
  const beat = new RollgateSignals({ baseUrl: URL_BASE, token, flushIntervalMs: 50, heartbeatMs: 400, fetch: hb.fetch });
  beat.after({ flagKey: 'sig-static', context: {} }, { flagMetadata: { revision: maxRevision } }); // a revision, no variant
  const beats = () => hb.calls.filter((c) => c.body.signals.length === 0 && c.body.client);
  check('idle, the hook sends a heartbeat carrying its client report',
    (await until(() => beats().length >= 1, 5000)) && beats()[0].body.client.revision === maxRevision && beat.stats().queued === 0,
    JSON.stringify(hb.calls.map((c) => c.body)));
  if (SERVER_TAKES_CLIENT) {
    const two = await until(() => beats().length >= 2, 5000);
    check('the next heartbeat follows heartbeatMs later', two && beats()[1].at - beats()[0].at >= 400, JSON.stringify(beats().map((c) => c.at)));
  } else {
    check('refused by this server, the heartbeat stops', beats()[0].status === 400 && beat.stats().clientReport === 'refused');
  }
  await beat.close();

  if (SERVER_TAKES_CLIENT) {
    // A page-hide flush is not a goodbye (a hidden page may come back): it carries the client
    // report without `closing`, and the server keeps counting the page as live.
    const page = observedFetch();
    const liveBefore = (await admin('GET', '/api/v1/reach')).live_clients;
    globalThis.document = Object.assign(new EventTarget(), { visibilityState: 'visible' });
    globalThis.window = new EventTarget();
    const hidden = new RollgateSignals({ baseUrl: URL_BASE, token, flushIntervalMs: 60_000, fetch: page.fetch });
    hidden.after({ flagKey: 'sig-static', context: {} }, { variant: 'on', flagMetadata: { revision: maxRevision } });
    globalThis.document.visibilityState = 'hidden';
    globalThis.document.dispatchEvent(new Event('visibilitychange'));
    const hideSent = await until(() => page.calls.some((c) => c.status === 200), 5000);
    delete globalThis.window;
    delete globalThis.document;
    const liveHidden = (await admin('GET', '/api/v1/reach')).live_clients;
    check('a page-hide flush sends the client report without closing, and the page still counts as live',
      hideSent && page.calls.length === 1 && page.calls[0].body.client?.id === hidden.id && page.calls[0].body.client.closing === undefined &&
        liveHidden === liveBefore + 1,
      JSON.stringify({ liveBefore, liveHidden, calls: page.calls.map((c) => [c.status, c.body]) }));
    await hidden.close();

    // close() with nothing queued: the last batch is empty and says `closing: true`, and the
    // server stops counting this hook as live at once (not 60 s later).
    await signals.flush();
    const sentBefore = seen.calls.length;
    const live = (await admin('GET', '/api/v1/reach')).live_clients;
    check('before close, the server counts this hook as live', live >= 1 && seen.calls.every((c) => c.body.client?.closing === undefined),
      JSON.stringify({ live, closing: seen.calls.filter((c) => c.body.client?.closing !== undefined).map((c) => c.body) }));
    await signals.close();
    const last = seen.calls[seen.calls.length - 1];
    check('close() sends one last, empty batch whose client report says closing: true',
      seen.calls.length === sentBefore + 1 && last.status === 200 && last.body.signals.length === 0 &&
        last.body.client?.id === signals.id && last.body.client.closing === true,
      JSON.stringify(seen.calls.slice(sentBefore).map((c) => [c.status, c.body])));
    const liveAfter = (await admin('GET', '/api/v1/reach')).live_clients;
    check('after close(), the server counts one live client fewer', liveAfter === live - 1, `${live} before close, ${liveAfter} after`);
  } else {
    await signals.close();
  }
  await OpenFeature.close();
  const calls = seen.calls.length;
  check('after close, an evaluation is not sent (timer stopped)', signals.after({ flagKey: 'sig-static', context: {} }, { variant: 'on', flagMetadata: {} }) === undefined && signals.stats().droppedClosed === 1 && seen.calls.length === calls);
}

try {
  await main();
} catch (e) {
  check('the checks ran to the end', false, e.stack ?? e);
}
finish();
