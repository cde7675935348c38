// Release audiences (docs/clients.md, "Audiences"): the hook copies the `metadata.audience` of
// each OFREP answer into the signals it sends for that answer, so the server's guards compare
// an audience's new variant with that audience's own old variant. The real
// @openfeature/server-sdk + @openfeature/ofrep-provider against a real rollgate: exposures,
// complaints and reports arrive per (variant, audience), exact.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { RollgateSignals } from '@rollgate/openfeature';
import { URL_BASE, admin, boolFlag, check, clientToken, finish, observedFetch, serverTotal, tally } from './helpers.mjs';

async function main() {
  await admin('PUT', '/api/v1/segments/innovation', { key: 'innovation', when: [{ attribute: 'tier', op: 'in', values: ['innovation'] }] });
  await admin('PUT', '/api/v1/segments/seniors', { key: 'seniors', when: [{ attribute: 'age', op: 'gte', values: [60] }] });
  // Seniors stay on the old variant, the innovation tier is at 50 %, everyone else at 20 %.
  await admin('PUT', '/api/v1/flags/aud-js', {
    ...boolFlag('aud-js', 20),
    audiences: [{ segment: 'seniors', rollout: 0 }, { segment: 'innovation', rollout: 50 }],
  });
  const token = await clientToken('js-audiences');
  const seen = observedFetch();
  const signals = new RollgateSignals({ baseUrl: URL_BASE, token, flushIntervalMs: 200, fetch: seen.fetch });
  OpenFeature.addHooks(signals);
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl: URL_BASE, headers: { Authorization: `Bearer ${token}` } }));
  const client = OpenFeature.getClient();

  const expected = new Map(); // "variant/audience" → exposures
  const complaints = new Map();
  const served = new Map(); // user → "variant/audience"
  let metadataSeen = 0;
  for (let i = 0; i < 240; i += 1) {
    const ctx = { targetingKey: `user-${i}` };
    if (i % 3 === 0) ctx.tier = 'innovation';
    if (i % 8 === 0) ctx.age = 70;
    const d = await client.getBooleanDetails('aud-js', false, ctx);
    const audience = d.flagMetadata.audience ?? '';
    if (audience) metadataSeen += 1;
    const cohort = `${d.variant}/${audience}`;
    served.set(ctx.targetingKey, cohort);
    tally(expected, cohort);
  }
  for (let i = 0; i < 240; i += 5) {
    const user = `user-${i}`;
    signals.complaint('aud-js', { targetingKey: user });
    tally(complaints, served.get(user));
  }
  check('the OFREP answers name the audience that decided', metadataSeen > 0 && expected.has('on/innovation') && expected.has('off/seniors'), JSON.stringify([...expected]));
  check('no senior was served the new variant', !expected.has('on/seniors'), JSON.stringify([...expected]));
  await signals.flush();

  const sent = seen.calls.flatMap((c) => c.body.signals);
  check('signals of an audience carry it, the others carry none',
    sent.some((s) => s.audience === 'innovation') && sent.some((s) => s.audience === 'seniors') && sent.some((s) => s.audience === undefined),
    JSON.stringify(sent.slice(0, 6)));
  for (const [cohort, n] of expected) {
    const [variant, audience] = cohort.split('/');
    const got = await serverTotal(token, 'aud-js', variant, 'exposure', audience);
    check(`exposures of ${cohort} arrive exact`, got === n, `${got} != ${n}`);
  }
  for (const [cohort, n] of complaints) {
    const [variant, audience] = cohort.split('/');
    const got = await serverTotal(token, 'aud-js', variant, 'complaint', audience);
    check(`complaints of ${cohort} are attributed to the audience the user was served`, got === n, `${got} != ${n}`);
  }
  await signals.close();
  await OpenFeature.close();
  finish();
}

main().catch((e) => {
  check('the script ran to the end', false, e?.stack ?? String(e));
  finish();
});
