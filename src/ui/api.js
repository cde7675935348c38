// The dashboard's link to the server: authenticated JSON calls and Server-Sent Event streams
// read through fetch (EventSource cannot send the Authorization header). The token lives in
// sessionStorage: gone when the tab closes, never in a URL.
import { parseSse, errorText } from './logic.js';

const KEY = 'rollgate.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A failed call: `status` and the server's words. */
export class ApiError extends Error {
  constructor(status, body) {
    super(errorText(status, body));
    this.status = status;
    this.body = body;
  }
}

/** Listeners told when the token stops working (401). */
const unauthorized = new Set();
export function onUnauthorized(f) {
  unauthorized.add(f);
}

/** Calls the API: the parsed JSON answer, or throws an ApiError with the server's message. */
export async function call(method, path, body, reason) {
  const headers = { Authorization: `Bearer ${token.get() ?? ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (reason) headers['X-Rollgate-Reason'] = reason;
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  const text = await r.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (!r.ok) {
    if (r.status === 401) for (const f of unauthorized) f();
    throw new ApiError(r.status, parsed);
  }
  return parsed;
}

export const get = (path) => call('GET', path);

/**
 * Follows an SSE endpoint until `stop()`: `onEvent({event, data, id})` per event,
 * `onState('open' | 'retrying' | 'closed', detail)` on connection changes. Reconnects after a
 * second (sending Last-Event-ID when the stream gave ids); a 401/403 ends it.
 */
export function follow(path, { onEvent, onState = () => {} }) {
  let stopped = false;
  let controller = null;
  let lastId = null;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const headers = { Authorization: `Bearer ${token.get() ?? ''}`, Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const r = await fetch(path, { headers, signal: controller.signal, cache: 'no-store' });
        if (r.status === 401 || r.status === 403) {
          onState('closed', errorText(r.status, await r.json().catch(() => null)));
          if (r.status === 401) for (const f of unauthorized) f();
          return;
        }
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        onState('open');
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          const { events, rest } = parseSse(buffer);
          buffer = rest;
          for (const e of events) {
            if (e.id) lastId = e.id;
            onEvent(e);
          }
        }
      } catch (e) {
        if (stopped) return;
        onState('retrying', e.message);
      }
      if (stopped) return;
      onState('retrying', 'the stream ended');
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  run();
  return {
    stop() {
      stopped = true;
      controller?.abort();
    },
  };
}
