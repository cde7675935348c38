"""The `client` report of docs/clients.md: the revision the hook has seen, and what the server
makes of the report.

The server's reach tracking (the part that accepts `client`) is built in parallel with this
hook. Until it lands, rollgate refuses a batch with a `client` object (400 naming `client`); the
hook then keeps sending its signals without the report. Which server this is is read from its
own OpenAPI document (`SignalBatch.properties.client`), and each case asserts what must happen
on that server. Nothing here stands in for the server.
"""

from __future__ import annotations

import re
import time

from conftest import ctx, wait_for

from rollgate_openfeature import RollgateSignalsHook


def takes_client_report(server) -> bool:
    schemas = server.call("GET", "/api/v1/openapi.json")["components"]["schemas"]
    return "client" in schemas["SignalBatch"].get("properties", {})


def config_revision(server, token) -> int:
    return server.call("GET", "/api/v1/client/config", token=token)["revision"]


def test_the_hook_holds_the_highest_revision_its_evaluations_carried(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("revision"), rollout=100.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=60.0)
    client = ofrep_client(server, token, hook)
    assert hook.revision is None

    # Act + Assert: the revision of the answers, and the next one after a change
    client.get_boolean_details(flag, False, ctx("u"))
    first = hook.revision
    assert first == config_revision(server, token)
    server.call("PUT", f"/api/v1/flags/{flag}/rollout", {"percentage": 0})
    assert client.get_boolean_details(flag, True, ctx("u")).variant == "off"
    assert hook.revision == config_revision(server, token) and hook.revision > first

    # The report the hook attaches: its id, that revision, how long ago it applied it, the sdk
    started = time.monotonic()
    report = hook._client_report()
    assert report is not None
    assert report["id"] == hook.client_id and re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", report["id"])
    assert report["revision"] == hook.revision
    assert 0 <= report["applied_ms_ago"] <= (time.monotonic() - started) * 1000 + 5_000
    assert report["sdk"].startswith("rollgate-openfeature-python/")
    hook.close()


def test_signals_arrive_with_the_client_report_on_whatever_the_server(server, unique, ofrep_client):
    # Arrange: report_client is on by default
    flag = server.put_flag(unique("report"), rollout=100.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=60.0)
    client = ofrep_client(server, token, hook)

    # Act
    for i in range(20):
        client.get_boolean_details(flag, False, ctx(f"u{i}"))
    assert hook.flush(timeout=10), hook.stats()
    for i in range(5):
        client.get_boolean_details(flag, False, ctx(f"v{i}"))
    assert hook.flush(timeout=10), hook.stats()

    # Assert
    assert server.totals(flag, "exposure") == {"off": 0, "on": 25}
    stats = hook.stats()
    if takes_client_report(server):
        assert stats["client_reports_refused"] == 0, stats
    else:
        # Refused once, remembered: the second flush did not offer it again.
        assert stats["client_reports_refused"] == 1, stats
    assert stats["sent_batches"] == 2 and stats["dropped"] == 0, stats
    hook.close()


def test_an_idle_hook_sends_heartbeats_when_the_server_takes_the_report(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("heartbeat"), rollout=100.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=0.05, heartbeat_interval=0.2)
    client = ofrep_client(server, token, hook)

    # Act: one evaluation, then nothing to send
    client.get_boolean_details(flag, False, ctx("u"))
    wait_for(lambda: hook.sent_batches >= 1, what="the exposure was sent")

    # Assert
    if takes_client_report(server):
        wait_for(lambda: hook.stats()["heartbeats"] >= 2, what="two heartbeats")
    else:
        # The report was refused: there is nothing a heartbeat could carry.
        assert hook.stats()["client_reports_refused"] == 1
        assert hook._client_report() is None
    assert server.totals(flag, "exposure") == {"off": 0, "on": 1}
    hook.close()


def live_clients(server) -> int:
    return server.call("GET", "/api/v1/reach?limit=1")["live_clients"]


def test_close_sends_a_closing_report_and_the_server_stops_counting_the_hook(
    server, unique, ofrep_client
):
    # Arrange: a hook the server counts as live (its flush carried the client report)
    flag = server.put_flag(unique("closing"), rollout=100.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=60.0)
    client = ofrep_client(server, token, hook)
    client.get_boolean_details(flag, False, ctx("u"))
    before = live_clients(server)
    assert hook.flush(timeout=10), hook.stats()
    counted = live_clients(server)
    assert counted == before + 1, (before, counted)
    assert hook.stats()["queued"] == 0

    # Act: nothing is queued; close still sends its last batch, a bare closing report
    assert hook.close(timeout=10), hook.stats()

    # Assert: the server stopped counting the hook at once, not 60 s later
    assert live_clients(server) == counted - 1
    stats = hook.stats()
    assert stats["sent_batches"] == 2 and stats["heartbeats"] == 1, stats
    # An evaluation and a flush after close send nothing: the hook does not come back to life.
    client.get_boolean_details(flag, False, ctx("u"))
    hook.flush(timeout=10)
    assert live_clients(server) == counted - 1
    assert hook.stats()["sent_batches"] == 2
    assert server.totals(flag, "exposure") == {"off": 0, "on": 1}


def test_the_closing_report_rides_on_the_last_batch_of_signals(server, unique, ofrep_client):
    # Arrange: a live hook with exposures still queued at close
    flag = server.put_flag(unique("closing-signals"), rollout=100.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=60.0)
    client = ofrep_client(server, token, hook)
    client.get_boolean_details(flag, False, ctx("u0"))
    assert hook.flush(timeout=10), hook.stats()
    counted = live_clients(server)
    for i in range(1, 4):
        client.get_boolean_details(flag, False, ctx(f"u{i}"))

    # Act
    assert hook.close(timeout=10), hook.stats()

    # Assert: one request carried both the exposures and the closing report
    assert live_clients(server) == counted - 1
    assert server.totals(flag, "exposure") == {"off": 0, "on": 4}
    stats = hook.stats()
    assert stats["sent_batches"] == 2 and stats["heartbeats"] == 0 and stats["dropped"] == 0, stats
