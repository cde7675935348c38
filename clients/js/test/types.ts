// Compiled by `tsc --noEmit -p test/tsconfig.json` (tests/api/js_client.rs): the hand-written
// types of index.d.ts fit both OpenFeature SDKs' hook interfaces and reject misuse.
import { OpenFeature as ServerFeature, type Hook as ServerHook } from '@openfeature/server-sdk';
import { OpenFeature as WebFeature, type Hook as WebHook } from '@openfeature/web-sdk';
import { RollgateSignals, SDK_NAME, type RollgateSignalsStats } from '@rollgate/openfeature';

const signals = new RollgateSignals({ baseUrl: 'http://127.0.0.1:8080', token: 'secret', flushIntervalMs: 500 });

// The same object is a hook of either SDK.
const asServerHook: ServerHook = signals;
const asWebHook: WebHook = signals;
ServerFeature.addHooks(signals);
WebFeature.addHooks(signals);
ServerFeature.getClient().addHooks(asServerHook);
WebFeature.getClient().addHooks(asWebHook);

const queued: boolean = signals.complaint('checkout', { targetingKey: 'user-1', plan: 'pro' });
const reported: boolean = signals.report('checkout', 'latency', { count: 3, value: 0.25 }, { targetingKey: 'user-1' });
signals.report('checkout', 'payment_error');
const stats: RollgateSignalsStats = signals.stats();
const mode: 'on' | 'off' | 'refused' = stats.clientReport;
const name: string = SDK_NAME;

async function shutdown(): Promise<void> {
  await signals.flush();
  await signals.close();
}

// Misuse is a compile error (if the types were `any`, these directives would be unused: an error too).
// @ts-expect-error the token is required
new RollgateSignals({ baseUrl: 'http://127.0.0.1:8080' });
// @ts-expect-error a measure's count is a number
signals.report('checkout', 'latency', { count: '3' });
// @ts-expect-error flush returns a promise of nothing
const n: number = await signals.flush();

export { queued, reported, mode, name, shutdown, n };
