"""Interop: the official OpenFeature Python SDK + OFREP provider against a rollgate server.

Reads ROLLGATE_URL and ROLLGATE_ADMIN_TOKEN, creates its own `py-*` flags and a client
token over the admin API (plain urllib), then evaluates through `openfeature-sdk` +
`openfeature-provider-ofrep` with the CLIENT token. Prints one line per check and ends
with `N passed, M failed`; exits non-zero on any failure.

Run by tests/api/interop.rs with the venv made by tests/interop/setup.sh.
"""

import json
import os
import sys
import traceback
import urllib.error
import urllib.request
import uuid

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode

URL = (os.environ.get("ROLLGATE_URL") or "http://127.0.0.1:8080").rstrip("/")
ADMIN_TOKEN = os.environ.get("ROLLGATE_ADMIN_TOKEN", "")

PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED += 1
        print(f"FAIL {name}: {detail}")


def finish():
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


def admin(method, path, body=None):
    """Calls the admin API; raises RuntimeError with the response body on a non-2xx."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        URL + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path} -> {e.code}: {e.read().decode(errors='replace')}") from e
    return json.loads(raw) if raw else None


def flag(key, kind, variants, off, on, rollout, rules=(), enabled=True):
    return {
        "key": key,
        "type": kind,
        "variants": variants,
        "off_variant": off,
        "on_variant": on,
        "enabled": enabled,
        "rollout": rollout,
        "rules": list(rules),
    }


BOOL = {"off": False, "on": True}
INNOVATION = {"when": [{"attribute": "tier", "op": "in", "values": ["innovation"]}], "variant": "on"}

FLAGS = [
    flag("py-rule", "boolean", BOOL, "off", "on", 0.0, [INNOVATION]),
    flag("py-string", "string", {"old": "classic", "new": "fresh"}, "old", "new", 100.0),
    flag("py-int", "number", {"small": 7, "big": 42}, "small", "big", 100.0),
    flag("py-float", "number", {"low": 1.0, "high": 2.5}, "high", "low", 100.0),
    flag(
        "py-object",
        "object",
        {"a": {"color": "blue", "size": 3, "tags": ["x", "y"]}, "b": {"color": "red"}},
        "b",
        "a",
        100.0,
    ),
    flag("py-kill", "boolean", BOOL, "off", "on", 100.0),
    flag("py-split", "boolean", BOOL, "off", "on", 50.0),
    flag("py-partial", "boolean", BOOL, "off", "on", 12.5),
    flag("py-ramp", "boolean", BOOL, "off", "on", 0.0),
]


def ctx(targeting_key=None, **attributes):
    return EvaluationContext(targeting_key=targeting_key, attributes=attributes)


def details_str(d):
    return (
        f"value={d.value!r} variant={d.variant!r} reason={d.reason!r} "
        f"error_code={d.error_code!r} error_message={d.error_message!r}"
    )


def expect(name, d, value, variant=None, reason=None, error_code=None):
    ok = d.value == value and type(d.value) is type(value)
    if variant is not None:
        ok = ok and d.variant == variant
    if reason is not None:
        ok = ok and d.reason == reason
    ok = ok and d.error_code == error_code
    check(name, ok, details_str(d))


def run_checks(client, token):
    # Typed values, variants and reasons.
    d = client.get_boolean_details("py-rule", False, ctx("user-1", tier="innovation"))
    expect("boolean rule match -> true, TARGETING_MATCH", d, True, "on", "TARGETING_MATCH")

    d = client.get_boolean_details("py-rule", True, ctx("user-1", tier="basic"))
    expect("boolean no rule match, 0% rollout -> false, DEFAULT", d, False, "off", "DEFAULT")

    d = client.get_string_details("py-string", "fallback", ctx("user-1"))
    expect("string flag -> 'fresh', STATIC", d, "fresh", "new", "STATIC")

    d = client.get_string_details("py-string", "fallback", ctx(None, tier="basic"))
    expect("no targetingKey is fine when no split is needed", d, "fresh", "new", "STATIC")

    d = client.get_integer_details("py-int", 0, ctx("user-1"))
    expect("integer number flag -> 42 (sent as a JSON integer)", d, 42, "big", "STATIC")

    d = client.get_float_details("py-float", 0.5, ctx("user-1"))
    expect("float number flag -> 1.0 (sent as a JSON float)", d, 1.0, "low", "STATIC")

    d = client.get_object_details("py-object", {}, ctx("user-1"))
    expect(
        "object flag -> nested object",
        d,
        {"color": "blue", "size": 3, "tags": ["x", "y"]},
        "a",
        "STATIC",
    )

    # Kill switch.
    d = client.get_boolean_details("py-kill", False, ctx("user-1"))
    expect("before kill -> true", d, True, "on", "STATIC")
    admin("POST", "/api/v1/flags/py-kill/kill")
    d = client.get_boolean_details("py-kill", True, ctx("user-1"))
    expect("after kill -> off variant, DISABLED", d, False, "off", "DISABLED")
    admin("POST", "/api/v1/flags/py-kill/unkill")
    d = client.get_boolean_details("py-kill", False, ctx("user-1"))
    expect("after unkill -> true again", d, True, "on", "STATIC")

    # Percentage split: deterministic per user, both sides populated at 50%.
    seen = set()
    stable = True
    bad = []
    for i in range(40):
        a = client.get_boolean_details("py-split", False, ctx(f"user-{i}"))
        b = client.get_boolean_details("py-split", False, ctx(f"user-{i}"))
        if a.reason != "SPLIT" or a.error_code is not None or a.variant != ("on" if a.value else "off"):
            bad.append(details_str(a))
        stable = stable and (a.value, a.variant) == (b.value, b.variant)
        seen.add(a.value)
    check("50% rollout with targetingKey -> SPLIT, variant matches value", not bad, "; ".join(bad[:3]))
    check("same user gets the same answer twice", stable)
    check("50% rollout serves both variants over 40 users", seen == {True, False}, f"seen={seen}")

    # Partial rollout without a targetingKey.
    d = client.get_boolean_details("py-partial", True, ctx(None, tier="basic"))
    expect(
        "partial rollout without targetingKey -> default, TARGETING_KEY_MISSING",
        d,
        True,
        reason="ERROR",
        error_code=ErrorCode.TARGETING_KEY_MISSING,
    )

    # Missing flag.
    d = client.get_string_details("py-does-not-exist", "fallback", ctx("user-1"))
    expect("missing flag -> default, FLAG_NOT_FOUND", d, "fallback", reason="ERROR", error_code=ErrorCode.FLAG_NOT_FOUND)

    # Type mismatch: a boolean flag asked as a string (detected by the provider).
    d = client.get_string_details("py-rule", "fallback", ctx("user-1", tier="innovation"))
    expect("boolean flag asked as string -> default, TYPE_MISMATCH", d, "fallback", reason="ERROR", error_code=ErrorCode.TYPE_MISMATCH)

    # Number flag asked as a boolean.
    d = client.get_boolean_details("py-int", False, ctx("user-1"))
    expect("number flag asked as boolean -> default, TYPE_MISMATCH", d, False, reason="ERROR", error_code=ErrorCode.TYPE_MISMATCH)

    # A rollout change through the admin API is seen by the very next evaluation.
    who = ctx("ramp-user", tier="basic")
    d = client.get_boolean_details("py-ramp", True, who)
    expect("ramp at 0% -> false", d, False, "off", "STATIC")
    admin("PUT", "/api/v1/flags/py-ramp/rollout", {"percentage": 100})
    d = client.get_boolean_details("py-ramp", False, who)
    expect("ramp raised to 100% -> next evaluation is true", d, True, "on", "STATIC")
    admin("PUT", "/api/v1/flags/py-ramp/rollout", {"percentage": 33.333})
    d = client.get_boolean_details("py-ramp", False, who)
    expect("ramp set to 33.333% -> next evaluation is a SPLIT", d, d.value, "on" if d.value else "off", "SPLIT")
    admin("PUT", "/api/v1/flags/py-ramp/rollout", {"percentage": 0})
    d = client.get_boolean_details("py-ramp", True, who)
    expect("ramp back to 0% -> next evaluation is false", d, False, "off", "STATIC")

    # Auth: a provider with a wrong token gets defaults, never a value.
    api.set_provider_and_wait(
        OFREPProvider(URL, headers_factory=lambda: {"Authorization": "Bearer not-a-token"}),
        domain="rollgate-py-badtoken",
    )
    d = api.get_client("rollgate-py-badtoken").get_boolean_details("py-kill", False, ctx("user-1"))
    expect("wrong token -> default, GENERAL", d, False, reason="ERROR", error_code=ErrorCode.GENERAL)

    # X-API-Key is accepted as well as Authorization: Bearer.
    api.set_provider_and_wait(
        OFREPProvider(URL, headers_factory=lambda: {"X-API-Key": token}),
        domain="rollgate-py-apikey",
    )
    d = api.get_client("rollgate-py-apikey").get_string_details("py-string", "fallback", ctx("user-1"))
    expect("X-API-Key header is accepted", d, "fresh", "new", "STATIC")


def main():
    if not ADMIN_TOKEN:
        check("ROLLGATE_ADMIN_TOKEN is set", False, "empty")
        finish()
    try:
        for f in FLAGS:
            admin("PUT", f"/api/v1/flags/{f['key']}", f)
        created = admin(
            "POST", "/api/v1/tokens", {"name": f"py-interop-{uuid.uuid4().hex[:8]}", "role": "client"}
        )
        token = created["token"]
        check("setup: flags and a client token created over the admin API", created.get("role") == "client", created)
    except Exception as e:  # noqa: BLE001 - report, then stop: nothing else can run
        check("setup: flags and a client token created over the admin API", False, e)
        finish()

    api.set_provider_and_wait(
        OFREPProvider(URL, headers_factory=lambda: {"Authorization": f"Bearer {token}"}),
        domain="rollgate-py",
    )
    client = api.get_client("rollgate-py")
    try:
        run_checks(client, token)
    except Exception:  # noqa: BLE001 - an unexpected error is one more failure, with its trace
        check("checks ran to the end", False, traceback.format_exc())
    finally:
        api.shutdown()
    finish()


if __name__ == "__main__":
    main()
