"""The hook with the official openfeature-sdk + OFREP provider against a real rollgate server:
every count below is read back from the server's /metrics, never from the hook."""

from __future__ import annotations

from collections import Counter

from conftest import ctx

from rollgate_openfeature import RollgateSignalsHook


def new_hook(server, token, **options) -> RollgateSignalsHook:
    # A long interval: the test decides when to send (flush), so counts are read at known points.
    options.setdefault("flush_interval", 60.0)
    return RollgateSignalsHook(server.url, token, **options)


def test_n_evaluations_across_users_are_exactly_n_exposures_per_variant(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("split"), rollout=50.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)

    # Act
    served = Counter()
    for i in range(300):
        d = client.get_boolean_details(flag, False, ctx(f"user-{i}"))
        assert d.error_code is None, d
        served[d.variant] += 1
    flushed = hook.flush(timeout=10)

    # Assert
    assert flushed, hook.stats()
    assert served["on"] > 0 and served["off"] > 0, served
    assert server.totals(flag, "exposure") == {"off": served["off"], "on": served["on"]}
    stats = hook.stats()
    assert stats["sent_batches"] == 1 and stats["sent_signals"] == 2, stats
    assert stats["dropped"] == stats["failed_batches"] == stats["rejected_signals"] == 0, stats
    assert hook.close(timeout=5)


def test_complaints_go_to_the_variant_each_user_was_served(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("complaints"), rollout=50.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)
    variant_of = {}
    for i in range(60):
        variant_of[f"user-{i}"] = client.get_boolean_details(flag, False, ctx(f"user-{i}")).variant

    # Act: users 0..29 complain once, user-0 twice more
    expected = Counter()
    for i in range(30):
        assert hook.complaint(flag, ctx(f"user-{i}"))
        expected[variant_of[f"user-{i}"]] += 1
    for _ in range(2):
        assert hook.complaint(flag, ctx("user-0"))
        expected[variant_of["user-0"]] += 1
    assert hook.flush(timeout=10)

    # Assert
    assert set(variant_of.values()) == {"on", "off"}, variant_of
    assert server.totals(flag, "complaint") == {"off": expected["off"], "on": expected["on"]}
    hook.close()


def test_reports_carry_count_and_value_to_the_users_variant(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("reports"), rollout=50.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)
    variant_of = {u: client.get_boolean_details(flag, False, ctx(u)).variant for u in ("a", "b", "c", "d")}

    # Act
    for u in ("a", "b", "c", "d"):
        assert hook.report(flag, "latency", value=0.25, context=ctx(u))
        assert hook.report(flag, "checkout", count=3, context=ctx(u))
    assert hook.flush(timeout=10)

    # Assert: the server applied every signal, each under the variant its user was served
    # (value sums are not exposed by the server's API; the count of valued events is)
    per_variant = Counter(variant_of.values())
    assert server.totals(flag, "latency") == {v: per_variant[v] for v in ("off", "on")}
    assert server.totals(flag, "checkout") == {v: 3 * per_variant[v] for v in ("off", "on")}
    stats = hook.stats()
    assert stats["rejected_signals"] == 0 and stats["invalid"] == 0, stats
    hook.close()


def test_a_complaint_without_context_goes_to_the_variant_last_served(server, unique, ofrep_client):
    # Arrange: find one user of each variant
    flag = server.put_flag(unique("last"), rollout=50.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)
    user_of = {}
    for i in range(200):
        user_of.setdefault(client.get_boolean_details(flag, False, ctx(f"u{i}")).variant, f"u{i}")
        if len(user_of) == 2:
            break
    assert set(user_of) == {"on", "off"}, user_of

    # Act: serve "off" last, complain; then "on" last, complain twice
    client.get_boolean_details(flag, False, ctx(user_of["off"]))
    assert hook.complaint(flag)
    client.get_boolean_details(flag, False, ctx(user_of["on"]))
    assert hook.complaint(flag)
    assert hook.complaint(flag, ctx(None, tier="gold"))  # a context without a targeting key
    assert hook.flush(timeout=10)

    # Assert
    assert server.totals(flag, "complaint") == {"off": 1, "on": 2}
    hook.close()


def test_unknown_users_and_flags_are_dropped_and_counted_never_raised(server, unique, ofrep_client):
    # Arrange
    flag = server.put_flag(unique("unknown"), rollout=100.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)
    client.get_boolean_details(flag, False, ctx("known"))

    # Act
    results = [
        hook.complaint(flag, ctx("never-evaluated")),
        hook.complaint(unique("never-evaluated-flag")),
        hook.report(flag, "latency", value=1.0, context=ctx("stranger")),
    ]
    assert hook.flush(timeout=10)

    # Assert
    assert results == [False, False, False]
    assert hook.stats()["unattributed"] == 3
    assert server.totals(flag, "complaint") == {"off": 0, "on": 0}
    assert server.totals(flag, "latency") == {"off": 0, "on": 0}
    assert server.totals(flag, "exposure") == {"off": 0, "on": 1}
    hook.close()


def test_an_evaluation_error_is_an_error_signal_for_the_users_variant(server, unique, ofrep_client):
    # Arrange: user "u" is served "on"
    flag = server.put_flag(unique("errors"), rollout=100.0)
    token = server.client_token()
    hook = new_hook(server, token)
    client = ofrep_client(server, token, hook)
    assert client.get_boolean_details(flag, False, ctx("u")).variant == "on"

    # Act: the same flag asked as a string fails (TYPE_MISMATCH) for "u" and for a new user
    failed = client.get_string_details(flag, "fallback", ctx("u"))
    stranger = client.get_string_details(flag, "fallback", ctx("someone-else"))
    assert hook.flush(timeout=10)

    # Assert: the app got its default; "u"'s error counts for "on"; the stranger's has no variant
    assert failed.value == "fallback" and failed.error_code is not None, failed
    assert stranger.value == "fallback"
    assert server.totals(flag, "error") == {"off": 0, "on": 1}
    assert server.totals(flag, "exposure") == {"off": 0, "on": 1}
    assert hook.stats()["unattributed"] == 1
    hook.close()
