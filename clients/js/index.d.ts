// Types of @rollgate/openfeature (hand-written beside the plain ESM source; checked by
// `tsc --noEmit` against both OpenFeature SDKs in test/types.ts).
//
// The hook is typed structurally, without importing an SDK, so that it is assignable to the
// `Hook` of `@openfeature/server-sdk` and of `@openfeature/web-sdk` alike.

/** `@rollgate/openfeature/<version>`, sent as `client.sdk`. */
export declare const SDK_NAME: string;
/** This package's version. */
export declare const VERSION: string;

/** An OpenFeature evaluation context, as far as attribution needs it. */
export interface AttributionContext {
  /** The user; without it, the variant last served in this process is used. */
  targetingKey?: string;
  [attribute: string]: unknown;
}

export interface RollgateSignalsOptions {
  /** The rollgate server, e.g. `https://flags.example.com` (no path). */
  baseUrl: string;
  /** A client token (`Authorization: Bearer …`). */
  token: string;
  /** How often pending signals are sent, ms. Default 1000. */
  flushIntervalMs?: number;
  /** At most this many distinct pending signals; more are dropped and counted. Default 10,000. */
  maxQueue?: number;
  /** At most this many signals per request. Default 10,000 (the server's default bound). */
  maxBatch?: number;
  /** Users remembered for attribution (least recently evaluated evicted). Default 10,000. */
  maxUsers?: number;
  /** Send the `client` report (id, revision, applied_ms_ago, sdk) and heartbeats. Default true. */
  clientReport?: boolean;
  /** Heartbeat period when there is nothing to send, ms. Default 20,000. */
  heartbeatMs?: number;
  /** Request timeout, ms. Default 10,000. */
  timeoutMs?: number;
  /** Metric name of complaints. Default `complaint`. */
  complaintMetric?: string;
  /** Metric name of evaluation errors. Default `error`. */
  errorMetric?: string;
  /** Stable id of this client instance (1–64 of `[A-Za-z0-9._:-]`). Default: a random UUID. */
  clientId?: string;
  /** A `fetch` to use instead of the global one. */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Called (never awaited) with each sending problem; the library itself never throws. */
  onError?: (error: Error) => void;
}

/** One measurement for `report`: `count` events (default 1), each of `value` if given. */
export interface Measure {
  count?: number;
  value?: number;
}

export interface RollgateSignalsStats {
  id: string;
  /** Events waiting to be sent. */
  queued: number;
  /** Distinct pending signals (bounded by `maxQueue`). */
  pending: number;
  sentBatches: number;
  /** Signals the server accepted / rejected (unknown flag or variant). */
  accepted: number;
  rejected: number;
  droppedQueueFull: number;
  /** Complaints, reports and errors for a flag this user (or process) was never served. */
  droppedUnattributed: number;
  droppedInvalid: number;
  /** Events in batches the server refused for good (401, 400, 413, 422). */
  droppedRefused: number;
  droppedClosed: number;
  /** Evaluations whose details carried no variant. */
  noVariant: number;
  rateLimited: number;
  failures: number;
  lastError: string | null;
  /** Highest `flagMetadata.revision` seen, or null before any. */
  revision: number | null;
  /** `on`, `off` (option), or `refused` (the server does not take the `client` field). */
  clientReport: 'on' | 'off' | 'refused';
  /** Why the instance does nothing (bad options), or null. */
  disabled: string | null;
}

interface HookContextLike {
  readonly flagKey: string;
  readonly context: Readonly<AttributionContext> | Readonly<Record<string, unknown>>;
}

interface EvaluationDetailsLike {
  readonly variant?: string;
  readonly flagMetadata: Readonly<Record<string, string | number | boolean>>;
}

/**
 * An OpenFeature hook (server and web SDK) that reports exposures and errors to rollgate,
 * plus `complaint` and `report` attributed to the variant the user was served.
 *
 * @example
 * const signals = new RollgateSignals({ baseUrl, token });
 * OpenFeature.addHooks(signals);
 * signals.complaint('new-checkout', { targetingKey: 'user-42' });
 */
export declare class RollgateSignals {
  constructor(options: RollgateSignalsOptions);
  /** This instance's random id (`client.id`). */
  readonly id: string;
  /** Hook `after` stage: one exposure for the served variant. */
  after(hookContext: HookContextLike, details: EvaluationDetailsLike): void;
  /** Hook `error` stage: an `error` signal for the variant this user was last served. */
  error(hookContext: HookContextLike, error?: unknown): void;
  /** A complaint for the variant this user (or, without context, this process) was served; true when queued. */
  complaint(flagKey: string, context?: AttributionContext): boolean;
  /** `count` events of `metric` (each of `value`), attributed like a complaint; true when queued. */
  report(flagKey: string, metric: string, measure?: Measure, context?: AttributionContext): boolean;
  /** Sends everything pending; never rejects. */
  flush(): Promise<void>;
  /** Flushes once (the last batch says `client.closing: true`, so the server stops counting this client as live) and stops; never rejects. */
  close(): Promise<void>;
  /** Counters (a copy). */
  stats(): RollgateSignalsStats;
}
