"""``RollgateSignalsHook``: an OpenFeature hook that reports signals to rollgate.

Invariants:

* Nothing raises into the app after construction. Every hook stage, ``complaint``,
  ``report``, ``flush`` and ``close`` catches what it could raise and counts it.
* The evaluation path (``after``, ``error``) takes one lock for a few dict operations and
  never does I/O. Sending happens on a daemon thread, or in the caller of ``flush``/``close``,
  one sender at a time (``_send_lock``), never while holding ``_lock``.
* Memory is bounded: at most ``max_queue`` queued series (a new series beyond that is dropped
  and counted in ``dropped``; more events for a queued series only add to its count) and at
  most ``recent_users`` remembered (targeting key, flag) → variant entries (least recently
  served evicted first).
* Exposures and unvalued metrics are aggregated per (flag, variant, metric); a report with a
  ``value`` is its own signal. A batch that got no answer or a 5xx is put back (within the
  bound) and retried with backoff; a 429 is retried after its ``Retry-After``; any other
  refusal drops the batch and counts it.
* ``close`` sends the last batch: its ``client`` report says ``"closing": true`` (an empty
  batch when nothing is queued) so the server stops counting this client as live at once.
  Nothing is sent after it (``_send`` checks ``_closed`` under ``_send_lock``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from openfeature.evaluation_context import EvaluationContext
from openfeature.hook import Hook

from . import _wire
from ._version import __version__

logger = logging.getLogger("rollgate_openfeature")

EXPOSURE = "exposure"
ERROR = "error"
COMPLAINT = "complaint"
SDK = f"rollgate-openfeature-python/{__version__}"
#: ``applied_ms_ago`` is bounded by the server to one day.
MAX_APPLIED_MS_AGO = 86_400_000
#: The longest pause between two attempts after failures (exponential backoff up to this).
MAX_BACKOFF = 30.0

_COUNTERS = (
    "dropped",
    "unattributed",
    "invalid",
    "sent_batches",
    "sent_signals",
    "failed_batches",
    "rate_limited",
    "rejected_signals",
    "heartbeats",
    "client_reports_refused",
    "internal_errors",
)


class RollgateSignalsHook(Hook):
    """Reports what OpenFeature evaluations served, and what users met, to rollgate.

    Register it on the API or a client (``api.add_hooks([hook])``); every successful
    evaluation is counted as an ``exposure`` of the served variant, every failed one as an
    ``error`` of the variant that user was last served. ``complaint`` and ``report`` attribute
    app-side events to the variant the user was served. Batches go to
    ``POST {base_url}/api/v1/signals`` every ``flush_interval`` seconds.

    Only the constructor raises (``ValueError`` for a bad argument); afterwards no method
    raises into the app.

    :param base_url: the rollgate server, e.g. ``http://rollgate:8080``
    :param token: a ``client`` token
    :param flush_interval: seconds between batches (default 1)
    :param max_queue: queued series at most; beyond it new series are dropped and counted
    :param max_batch: signals per request at most (the server takes up to 10,000)
    :param recent_users: (targeting key, flag) → variant entries remembered for attribution
    :param request_timeout: seconds one request may take
    :param report_client: send the ``client`` report of docs/clients.md (id, revision,
        applied_ms_ago, sdk) with each batch, and a heartbeat when idle
    :param heartbeat_interval: seconds between heartbeats when there is nothing to send
    :param close_timeout: what ``close`` waits at most when the interpreter exits
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        flush_interval: float = 1.0,
        *,
        max_queue: int = 10_000,
        max_batch: int = 1_000,
        recent_users: int = 10_000,
        request_timeout: float = 5.0,
        report_client: bool = True,
        heartbeat_interval: float = 20.0,
        close_timeout: float = 2.0,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise ValueError("base_url must be a non-empty URL such as http://rollgate:8080")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty rollgate client token")
        for name, v in (
            ("flush_interval", flush_interval),
            ("request_timeout", request_timeout),
            ("heartbeat_interval", heartbeat_interval),
            ("close_timeout", close_timeout),
        ):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
        for name, n in (("max_queue", max_queue), ("max_batch", max_batch), ("recent_users", recent_users)):
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"{name} must be a positive integer, got {n!r}")

        self._url = base_url.rstrip("/") + "/api/v1/signals"
        self._token = token
        self._interval = float(flush_interval)
        self._max_queue = max_queue
        self._max_batch = min(max_batch, 10_000)
        self._recent_cap = recent_users
        self._request_timeout = float(request_timeout)
        self._report_client = bool(report_client)
        self._heartbeat_interval = float(heartbeat_interval)
        self._close_timeout = float(close_timeout)
        self._init_state()
        self._start_thread()
        me = weakref.ref(self)
        atexit.register(_close_at_exit, me)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: _restart_in_child(me))

    # --- state -------------------------------------------------------------------------

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._counts: Dict[_wire.SeriesKey, int] = {}
        self._valued: List[_wire.Valued] = []
        self._recent: "OrderedDict[Tuple[str, str], str]" = OrderedDict()
        self._last: Dict[str, str] = {}
        self._revision: Optional[int] = None
        self._revision_at = 0.0
        self._client_id = uuid.uuid4().hex
        self._client_refused = False
        self._last_sent_at = time.monotonic()
        self._not_before = 0.0
        self._failures = 0
        self._stats = dict.fromkeys(_COUNTERS, 0)

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=_run, args=(weakref.ref(self), self._wake), name="rollgate-signals", daemon=True
        )
        self._thread.start()

    # --- OpenFeature hook stages (the evaluation path) ----------------------------------

    def after(self, hook_context: Any, details: Any, hints: Any) -> None:
        """Counts an exposure of the served variant and remembers who was served what."""
        try:
            variant = details.variant
            flag = hook_context.flag_key
            if not isinstance(variant, str) or not isinstance(flag, str):
                with self._lock:
                    self._stats["unattributed"] += 1
                return
            ctx = hook_context.evaluation_context
            key = ctx.targeting_key if ctx is not None else None
            meta = details.flag_metadata
            revision = meta.get("revision") if meta else None
            # The release audience that decided (docs/clients.md): guards compare like with like.
            variant = _wire.served(variant, meta.get("audience") if meta else None)
            series = (flag, variant, EXPOSURE)
            with self._lock:
                n = self._counts.get(series)
                if n is not None:
                    self._counts[series] = n + 1
                elif len(self._counts) + len(self._valued) < self._max_queue:
                    self._counts[series] = 1
                else:
                    self._stats["dropped"] += 1
                if key is not None:
                    rk = (key, flag)
                    self._recent[rk] = variant
                    self._recent.move_to_end(rk)
                    if len(self._recent) > self._recent_cap:
                        self._recent.popitem(last=False)
                self._last[flag] = variant
                if (
                    type(revision) is int
                    and revision >= 0
                    and (self._revision is None or revision > self._revision)
                ):
                    self._revision = revision
                    self._revision_at = time.monotonic()
        except Exception:  # noqa: BLE001 - never fail an evaluation because of signals
            self._internal_error("after")

    def error(self, hook_context: Any, exception: Exception, hints: Any) -> None:
        """Counts an ``error`` for the variant this user was last served (see the README)."""
        try:
            self._record(hook_context.flag_key, ERROR, 1, None, hook_context.evaluation_context)
        except Exception:  # noqa: BLE001
            self._internal_error("error")

    # --- app-side events ----------------------------------------------------------------

    def complaint(self, flag_key: str, context: Optional[EvaluationContext] = None) -> bool:
        """Records one ``complaint`` against the variant the user was served.

        The user is ``context.targeting_key``; without a context (or targeting key), the
        variant last served in this process. Returns False (and counts it in
        ``unattributed``) when no variant is known; never raises.
        """
        try:
            return self._record(flag_key, COMPLAINT, 1, None, context)
        except Exception:  # noqa: BLE001
            self._internal_error("complaint")
            return False

    def report(
        self,
        flag_key: str,
        metric: str,
        count: Optional[int] = None,
        value: Optional[float] = None,
        context: Optional[EvaluationContext] = None,
    ) -> bool:
        """Records ``count`` events (default 1) of ``metric``, each with ``value`` if given.

        Attribution as for :meth:`complaint`. An invalid metric (1 to 64 of
        ``[A-Za-z0-9_.:-]``), count (an integer ≥ 1) or value (finite, within ±10¹²) is not
        queued: counted in ``invalid`` and False is returned; never raises.
        """
        try:
            n = 1 if count is None else count
            ok = _wire.valid_metric(metric) and type(n) is int and n >= 1
            if value is not None:
                ok = ok and (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and abs(value) <= _wire.MAX_ABS_VALUE
                )
            if not ok:
                with self._lock:
                    self._stats["invalid"] += 1
                return False
            return self._record(flag_key, metric, n, None if value is None else float(value), context)
        except Exception:  # noqa: BLE001
            self._internal_error("report")
            return False

    def _record(
        self, flag: Any, metric: str, count: int, value: Optional[float], context: Any
    ) -> bool:
        key = getattr(context, "targeting_key", None) if context is not None else None
        with self._lock:
            variant = None
            if isinstance(flag, str):
                if key is not None:
                    variant = self._recent.get((key, flag))
                else:
                    variant = self._last.get(flag)
            if variant is None:
                self._stats["unattributed"] += 1
                return False
            queued = len(self._counts) + len(self._valued)
            if value is None:
                series = (flag, variant, metric)
                n = self._counts.get(series)
                if n is not None:
                    self._counts[series] = n + count
                    return True
                if queued < self._max_queue:
                    self._counts[series] = count
                    return True
            elif queued < self._max_queue:
                self._valued.append((flag, variant, metric, count, value))
                return True
            self._stats["dropped"] += count
            return False

    # --- observing ----------------------------------------------------------------------

    def stats(self) -> Dict[str, int]:
        """A snapshot of the counters, plus ``queued`` (series waiting to be sent).

        ``dropped``: events not sent (queue full, batch refused, left at close);
        ``unattributed``: complaints/reports/errors without a known variant;
        ``invalid``: reports with a bad metric, count or value; ``sent_batches`` /
        ``sent_signals``: accepted requests and their signals; ``failed_batches``: requests that
        got no answer, a 5xx or another refusal; ``rate_limited``: 429 answers;
        ``rejected_signals``: signals the server did not apply (unknown flag or variant);
        ``heartbeats``: requests sent with no signals; ``client_reports_refused``: servers
        that refused the ``client`` report; ``internal_errors``: bugs caught in the hook.
        """
        with self._lock:
            out = dict(self._stats)
            out["queued"] = len(self._counts) + len(self._valued)
        return out

    @property
    def dropped(self) -> int:
        """Events that will never be sent (see :meth:`stats`)."""
        return self.stats()["dropped"]

    @property
    def sent_batches(self) -> int:
        """Requests the server accepted."""
        return self.stats()["sent_batches"]

    @property
    def failed_batches(self) -> int:
        """Requests that failed (no answer, 5xx, or a refusal other than 429)."""
        return self.stats()["failed_batches"]

    @property
    def client_id(self) -> str:
        """The random id of this hook instance in the ``client`` report."""
        return self._client_id

    @property
    def revision(self) -> Optional[int]:
        """The highest ``flag_metadata["revision"]`` seen in an evaluation, if any."""
        with self._lock:
            return self._revision

    # --- sending ------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Sends what is queued now, waiting at most ``timeout`` seconds; never raises.

        Returns True when everything queued was accepted. What could not be sent (server
        down, a 429 longer than the time left) stays queued for the background thread.
        """
        try:
            return self._flush(time.monotonic() + max(float(timeout), 0.0), wait_rate_limit=True)
        except Exception:  # noqa: BLE001
            self._internal_error("flush")
            return False

    def close(self, timeout: float = 5.0) -> bool:
        """Flushes once, then stops the background thread; returns within ``timeout``.

        The last batch carries the client report with ``"closing": true`` (an empty batch
        when nothing is queued, once a revision is known), so the server stops counting this
        hook as a live client at once. Returns True when everything queued, and that report,
        was accepted; what is left is counted in ``dropped``. Evaluations after ``close`` are
        still counted but never sent (nor is anything by ``flush``). Idempotent; never raises.
        """
        try:
            deadline = time.monotonic() + max(float(timeout), 0.0)
            with self._lock:
                if self._closed:
                    return True
                self._closed = True
            self._wake.set()
            done = self._flush(deadline, wait_rate_limit=True, closing=True)
            if not done:
                with self._lock:
                    left = sum(self._counts.values()) + sum(v[3] for v in self._valued)
                    self._counts, self._valued = {}, []
                    self._stats["dropped"] += left
            self._thread.join(max(deadline - time.monotonic(), 0.0))
            return done
        except Exception:  # noqa: BLE001
            self._internal_error("close")
            return False

    def _flush(self, deadline: float, wait_rate_limit: bool, closing: bool = False) -> bool:
        if not self._send_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        try:
            return self._send(deadline, wait_rate_limit, heartbeat=False, closing=closing)
        finally:
            self._send_lock.release()

    def _client_report(self) -> Optional[Dict[str, Any]]:
        with self._lock:
            if not self._report_client or self._client_refused or self._revision is None:
                return None
            ago = int((time.monotonic() - self._revision_at) * 1000)
            return {
                "id": self._client_id,
                "revision": self._revision,
                "applied_ms_ago": min(max(ago, 0), MAX_APPLIED_MS_AGO),
                "sdk": SDK,
            }

    def _take(self) -> List[Dict[str, Any]]:
        with self._lock:
            counts, valued = self._counts, self._valued
            self._counts, self._valued = {}, []
        return _wire.to_signals(counts, valued)

    def _put_back(self, batches: List[List[Dict[str, Any]]]) -> None:
        """Re-queues unsent batches within the bound (what does not fit is dropped, and so is
        everything once the hook is closed: no one would send it)."""
        with self._lock:
            if self._closed:
                self._stats["dropped"] += sum(_wire.events_in(b) for b in batches)
                return
            for batch in batches:
                for s in batch:
                    variant = _wire.served(s["variant"], s.get("audience"))
                    series = (s["flag"], variant, s["metric"])
                    queued = len(self._counts) + len(self._valued)
                    if "value" in s:
                        if queued < self._max_queue:
                            self._valued.append((*series, s["count"], s["value"]))
                            continue
                    elif series in self._counts:
                        self._counts[series] += s["count"]
                        continue
                    elif queued < self._max_queue:
                        self._counts[series] = s["count"]
                        continue
                    self._stats["dropped"] += s["count"]

    def _send(
        self, deadline: float, wait_rate_limit: bool, heartbeat: bool, closing: bool = False
    ) -> bool:
        """Sends everything queued, one batch after another, until ``deadline``.

        Called with ``_send_lock`` held. ``heartbeat``: send an empty batch (with the client
        report) when nothing is queued. ``closing``: the send of ``close``; its last batch
        (an empty one when nothing is queued) reports ``"closing": true``. Once closed, any
        other send does nothing: a batch after the closing one would count the hook as live
        again.
        """
        if self._closed and not closing:
            with self._lock:
                return not (self._counts or self._valued)
        batches = _wire.chunk(self._take(), self._max_batch)
        client = self._client_report()
        if not batches:
            if not ((heartbeat or closing) and client is not None):
                return True
            batches = [[]]
        i = 0
        while i < len(batches):
            batch = batches[i]
            now = time.monotonic()
            wait = self._not_before - now
            if wait > 0:
                if not wait_rate_limit or now + wait >= deadline:
                    self._put_back(batches[i:])
                    return False
                time.sleep(wait)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._put_back(batches[i:])
                return False
            report = client
            if client is not None and closing and i == len(batches) - 1:
                report = dict(client, closing=True)
            outcome = _wire.post(
                self._url,
                self._token,
                _wire.encode(batch, report),
                min(self._request_timeout, remaining),
            )
            if outcome.ok:
                self._sent(batch, outcome)
                i += 1
            elif outcome.status == 429:
                with self._lock:
                    self._stats["rate_limited"] += 1
                    self._not_before = time.monotonic() + outcome.retry_after
            elif client is not None and outcome.refuses_client_field():
                # A server without the reach part: keep the signals flowing without the report.
                logger.warning(
                    "rollgate at %s refuses the client report; sending signals without it",
                    self._url,
                )
                with self._lock:
                    self._client_refused = True
                    self._stats["client_reports_refused"] += 1
                client = None
                if not batch:
                    return True
            else:
                return self._failed(batches, i, outcome)
        return True

    def _sent(self, batch: List[Dict[str, Any]], outcome: _wire.Outcome) -> None:
        rejected = outcome.body.get("rejected", 0) if outcome.body else 0
        with self._lock:
            self._stats["sent_batches"] += 1
            self._stats["sent_signals"] += len(batch)
            if not batch:
                self._stats["heartbeats"] += 1
            if isinstance(rejected, int) and rejected > 0:
                self._stats["rejected_signals"] += rejected
            self._last_sent_at = time.monotonic()
            if self._failures:
                logger.info("rollgate at %s answers again", self._url)
            self._failures = 0

    def _failed(
        self, batches: List[List[Dict[str, Any]]], i: int, outcome: _wire.Outcome
    ) -> bool:
        with self._lock:
            self._stats["failed_batches"] += 1
            self._failures += 1
            first = self._failures == 1
            backoff = min(self._interval * 2 ** min(self._failures - 1, 16), MAX_BACKOFF)
            self._not_before = time.monotonic() + backoff
        what = outcome.error or f"HTTP {outcome.status}: {outcome.body}"
        if outcome.retryable:
            if first:
                logger.warning("rollgate at %s: %s; keeping signals, retrying", self._url, what)
            self._put_back(batches[i:])
        else:
            logger.warning("rollgate at %s refused a batch (%s); dropping it", self._url, what)
            with self._lock:
                self._stats["dropped"] += _wire.events_in(batches[i])
            self._put_back(batches[i + 1 :])
        return False

    def _tick(self) -> None:
        """One round of the background thread: send what is due."""
        now = time.monotonic()
        if now < self._not_before:
            return
        heartbeat = now - self._last_sent_at >= self._heartbeat_interval
        if not self._send_lock.acquire(blocking=False):
            return  # a flush is sending right now
        try:
            self._send(now + self._request_timeout, wait_rate_limit=False, heartbeat=heartbeat)
        finally:
            self._send_lock.release()

    def _internal_error(self, where: str) -> None:
        try:
            with self._lock:
                self._stats["internal_errors"] += 1
            logger.exception("rollgate_openfeature: unexpected error in %s (ignored)", where)
        except Exception:  # noqa: BLE001 - even logging must not reach the app
            pass


def _run(ref: "weakref.ref[RollgateSignalsHook]", wake: threading.Event) -> None:
    """The background thread: a tick every flush interval until the hook is closed or freed."""
    while True:
        hook = ref()
        if hook is None or hook._closed:
            return
        interval = hook._interval
        del hook  # hold no strong reference while waiting, so an unused hook can be freed
        wake.wait(interval)
        hook = ref()
        if hook is None or hook._closed:
            return
        try:
            hook._tick()
        except Exception:  # noqa: BLE001
            hook._internal_error("background thread")
        del hook


def _close_at_exit(ref: "weakref.ref[RollgateSignalsHook]") -> None:
    hook = ref()
    if hook is not None:
        hook.close(hook._close_timeout)


def _restart_in_child(ref: "weakref.ref[RollgateSignalsHook]") -> None:
    """After ``fork``: a fresh client (new id, empty queue: the parent sends its own) and thread."""
    hook = ref()
    if hook is None or hook._closed:
        return
    hook._init_state()
    hook._start_thread()
