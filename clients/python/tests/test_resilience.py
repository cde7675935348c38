"""A failing server never reaches the app: down, hung, 500, 429, a full queue, bad input.

Down and hung servers are a closed port and a socket that never answers. A 500 cannot be
provoked from rollgate on demand, so `failing_then_real` is a small relay that answers 500 to
the first requests and then passes every request to the REAL server (whose totals are
checked). The 429 test uses a real server with a rate limit of 2 signals/s.
"""

from __future__ import annotations

import http.server
import math
import socket
import threading
import time
import urllib.request

import pytest
from conftest import ctx, wait_for
from openfeature import api
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from rollgate_openfeature import RollgateSignalsHook


@pytest.fixture
def memory_client():
    """An OpenFeature client on an in-memory provider serving flag `f` = variant "on"."""
    api.set_provider(
        InMemoryProvider({"f": InMemoryFlag("on", {"off": False, "on": True})}), domain="memory"
    )
    yield api.get_client("memory")
    api.shutdown()


@pytest.fixture
def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hung_server_url():
    """A socket that accepts connections (kernel backlog) but never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def test_a_down_server_never_reaches_the_app_and_close_returns_in_time(memory_client, closed_port_url):
    # Arrange
    hook = RollgateSignalsHook(closed_port_url, "token", flush_interval=0.05)
    memory_client.add_hooks([hook])

    # Act: evaluations, app events and flushes while nothing listens
    values = [memory_client.get_boolean_value("f", False, ctx(f"u{i}")) for i in range(100)]
    assert hook.complaint("f", ctx("u1"))
    assert hook.report("f", "latency", value=0.3, context=ctx("u2"))
    wait_for(lambda: hook.failed_batches >= 2, what="the background thread tried and failed twice")
    started = time.monotonic()
    flushed = hook.flush(timeout=1.0)
    flush_took = time.monotonic() - started
    started = time.monotonic()
    closed = hook.close(timeout=1.0)
    close_took = time.monotonic() - started

    # Assert: the app got its values; nothing raised; what could not be sent is counted
    assert values == [True] * 100
    assert flushed is False and flush_took < 1.5, flush_took
    assert closed is False and close_took < 1.5, close_took
    stats = hook.stats()
    assert stats["dropped"] == 102, stats  # 100 exposures + 1 complaint + 1 report, kept until close
    assert stats["sent_batches"] == 0 and stats["queued"] == 0, stats
    assert not hook._thread.is_alive()


def test_close_returns_within_its_timeout_when_the_server_hangs(memory_client, hung_server_url):
    # Arrange: requests may take 30 s, the server never answers
    hook = RollgateSignalsHook(hung_server_url, "token", flush_interval=0.05, request_timeout=30.0)
    memory_client.add_hooks([hook])
    for i in range(10):
        memory_client.get_boolean_value("f", False, ctx(f"u{i}"))
    wait_for(hook._send_lock.locked, what="the background thread is stuck in its request")

    # Act
    started = time.monotonic()
    closed = hook.close(timeout=1.0)
    took = time.monotonic() - started

    # Assert
    assert closed is False
    assert took < 1.5, took
    assert memory_client.get_boolean_value("f", False, ctx("after-close")) is True


def test_the_closing_report_returns_within_the_timeout_when_the_server_hangs(hung_server_url):
    # Arrange: a hook that has seen a revision (so close sends a closing report) and has
    # nothing queued; the server never answers, a request may take 30 s
    api.set_provider(
        InMemoryProvider(
            {"f": InMemoryFlag("on", {"off": False, "on": True}, flag_metadata={"revision": 7})}
        ),
        domain="memory-revision",
    )
    client = api.get_client("memory-revision")
    hook = RollgateSignalsHook(hung_server_url, "token", flush_interval=60.0, request_timeout=30.0)
    client.add_hooks([hook])
    try:
        client.get_boolean_value("f", False, ctx("u"))
        assert hook.revision == 7
        with hook._lock:  # only the closing report is left to send
            hook._counts.clear()

        # Act
        started = time.monotonic()
        closed = hook.close(timeout=1.0)
        took = time.monotonic() - started

        # Assert: the closing report was tried, given up at the deadline; nothing raised
        assert closed is False
        assert took < 1.5, took
        stats = hook.stats()
        assert stats["failed_batches"] == 1 and stats["sent_batches"] == 0, stats
    finally:
        api.shutdown()


class _FailingThenReal(http.server.BaseHTTPRequestHandler):
    """Answers 500 to the first `failures` requests, then relays each one to the real server."""

    failures = 0
    target = ""
    seen = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        cls = type(self)
        cls.seen.append(time.monotonic())
        if len(cls.seen) <= cls.failures:
            self._answer(500, b'{"error":{"code":"internal","message":"injected"}}')
            return
        req = urllib.request.Request(
            cls.target + self.path,
            data=body,
            method="POST",
            headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                self._answer(r.status, r.read())
        except urllib.error.HTTPError as e:
            self._answer(e.code, e.read())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_500s_keep_the_signals_and_back_off_until_the_server_answers(server, unique, memory_client):
    # Arrange: the real server has flag `f` (the in-memory provider serves "on"); the relay
    # fails the first 3 requests
    flag = "f"
    server.put_flag(flag, rollout=100.0)
    token = server.client_token()
    before = server.totals(flag, "exposure")
    handler = type("Relay", (_FailingThenReal,), {"failures": 3, "target": server.url, "seen": []})
    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    hook = RollgateSignalsHook(f"http://127.0.0.1:{relay.server_address[1]}", token, flush_interval=0.05)
    memory_client.add_hooks([hook])

    try:
        # Act
        for i in range(250):
            memory_client.get_boolean_value(flag, False, ctx(f"u{i}"))
        wait_for(lambda: hook.sent_batches >= 1, timeout=10, what="a batch accepted after the 500s")
        assert hook.close(timeout=5)
    finally:
        relay.shutdown()
        relay.server_close()

    # Assert: every exposure arrived exactly once; the retries waited 0.05, 0.1, 0.2 s at least
    after = server.totals(flag, "exposure")
    assert after["on"] - before["on"] == 250
    stats = hook.stats()
    assert stats["failed_batches"] == 3 and stats["dropped"] == 0, stats
    gaps = [b - a for a, b in zip(handler.seen, handler.seen[1:])]
    assert all(g >= 0.05 * 2**i * 0.95 for i, g in enumerate(gaps[:3])), gaps


def test_a_429_is_retried_after_its_retry_after_and_nothing_is_lost(limited_server, unique, ofrep_client):
    # Arrange: 2 signals/s with a 4-signal burst; batches of 4 signals; 12 series to send
    flag = limited_server.put_flag(unique("limited"), rollout=100.0)
    token = limited_server.client_token()
    hook = RollgateSignalsHook(limited_server.url, token, flush_interval=60.0, max_batch=4)
    client = ofrep_client(limited_server, token, hook)
    assert client.get_boolean_value(flag, False, ctx("u")) is True
    for m in range(11):
        assert hook.report(flag, f"m{m}", context=ctx("u"))

    # Act
    started = time.monotonic()
    flushed = hook.flush(timeout=20)
    took = time.monotonic() - started

    # Assert: batch 1 within the burst, batches 2 and 3 each refused once with Retry-After: 2,
    # resent after it (an earlier retry would be refused again and counted)
    assert flushed, hook.stats()
    stats = hook.stats()
    assert stats["rate_limited"] == 2, stats
    assert stats["sent_batches"] == 3 and stats["failed_batches"] == 0, stats
    assert took >= 3.9, took
    assert limited_server.totals(flag, "exposure") == {"off": 0, "on": 1}
    for m in range(11):
        assert limited_server.totals(flag, f"m{m}") == {"off": 0, "on": 1}, m
    hook.close()


def test_a_full_queue_drops_new_series_and_counts_them(memory_client, closed_port_url):
    # Arrange: room for 5 series; the server is down so nothing leaves
    hook = RollgateSignalsHook(closed_port_url, "token", flush_interval=60.0, max_queue=5)
    memory_client.add_hooks([hook])
    memory_client.get_boolean_value("f", False, ctx("u"))  # series 1: exposure

    # Act
    kept = [hook.report("f", f"m{i}", context=ctx("u")) for i in range(10)]
    more = [memory_client.get_boolean_value("f", False, ctx("u")) for _ in range(50)]

    # Assert: 4 more series fit, 6 were dropped; exposures of a queued series still count
    assert kept == [True] * 4 + [False] * 6
    assert more == [True] * 50
    stats = hook.stats()
    assert stats["dropped"] == 6 and stats["queued"] == 5, stats
    hook.close(timeout=0.5)


def test_bad_input_and_broken_hook_calls_never_raise(memory_client, closed_port_url):
    hook = RollgateSignalsHook(closed_port_url, "token", flush_interval=60.0)
    memory_client.add_hooks([hook])
    memory_client.get_boolean_value("f", False, ctx("u"))

    # Act: nonsense through every public entry point
    results = [
        hook.complaint(None),
        hook.complaint("f", context=object()),
        hook.report("f", "not a metric!", context=ctx("u")),
        hook.report("f", "", context=ctx("u")),
        hook.report("f", "m", count=0, context=ctx("u")),
        hook.report("f", "m", count=1.5, context=ctx("u")),
        hook.report("f", "m", value=math.nan, context=ctx("u")),
        hook.report("f", "m", value=2e12, context=ctx("u")),
        hook.report("f", "m", value="slow", context=ctx("u")),
    ]
    hook.after(None, None, None)
    hook.error(None, RuntimeError("x"), None)
    flushed = hook.flush(timeout="soon")

    # Assert
    assert results[0] is False and results[2:] == [False] * 7
    stats = hook.stats()
    assert stats["invalid"] == 7, stats
    assert stats["internal_errors"] == 3, stats  # after(None…), error(None…), flush("soon")
    assert flushed is False
    assert memory_client.get_boolean_value("f", False, ctx("u")) is True
    assert hook.close(timeout=0.5) is False


def test_bad_constructor_arguments_are_a_clear_error():
    for kwargs in ({"flush_interval": 0}, {"flush_interval": math.inf}, {"max_queue": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            RollgateSignalsHook("http://127.0.0.1:1", "token", **kwargs)
    with pytest.raises(ValueError, match="base_url"):
        RollgateSignalsHook("", "token")
