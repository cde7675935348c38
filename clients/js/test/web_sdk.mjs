// The hook with the real @openfeature/web-sdk + @openfeature/ofrep-web-provider (unmodified),
// run in Node (20+ has fetch; the provider skips what needs `document`/`EventSource`), against a
// real rollgate server: synchronous evaluations from the provider's bulk cache become exact
// exposures, and a complaint WITHOUT a context goes to the variant last served in this "page".
import { OpenFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
import { RollgateSignals } from '@rollgate/openfeature';
import { URL_BASE, admin, boolFlag, check, clientToken, finish, observedFetch, serverTotal, tally } from './helpers.mjs';

async function main() {
  await admin('PUT', '/api/v1/flags/web-split', boolFlag('web-split', 50));
  const token = await clientToken('js-web');
  const seen = observedFetch();
  const signals = new RollgateSignals({ baseUrl: URL_BASE, token, flushIntervalMs: 200, fetch: seen.fetch });
  OpenFeature.addHooks(signals);
  const provider = new OFREPWebProvider({
    baseUrl: URL_BASE,
    headers: [['Authorization', `Bearer ${token}`]],
    changeDetection: 'none',
    cacheMode: 'disabled',
  });

  // Find two users served different variants (the bucketing is the server's; ask it over OFREP).
  const byVariant = new Map();
  for (let i = 0; byVariant.size < 2 && i < 200; i += 1) {
    const res = await fetch(`${URL_BASE}/ofrep/v1/evaluate/flags/web-split`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ context: { targetingKey: `web-user-${i}` } }),
    });
    const d = await res.json();
    if (!byVariant.has(d.variant)) byVariant.set(d.variant, `web-user-${i}`);
  }
  check('found a user per variant', byVariant.size === 2, JSON.stringify([...byVariant]));
  const [first, second] = [byVariant.get('on'), byVariant.get('off')];

  const expected = new Map();
  await OpenFeature.setProviderAndWait(provider, { targetingKey: first });
  const client = OpenFeature.getClient();
  for (let i = 0; i < 25; i += 1) tally(expected, client.getBooleanDetails('web-split', false).variant);
  check('the web SDK served the first user "on"', expected.get('on') === 25, JSON.stringify([...expected]));
  check('a complaint without a context goes to the variant last served ("on")', signals.complaint('web-split'));

  // The user logs out and another logs in: the page now serves "off".
  await OpenFeature.setContext({ targetingKey: second });
  for (let i = 0; i < 17; i += 1) tally(expected, client.getBooleanDetails('web-split', false).variant);
  check('after the context change the web SDK serves "off"', expected.get('off') === 17, JSON.stringify([...expected]));
  signals.complaint('web-split');
  signals.complaint('web-split');
  signals.report('web-split', 'checkout_ms', { value: 420 });
  check('a complaint without context for a flag never served is dropped', signals.complaint('web-never') === false);

  await signals.flush();
  check('exactly 25 exposures of "on" on the server', (await serverTotal(token, 'web-split', 'on', 'exposure')) === 25);
  check('exactly 17 exposures of "off" on the server', (await serverTotal(token, 'web-split', 'off', 'exposure')) === 17);
  check('1 complaint for "on" (served before the switch)', (await serverTotal(token, 'web-split', 'on', 'complaint')) === 1);
  check('2 complaints for "off" (served last)', (await serverTotal(token, 'web-split', 'off', 'complaint')) === 2);
  check('the report went to "off"', (await serverTotal(token, 'web-split', 'off', 'checkout_ms')) === 1);
  check('the web provider\'s metadata.revision reached the hook', signals.stats().revision > 0, JSON.stringify(signals.stats()));
  await signals.close();
  await OpenFeature.close();
}

try {
  await main();
} catch (e) {
  check('the checks ran to the end', false, e.stack ?? e);
}
finish();
