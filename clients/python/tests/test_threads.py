"""Thread safety: many threads evaluating (and complaining) at once give exact totals on the
real server, while the background thread sends concurrently."""

from __future__ import annotations

import threading
import zlib
from collections import Counter

from conftest import ctx
from openfeature import api
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from rollgate_openfeature import RollgateSignalsHook

THREADS = 8


def run_threads(work) -> None:
    start = threading.Barrier(THREADS)
    errors = []

    def body(t: int) -> None:
        try:
            start.wait()
            work(t)
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def test_threads_evaluating_through_the_ofrep_provider_give_exact_totals(server, unique, ofrep_client):
    # Arrange: a short interval, so batches leave while threads evaluate
    flag = server.put_flag(unique("threads-ofrep"), rollout=50.0)
    token = server.client_token()
    hook = RollgateSignalsHook(server.url, token, flush_interval=0.02)
    client = ofrep_client(server, token, hook)
    served = [Counter() for _ in range(THREADS)]

    # Act
    def work(t: int) -> None:
        for i in range(60):
            served[t][client.get_boolean_details(flag, False, ctx(f"t{t}-u{i}")).variant] += 1

    run_threads(work)
    assert hook.close(timeout=10)

    # Assert
    total = sum(served, Counter())
    assert sum(total.values()) == THREADS * 60
    assert server.totals(flag, "exposure") == {"off": total["off"], "on": total["on"]}
    assert hook.stats()["dropped"] == 0


def test_threads_evaluating_in_memory_give_exact_totals_on_the_server(server, unique):
    # Arrange: the same flag key and variants on the server and in an in-memory provider (so
    # many evaluations are cheap); a variant per user from a hash of the targeting key
    flag = server.put_flag(unique("threads-mem"), rollout=50.0)
    token = server.client_token()

    def by_user(f: InMemoryFlag, c) -> FlagResolutionDetails:
        variant = "on" if zlib.crc32(c.targeting_key.encode()) % 2 else "off"
        return FlagResolutionDetails(value=f.variants[variant], variant=variant, reason=Reason.SPLIT)

    api.set_provider(
        InMemoryProvider({flag: InMemoryFlag("off", {"off": False, "on": True}, context_evaluator=by_user)}),
        domain="threads-mem",
    )
    client = api.get_client("threads-mem")
    hook = RollgateSignalsHook(server.url, token, flush_interval=0.01)
    client.add_hooks([hook])
    evals = [Counter() for _ in range(THREADS)]
    complaints = [Counter() for _ in range(THREADS)]

    # Act: each thread evaluates 5,000 times and complains for every 7th evaluation
    def work(t: int) -> None:
        for i in range(5_000):
            who = ctx(f"t{t}-u{i % 500}")
            v = client.get_boolean_details(flag, False, who).variant
            evals[t][v] += 1
            if i % 7 == 0:
                assert hook.complaint(flag, who)
                complaints[t][v] += 1

    try:
        run_threads(work)
        assert hook.close(timeout=10)
    finally:
        api.shutdown()

    # Assert
    e, c = sum(evals, Counter()), sum(complaints, Counter())
    assert sum(e.values()) == THREADS * 5_000 and e["on"] > 0 and e["off"] > 0, e
    assert server.totals(flag, "exposure") == {"off": e["off"], "on": e["on"]}
    assert server.totals(flag, "complaint") == {"off": c["off"], "on": c["on"]}
    stats = hook.stats()
    assert stats["dropped"] == stats["internal_errors"] == stats["failed_batches"] == 0, stats
    assert stats["sent_batches"] > 1, stats  # the background thread sent while threads ran
