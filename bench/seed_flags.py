"""Creates N varied flags (`flag-0` … `flag-{N-1}`) on a rollgate server, fast.

Used by bench/http.sh. Plain stdlib: a few threads, each with its own keep-alive HTTP/1.1
connection, PUT /api/v1/flags/{key}. The mix is deterministic (by index) so every run loads
the same configuration:
  - most flags are booleans with a partial rollout (a percentage split on targetingKey),
  - every 3rd has targeting rules (tier list, country, semver on app_version),
  - every 5th is a string flag, every 7th a number flag, every 11th an object flag,
  - every 13th is killed (enabled = false).
`flag-7` (the one the single-flag benchmark asks for) has rules and a 25% rollout.

usage: seed_flags.py URL ADMIN_TOKEN COUNT [THREADS]
Prints `seeded N flags in S s (R flags/s)`; exits non-zero on the first failed write.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

ROLLOUTS = [0.0, 1.0, 5.0, 12.5, 25.0, 50.0, 100.0, 33.333]


def flag_json(i):
    key = f"flag-{i}"
    if i % 11 == 0:
        kind, variants = "object", {
            "off": {"layout": "classic", "columns": 2},
            "on": {"layout": "grid", "columns": 4, "badges": ["new"]},
        }
    elif i % 7 == 0 and i != 7:
        kind, variants = "number", {"off": 10, "on": 12.5}
    elif i % 5 == 0:
        kind, variants = "string", {"off": "v1", "on": "v2"}
    else:
        kind, variants = "boolean", {"off": False, "on": True}
    rules = []
    if i % 3 == 0 or i == 7:
        rules = [
            {"when": [{"attribute": "tier", "op": "in", "values": ["innovation", "beta"]}], "variant": "on"},
            {
                "when": [
                    {"attribute": "country", "op": "eq", "values": ["de"]},
                    {"attribute": "app_version", "op": "semver_gte", "values": ["3.0.0"]},
                ],
                "variant": "on",
            },
            {"when": [{"attribute": "age", "op": "gte", "values": [60]}], "variant": "off"},
        ]
    return {
        "key": key,
        "type": kind,
        "variants": variants,
        "off_variant": "off",
        "on_variant": "on",
        "enabled": i % 13 != 12,
        "rollout": 25.0 if i == 7 else ROLLOUTS[i % len(ROLLOUTS)],
        "rules": rules,
    }


def worker(base, token, indices, errors):
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        for i in indices:
            if errors:
                return
            body = json.dumps(flag_json(i))
            conn.request("PUT", f"/api/v1/flags/flag-{i}", body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status >= 300:
                errors.append(f"PUT flag-{i} -> {resp.status}: {text[:300]!r}")
                return
    except OSError as e:
        errors.append(f"PUT failed: {e}")
    finally:
        conn.close()


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: seed_flags.py URL ADMIN_TOKEN COUNT [THREADS]")
    base = urllib.parse.urlsplit(sys.argv[1])
    token, count = sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) == 5 else 8
    errors = []
    start = time.monotonic()
    pool = [
        threading.Thread(target=worker, args=(base, token, range(t, count, threads), errors))
        for t in range(threads)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        sys.exit(f"seed_flags: {errors[0]}")
    took = time.monotonic() - start
    print(f"seeded {count} flags in {took:.1f} s ({count / took:.0f} flags/s)")


if __name__ == "__main__":
    main()
