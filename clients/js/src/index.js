// @rollgate/openfeature: an OpenFeature hook that reports what the app served and what went
// wrong to rollgate's `POST /api/v1/signals`, attributed to the variant each user was served.
//
// Invariants (docs/clients.md is the wire protocol):
// - Nothing here ever throws into the app or leaves a rejected promise behind: every public
//   method catches, every background promise is caught. Problems are counted in `stats()`.
// - Memory is bounded: at most `maxQueue` distinct pending signals (then new ones are dropped
//   and counted) and at most `maxUsers` users in the attribution map (least recent evicted).
// - The hook's `after` stage does a few Map operations and no I/O, so it adds well under 5 µs
//   to an evaluation (bench/hooks/js.mjs).
// - The flush timer is `unref()`ed in Node: it never keeps a process alive.

export const VERSION = '0.1.0';
export const SDK_NAME = `@rollgate/openfeature/${VERSION}`;

// The server's bounds (docs/api.md, Signals): a larger count is split, never refused.
const MAX_COUNT = 1_000_000;
const MAX_BATCH_COUNT = 100_000_000;
const MAX_ABS_VALUE = 1e12;
const MAX_APPLIED_MS_AGO = 86_400_000;
const METRIC = /^[A-Za-z0-9_.:-]{1,64}$/;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_BACKOFF_MS = 30_000;
const MAX_RETRY_AFTER_MS = 300_000;
// Browsers cap the bodies of all in-flight keepalive requests of a page at 64 KiB.
const KEEPALIVE_BODY = 60_000;
const SEP = '\u0000';
// A release audience is named by its segment key (docs/clients.md).
const AUDIENCE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

const DEFAULTS = {
  flushIntervalMs: 1000,
  heartbeatMs: 20_000,
  maxQueue: 10_000,
  maxBatch: 10_000,
  maxUsers: 10_000,
  timeoutMs: 10_000,
  clientReport: true,
  complaintMetric: 'complaint',
  errorMetric: 'error',
};

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i += 1) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

function positiveInt(v, fallback) {
  return Number.isSafeInteger(v) && v > 0 ? v : fallback;
}

/** Seconds of a `Retry-After` header (delta-seconds or an HTTP date), in ms; 1 s when absent. */
function retryAfterMs(header, now) {
  if (header) {
    const s = Number(header);
    if (Number.isFinite(s) && s >= 0) return Math.min(s * 1000, MAX_RETRY_AFTER_MS);
    const at = Date.parse(header);
    if (Number.isFinite(at)) return Math.min(Math.max(at - now, 0), MAX_RETRY_AFTER_MS);
  }
  return 1000;
}

/** The attribution key of a served variant: `variant`, or `variant\0audience`. */
function served(variant, audience) {
  return typeof audience === 'string' && AUDIENCE.test(audience) ? variant + SEP + audience : variant;
}

export class RollgateSignals {
  constructor(options) {
    const o = { ...DEFAULTS, ...(options && typeof options === 'object' ? options : {}) };
    this._fetch = typeof o.fetch === 'function' ? o.fetch : globalThis.fetch;
    this._token = typeof o.token === 'string' ? o.token : '';
    this._url = typeof o.baseUrl === 'string' ? `${o.baseUrl.replace(/\/+$/, '')}/api/v1/signals` : '';
    this._flushIntervalMs = positiveInt(o.flushIntervalMs, DEFAULTS.flushIntervalMs);
    this._heartbeatMs = positiveInt(o.heartbeatMs, DEFAULTS.heartbeatMs);
    this._maxQueue = positiveInt(o.maxQueue, DEFAULTS.maxQueue);
    this._maxBatch = positiveInt(o.maxBatch, DEFAULTS.maxBatch);
    this._maxUsers = positiveInt(o.maxUsers, DEFAULTS.maxUsers);
    this._timeoutMs = positiveInt(o.timeoutMs, DEFAULTS.timeoutMs);
    this._complaintMetric = METRIC.test(o.complaintMetric) ? o.complaintMetric : DEFAULTS.complaintMetric;
    this._errorMetric = METRIC.test(o.errorMetric) ? o.errorMetric : DEFAULTS.errorMetric;
    this._onError = typeof o.onError === 'function' ? o.onError : null;
    this.id = typeof o.clientId === 'string' && CLIENT_ID.test(o.clientId) ? o.clientId : randomId();

    // Pending signals. Exposures: flag → variant → count (the hot path: two Map lookups).
    this._exposures = new Map();
    // Other metrics: "flag\0variant\0metric\0value" → {flag, variant, metric, count, value}.
    this._metrics = new Map();
    this._pending = 0; // distinct entries in both maps, bounded by maxQueue
    // Attribution: targetingKey → Map(flag → variant), least recently evaluated first.
    this._users = new Map();
    this._lastUser = undefined;
    // Without a targeting key: the variant last served in this process, per flag.
    this._last = new Map();

    this._revision = -1;
    this._appliedAt = 0;
    this._clientReport = o.clientReport === false ? 'off' : 'on';
    this._lastSentAt = 0;
    this._pausedUntil = 0;
    this._rateLimitedUntil = 0;
    this._backoffMs = 0;
    this._inflight = null;
    this._closed = false;
    this._stats = {
      sentBatches: 0,
      accepted: 0,
      rejected: 0,
      droppedQueueFull: 0,
      droppedUnattributed: 0,
      droppedInvalid: 0,
      droppedRefused: 0,
      droppedClosed: 0,
      noVariant: 0,
      rateLimited: 0,
      failures: 0,
      lastError: null,
    };

    this._disabled = null;
    if (!this._url) this._disabled = 'baseUrl is required';
    else if (!this._token) this._disabled = 'token is required';
    else if (typeof this._fetch !== 'function') this._disabled = 'no fetch available';
    if (this._disabled) {
      this._warn(`@rollgate/openfeature: signals disabled: ${this._disabled}`);
      return;
    }

    this._timer = setInterval(() => this._tick(), this._flushIntervalMs);
    if (typeof this._timer === 'object' && typeof this._timer.unref === 'function') this._timer.unref();

    // Browsers: flush on page hide with `fetch(…, {keepalive: true})`, which (unlike
    // sendBeacon) can carry the Authorization header the server requires.
    const w = globalThis.window;
    if (w && typeof w.addEventListener === 'function' && globalThis.document) {
      this._onHide = () => {
        if (globalThis.document.visibilityState === undefined || globalThis.document.visibilityState === 'hidden') {
          this._background(this._send(true));
        }
      };
      w.addEventListener('pagehide', this._onHide);
      globalThis.document.addEventListener('visibilitychange', this._onHide);
    }
  }

  // --- OpenFeature hook stages -------------------------------------------------------------

  /** `after` stage: one exposure for the served variant; remembers who got what. */
  after(hookContext, details) {
    try {
      const flag = hookContext.flagKey;
      const metadata = details.flagMetadata;
      const revision = metadata && metadata.revision;
      if (typeof revision === 'number' && revision > this._revision && Number.isSafeInteger(revision)) {
        this._revision = revision;
        this._appliedAt = Date.now();
      }
      if (typeof details.variant !== 'string' || typeof flag !== 'string') {
        this._stats.noVariant += 1;
        return;
      }
      // What the user was served: the variant, and the release audience that decided it
      // (`metadata.audience`, docs/clients.md), so guards compare like with like.
      const variant = served(details.variant, metadata && metadata.audience);
      this._remember(flag, variant, hookContext.context);
      if (this._closed) {
        this._stats.droppedClosed += 1;
        return;
      }
      let byVariant = this._exposures.get(flag);
      if (byVariant === undefined) {
        byVariant = new Map();
        this._exposures.set(flag, byVariant);
      }
      const count = byVariant.get(variant);
      if (count !== undefined) {
        byVariant.set(variant, count + 1);
      } else if (this._pending < this._maxQueue) {
        byVariant.set(variant, 1);
        this._pending += 1;
      } else {
        this._stats.droppedQueueFull += 1;
      }
    } catch {
      // never into the app
    }
  }

  /**
   * `error` stage: an `error` signal. The error stage carries no variant, so the error is
   * attributed like a complaint: to the variant this user (or, without a targeting key, this
   * process) was last served for the flag; a flag never served is dropped and counted.
   */
  error(hookContext) {
    try {
      this._attributed(hookContext.flagKey, this._errorMetric, 1, undefined, hookContext.context);
    } catch {
      // never into the app
    }
  }

  // --- App API -------------------------------------------------------------------------------

  /** A complaint about `flagKey`, for the variant this user was served. True when queued. */
  complaint(flagKey, context) {
    try {
      return this._attributed(flagKey, this._complaintMetric, 1, undefined, context);
    } catch {
      return false;
    }
  }

  /** `count` events of `metric` (each of `value`, if given), for the variant this user was served. */
  report(flagKey, metric, measure, context) {
    try {
      const m = measure && typeof measure === 'object' ? measure : {};
      const count = m.count === undefined ? 1 : m.count;
      const value = m.value;
      if (
        typeof metric !== 'string' ||
        !METRIC.test(metric) ||
        !Number.isSafeInteger(count) ||
        count < 1 ||
        (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || Math.abs(value) > MAX_ABS_VALUE))
      ) {
        this._stats.droppedInvalid += 1;
        return false;
      }
      return this._attributed(flagKey, metric, count, value, context);
    } catch {
      return false;
    }
  }

  /** Sends everything pending now. Resolves when done; never rejects. Waits out a 429's Retry-After. */
  flush() {
    if (this._disabled) return Promise.resolve();
    return this._guard(this._send(false, true));
  }

  /**
   * Flushes once, then stops the timer and the page-hide listener. Never rejects. The last batch
   * says `client.closing: true` (even an empty one, once a revision is known), so the server
   * stops counting this client as live at once (docs/clients.md).
   */
  close() {
    if (this._disabled || this._closed) return Promise.resolve();
    this._closed = true;
    clearInterval(this._timer);
    const w = globalThis.window;
    if (this._onHide && w) {
      w.removeEventListener('pagehide', this._onHide);
      globalThis.document.removeEventListener('visibilitychange', this._onHide);
    }
    return this._guard(this._send(false, true, true));
  }

  /** Counters for observability (and tests). A copy; never throws. */
  stats() {
    let queued = 0;
    for (const byVariant of this._exposures.values()) for (const c of byVariant.values()) queued += c;
    for (const e of this._metrics.values()) queued += e.count;
    return {
      ...this._stats,
      id: this.id,
      queued,
      pending: this._pending,
      revision: this._revision >= 0 ? this._revision : null,
      clientReport: this._clientReport,
      disabled: this._disabled,
    };
  }

  // --- Attribution ---------------------------------------------------------------------------

  _remember(flag, variant, context) {
    this._last.set(flag, variant);
    const key = context && context.targetingKey;
    if (typeof key !== 'string' || key === '') return;
    let flags = this._users.get(key);
    if (flags === undefined) {
      flags = new Map();
      this._users.set(key, flags);
      if (this._users.size > this._maxUsers) this._users.delete(this._users.keys().next().value);
    } else if (this._lastUser !== key) {
      // Most recent last (Map keeps insertion order): an LRU in two operations.
      this._users.delete(key);
      this._users.set(key, flags);
    }
    this._lastUser = key;
    flags.set(flag, variant);
  }

  _variantFor(flag, context) {
    const key = context && typeof context === 'object' ? context.targetingKey : undefined;
    if (typeof key === 'string' && key !== '') {
      const flags = this._users.get(key);
      return flags && flags.get(flag);
    }
    return this._last.get(flag);
  }

  _attributed(flag, metric, count, value, context) {
    if (typeof flag !== 'string') {
      this._stats.droppedInvalid += 1;
      return false;
    }
    const variant = this._variantFor(flag, context);
    if (variant === undefined) {
      this._stats.droppedUnattributed += 1;
      return false;
    }
    if (this._closed) {
      this._stats.droppedClosed += 1;
      return false;
    }
    return this._addMetric(flag, variant, metric, count, value);
  }

  // --- Queue ---------------------------------------------------------------------------------

  _addMetric(flag, variant, metric, count, value) {
    const key = flag + SEP + variant + SEP + metric + SEP + (value === undefined ? '' : value);
    const e = this._metrics.get(key);
    if (e !== undefined) {
      e.count += count;
      return true;
    }
    if (this._pending >= this._maxQueue) {
      this._stats.droppedQueueFull += count;
      return false;
    }
    this._metrics.set(key, { flag, variant, metric, count, value });
    this._pending += 1;
    return true;
  }

  _addExposures(flag, variant, count) {
    let byVariant = this._exposures.get(flag);
    if (byVariant === undefined) {
      byVariant = new Map();
      this._exposures.set(flag, byVariant);
    }
    const c = byVariant.get(variant);
    if (c !== undefined) {
      byVariant.set(variant, c + count);
    } else if (this._pending < this._maxQueue) {
      byVariant.set(variant, count);
      this._pending += 1;
    } else {
      this._stats.droppedQueueFull += count;
    }
  }

  /** Takes everything pending as wire signals (counts split at the server's per-signal bound). */
  _drain() {
    const out = [];
    if (this._pending === 0) return out;
    const push = (flag, servedAs, metric, count, value) => {
      const cut = servedAs.indexOf(SEP);
      const variant = cut < 0 ? servedAs : servedAs.slice(0, cut);
      for (let left = count; left > 0; left -= MAX_COUNT) {
        const s = { flag, variant, metric, count: Math.min(left, MAX_COUNT) };
        if (cut >= 0) s.audience = servedAs.slice(cut + 1);
        if (value !== undefined) s.value = value;
        out.push(s);
      }
    };
    for (const [flag, byVariant] of this._exposures) {
      for (const [variant, count] of byVariant) push(flag, variant, 'exposure', count);
    }
    for (const e of this._metrics.values()) push(e.flag, e.variant, e.metric, e.count, e.value);
    this._exposures = new Map();
    this._metrics = new Map();
    this._pending = 0;
    return out;
  }

  /** Puts unsent signals back (a failed or rate-limited send); the queue bound still holds. */
  _requeue(signals) {
    for (const s of signals) {
      const variant = served(s.variant, s.audience);
      if (s.metric === 'exposure' && s.value === undefined) this._addExposures(s.flag, variant, s.count);
      else this._addMetric(s.flag, variant, s.metric, s.count, s.value);
    }
  }

  /** Splits signals into batches within `maxBatch` signals and the per-batch count bound. */
  _batches(signals, keepalive) {
    const batches = [];
    let current = [];
    let total = 0;
    let bytes = 0;
    for (const s of signals) {
      const size = keepalive ? JSON.stringify(s).length + 1 : 0;
      if (
        current.length > 0 &&
        (current.length >= this._maxBatch || total + s.count > MAX_BATCH_COUNT || bytes + size > KEEPALIVE_BODY)
      ) {
        batches.push(current);
        current = [];
        total = 0;
        bytes = 0;
      }
      current.push(s);
      total += s.count;
      bytes += size;
    }
    if (current.length > 0) batches.push(current);
    return batches;
  }

  // --- Sending -------------------------------------------------------------------------------

  _clientObject(now, closing) {
    if (this._clientReport !== 'on' || this._revision < 0) return undefined;
    const ago = Math.min(Math.max(Math.round(now - this._appliedAt), 0), MAX_APPLIED_MS_AGO);
    const client = { id: this.id, revision: this._revision, applied_ms_ago: ago, sdk: SDK_NAME };
    if (closing) client.closing = true;
    return client;
  }

  _tick() {
    if (this._inflight || Date.now() < this._pausedUntil) return;
    this._background(this._send(false, false));
  }

  _background(promise) {
    promise.catch(() => {});
  }

  _guard(promise) {
    return promise.then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * One send of everything pending, after any send in flight (sends never overlap). `wait`:
   * an explicit flush waits out a 429's Retry-After instead of leaving the signals queued.
   * `closing`: the last send of `close()` (never a page-hide flush: a hidden page may return).
   */
  _send(keepalive, wait = false, closing = false) {
    const run = async () => {
      if (wait) {
        // Only a 429 is waited out (it says when); a failing server is tried once right away.
        const pause = Math.min(this._rateLimitedUntil - Date.now(), this._timeoutMs);
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
      await this._sendPending(keepalive, closing);
    };
    const previous = this._inflight || Promise.resolve();
    const next = previous.then(run, run).catch((e) => this._failed(e));
    this._inflight = next;
    next.then(() => {
      if (this._inflight === next) this._inflight = null;
    });
    return next;
  }

  async _sendPending(keepalive, closing) {
    const now = Date.now();
    const signals = this._drain();
    if (signals.length === 0) {
      // The heartbeat: nothing to report, but the server should know this client is alive.
      // On close, the same empty batch says this client is gone (no heartbeat wait).
      if (this._clientObject(now) === undefined) return;
      if (!closing && now - this._lastSentAt < this._heartbeatMs) return;
      await this._post([], keepalive, closing);
      return;
    }
    const batches = this._batches(signals, keepalive);
    for (let i = 0; i < batches.length; i += 1) {
      let outcome;
      try {
        // Only the last batch says closing: the client is gone once the server has it.
        outcome = await this._post(batches[i], keepalive, closing && i === batches.length - 1);
      } catch (e) {
        // e.g. a custom `fetch` answering something that is not a Response: keep the signals.
        outcome = this._retryLater(`signals: ${e && e.message ? e.message : e}`);
      }
      if (outcome === 'retry') {
        for (let j = i; j < batches.length; j += 1) this._requeue(batches[j]);
        return;
      }
    }
  }

  /** Posts one batch: 'done' (sent, or refused for good and counted) or 'retry' (requeue it). */
  async _post(batch, keepalive, closing = false) {
    const now = Date.now();
    const client = this._clientObject(now, closing);
    const body = client === undefined ? { signals: batch } : { signals: batch, client };
    let res;
    try {
      const init = {
        method: 'POST',
        headers: { Authorization: `Bearer ${this._token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        keepalive,
      };
      if (!keepalive && typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function') {
        init.signal = AbortSignal.timeout(this._timeoutMs);
      }
      res = await this._fetch(this._url, init);
    } catch (e) {
      return this._retryLater(`signals: ${e && e.message ? e.message : e}`);
    }
    let text = '';
    try {
      text = await res.text();
    } catch {
      // the status is enough
    }
    if (res.ok) {
      this._lastSentAt = Date.now();
      this._backoffMs = 0;
      this._stats.sentBatches += 1;
      try {
        const report = JSON.parse(text);
        this._stats.accepted += Number(report.accepted) || 0;
        this._stats.rejected += Number(report.rejected) || 0;
      } catch {
        this._stats.accepted += batch.length;
      }
      return 'done';
    }
    if (res.status === 429) {
      this._stats.rateLimited += 1;
      this._pausedUntil = Date.now() + retryAfterMs(res.headers.get('retry-after'), Date.now());
      this._rateLimitedUntil = this._pausedUntil;
      this._stats.lastError = `signals: 429, retry after ${this._pausedUntil - Date.now()} ms`;
      return 'retry';
    }
    if (res.status >= 500 || res.status === 408) {
      return this._retryLater(`signals: HTTP ${res.status}`);
    }
    // A server without the client report refuses the unknown `client` field (400 naming it):
    // stop sending the report and send the signals again, so an older server still gets them.
    if (res.status === 400 && client !== undefined && /"field"\s*:\s*"client/.test(text)) {
      this._clientReport = 'refused';
      return this._post(batch, keepalive, closing);
    }
    // Any other refusal (401, 403, 400, 413, 422) will not change by retrying.
    this._stats.droppedRefused += batch.reduce((n, s) => n + s.count, 0);
    this._report(`signals: HTTP ${res.status} ${text.slice(0, 200)}`);
    return 'done';
  }

  _retryLater(message) {
    this._stats.failures += 1;
    this._backoffMs = Math.min(Math.max(this._backoffMs * 2, this._flushIntervalMs), MAX_BACKOFF_MS);
    this._pausedUntil = Date.now() + this._backoffMs;
    this._report(message);
    return 'retry';
  }

  _failed(e) {
    this._report(`signals: ${e && e.message ? e.message : e}`);
  }

  _report(message) {
    this._stats.lastError = message;
    if (this._onError) {
      try {
        this._onError(new Error(message));
      } catch {
        // the app's callback must not break the sender either
      }
    }
  }

  _warn(message) {
    try {
      if (globalThis.console && typeof console.warn === 'function') console.warn(message);
    } catch {
      // nothing
    }
  }
}
