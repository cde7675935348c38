"""Fixtures: a REAL rollgate server (never a stand-in), its admin API, and its signal totals.

The server is started by the caller (tests/api/python_hook.rs in the rollgate repository, or
by hand) and named by environment variables:

* ``ROLLGATE_URL`` and ``ROLLGATE_ADMIN_TOKEN``: a server with default settings;
* ``ROLLGATE_LIMITED_URL``: a second server whose signal rate limit is 2 signals/s (the 429
  test), with the same admin token.

A missing variable FAILS the test that needs it (never a skip): a green run must mean that
the hook talked to a real server.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, Optional

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


class Server:
    """A running rollgate server, driven over its HTTP API."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url.rstrip("/")
        self.admin_token = admin_token

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.admin_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} -> {e.code}: {e.read().decode(errors='replace')}") from e
        return json.loads(raw) if raw and raw[:1] in (b"{", b"[") else raw.decode()

    def put_flag(self, key: str, rollout: float = 50.0, variants: Optional[Dict[str, Any]] = None) -> str:
        variants = variants or {"off": False, "on": True}
        names = list(variants)
        kind = "boolean" if all(isinstance(v, bool) for v in variants.values()) else "string"
        self.call(
            "PUT",
            f"/api/v1/flags/{key}",
            {
                "key": key,
                "type": kind,
                "variants": variants,
                "off_variant": names[0],
                "on_variant": names[1],
                "enabled": True,
                "rollout": rollout,
                "rules": [],
            },
        )
        return key

    def client_token(self) -> str:
        created = self.call(
            "POST", "/api/v1/tokens", {"name": f"py-hook-{uuid.uuid4().hex[:10]}", "role": "client"}
        )
        return created["token"]

    def total(
        self, flag: str, variant: str, metric: str, audience: Optional[str] = None
    ) -> Optional[float]:
        """``rollgate_signals_total{flag, variant, metric[, audience]}`` from ``/metrics`` (None
        if absent)."""
        text = self.call("GET", "/metrics")
        labels = f'flag="{flag}",variant="{variant}",metric="{metric}"'
        if audience:
            labels += f',audience="{audience}"'
        series = f"rollgate_signals_total{{{labels}}} "
        for line in text.splitlines():
            if line.startswith(series):
                return float(line[len(series) :])
        return None

    def totals(self, flag: str, metric: str, variants=("off", "on")) -> Dict[str, int]:
        """Per-variant totals of ``metric`` (0 where the series does not exist)."""
        return {v: int(self.total(flag, v, metric) or 0) for v in variants}


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set: run these tests through tests/api/python_hook.rs "
                    "(cargo nextest run -E 'test(/python_hook/)') or point it at a running rollgate")
    return value


@pytest.fixture
def server() -> Server:
    return Server(_env("ROLLGATE_URL"), _env("ROLLGATE_ADMIN_TOKEN"))


@pytest.fixture
def limited_server() -> Server:
    return Server(_env("ROLLGATE_LIMITED_URL"), _env("ROLLGATE_ADMIN_TOKEN"))


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Flag keys unique to one test (the server is shared by the tests of one run)."""
    suffix = uuid.uuid4().hex[:8]
    return lambda name: f"py-{name}-{suffix}"


@pytest.fixture
def ofrep_client():
    """An OpenFeature client on the official OFREP provider, in its own domain, with hooks.

    ``ofrep_client(server, token, hook)`` returns the client; providers are shut down after
    the test.
    """
    domains = []

    def make(server: Server, token: str, hook) -> Any:
        domain = f"rollgate-{uuid.uuid4().hex[:8]}"
        api.set_provider_and_wait(
            OFREPProvider(server.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}),
            domain=domain,
        )
        domains.append(domain)
        client = api.get_client(domain)
        client.add_hooks([hook])
        return client

    yield make
    api.shutdown()


def ctx(key: Optional[str] = None, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attributes)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls ``condition`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.01)
