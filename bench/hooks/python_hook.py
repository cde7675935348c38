"""What RollgateSignalsHook adds to one OpenFeature evaluation (Python).

The same evaluations (boolean flag, a context with a targeting key, 1,000 users in turn) through
openfeature-sdk's InMemoryProvider, so the network is not measured, on three clients: one
without hooks, one with a do-nothing `Hook()` (what the SDK itself spends per hook: a
HookContext per evaluation and four stage calls), one with RollgateSignalsHook. Rounds
alternate between them (so a noisy neighbour hits all three), and the medians of the per-round
figures are printed, with the hook's own `after` stage timed alone. The hook's background thread never sends
during the run (flush interval of an hour; exposures aggregate into two series, so nothing
grows). Goal: at most 5 µs added per evaluation.

Run (after clients/python/setup.sh):
    clients/python/.venv/bin/python bench/hooks/python_hook.py [--rounds 15] [--evals 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, FlagType, Reason
from openfeature.hook import Hook, HookContext
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from rollgate_openfeature import RollgateSignalsHook


def by_user(flag: InMemoryFlag, ctx: EvaluationContext) -> FlagResolutionDetails:
    variant = "on" if zlib.crc32(ctx.targeting_key.encode()) % 2 else "off"
    return FlagResolutionDetails(value=flag.variants[variant], variant=variant, reason=Reason.SPLIT)


def per_eval_us(client, contexts, evals: int) -> float:
    n = len(contexts)
    get = client.get_boolean_value
    start = time.perf_counter()
    for i in range(evals):
        get("qr-ordering", False, contexts[i % n])
    return (time.perf_counter() - start) / evals * 1e6


def after_us(hook: RollgateSignalsHook, contexts, calls: int) -> float:
    details = FlagEvaluationDetails(flag_key="qr-ordering", value=True, variant="on", flag_metadata={"revision": 7})
    hcs = [HookContext("qr-ordering", FlagType.BOOLEAN, False, c) for c in contexts]
    n = len(hcs)
    after = hook.after
    start = time.perf_counter()
    for i in range(calls):
        after(hcs[i % n], details, None)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--evals", type=int, default=20_000)
    args = parser.parse_args()

    flags = {"qr-ordering": InMemoryFlag("off", {"off": False, "on": True}, context_evaluator=by_user)}
    api.set_provider(InMemoryProvider(flags), domain="bare")
    api.set_provider(InMemoryProvider(flags), domain="noop")
    api.set_provider(InMemoryProvider(flags), domain="hooked")
    bare, noop, hooked = api.get_client("bare"), api.get_client("noop"), api.get_client("hooked")
    noop.add_hooks([Hook()])
    # Nothing listens on port 9; the hook never gets there within the run (see above).
    hook = RollgateSignalsHook("http://127.0.0.1:9", "token", flush_interval=3600.0)
    hooked.add_hooks([hook])
    contexts = [EvaluationContext(targeting_key=f"user-{i}", attributes={"tier": "basic"}) for i in range(1_000)]

    for client in (bare, noop, hooked):  # warm-up
        per_eval_us(client, contexts, args.evals)
    without, with_noop, with_hook = [], [], []
    for _ in range(args.rounds):
        without.append(per_eval_us(bare, contexts, args.evals))
        with_noop.append(per_eval_us(noop, contexts, args.evals))
        with_hook.append(per_eval_us(hooked, contexts, args.evals))
    diffs = [w - b for w, b in zip(with_hook, without)]
    sdk_part = [n - b for n, b in zip(with_noop, without)]
    ours = [w - n for w, n in zip(with_hook, with_noop)]
    after_alone = after_us(hook, contexts, args.evals)

    stats = hook.stats()
    expected = (args.rounds + 2) * args.evals  # the evaluations plus the direct after() calls
    assert stats["queued"] == 2 and stats["dropped"] == 0, stats
    counted = sum(hook._counts[("qr-ordering", v, "exposure")] for v in ("on", "off"))
    assert counted == expected, (counted, expected)

    print(f"{args.rounds} rounds x {args.evals} evaluations (median; min-max)")
    for name, xs in (
        ("without hooks", without),
        ("do-nothing Hook()", with_noop),
        ("RollgateSignalsHook", with_hook),
        ("added by RollgateSignalsHook", diffs),
        ("  of which the SDK's per-hook work (do-nothing Hook)", sdk_part),
        ("  of which the hook's own code", ours),
    ):
        print(f"  {name:52} {statistics.median(xs):6.2f} µs/eval  ({min(xs):.2f} to {max(xs):.2f})")
    print(f"  {'its after stage alone (called directly)':52} {after_alone:6.2f} µs/call")
    print(f"goal: added <= 5 µs: {'met' if statistics.median(diffs) <= 5.0 else 'NOT met'}")
    hook._closed = True  # stop without the close-time flush (nothing listens on port 9)


if __name__ == "__main__":
    main()
