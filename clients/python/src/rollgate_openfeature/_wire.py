"""The wire half of the hook: shaping batches for ``POST /api/v1/signals`` and sending one.

Pure functions plus one blocking ``post`` on ``urllib`` (standard library only). Nothing here
holds state or raises past ``post``'s documented outcomes; ``_hook.py`` owns the queue, the
thread and the counters. The protocol is docs/clients.md in the rollgate repository.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

#: Events one signal may carry (the server refuses a batch with a larger ``count``).
MAX_COUNT = 1_000_000
#: Events one batch may carry, all signals together.
MAX_BATCH_COUNT = 100_000_000
#: Largest magnitude of a signal's ``value``.
MAX_ABS_VALUE = 1e12
#: The longest wait a ``Retry-After`` may impose; a larger one is clamped.
MAX_RETRY_AFTER = 300.0

_METRIC = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_AUDIENCE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}\Z")
_SEP = "\0"

# One queued series: (flag, variant, metric) -> count, or a valued signal (flag, variant,
# metric, count, value). Valued signals are not aggregated: docs/clients.md sends `value` for
# a single measured value.
SeriesKey = Tuple[str, str, str]
Valued = Tuple[str, str, str, int, float]


def served(variant: str, audience: object) -> str:
    """The attribution key of a served variant: ``variant``, or ``variant\\0audience`` when a
    release audience (a segment key, the evaluation's ``metadata.audience``) decided it."""
    if isinstance(audience, str) and _AUDIENCE.match(audience):
        return variant + _SEP + audience
    return variant


def _signal(flag: str, key: str, metric: str, count: int) -> Dict[str, Any]:
    variant, _, audience = key.partition(_SEP)
    s: Dict[str, Any] = {"flag": flag, "variant": variant, "metric": metric, "count": count}
    if audience:
        s["audience"] = audience
    return s


def valid_metric(metric: object) -> bool:
    """True for a metric name the server accepts: 1 to 64 of ``[A-Za-z0-9_.:-]``."""
    return isinstance(metric, str) and _METRIC.match(metric) is not None


def to_signals(counts: Dict[SeriesKey, int], valued: List[Valued]) -> List[Dict[str, Any]]:
    """The queued series as signals, a count above :data:`MAX_COUNT` split over several."""
    out: List[Dict[str, Any]] = []
    for (flag, variant, metric), count in counts.items():
        while count > 0:
            n = min(count, MAX_COUNT)
            out.append(_signal(flag, variant, metric, n))
            count -= n
    for flag, variant, metric, count, value in valued:
        while count > 0:
            n = min(count, MAX_COUNT)
            out.append({**_signal(flag, variant, metric, n), "value": value})
            count -= n
    return out


def chunk(signals: List[Dict[str, Any]], max_signals: int) -> List[List[Dict[str, Any]]]:
    """Batches of at most ``max_signals`` signals and :data:`MAX_BATCH_COUNT` events each."""
    batches: List[List[Dict[str, Any]]] = []
    current: List[Dict[str, Any]] = []
    events = 0
    for s in signals:
        if current and (len(current) >= max_signals or events + s["count"] > MAX_BATCH_COUNT):
            batches.append(current)
            current, events = [], 0
        current.append(s)
        events += s["count"]
    if current:
        batches.append(current)
    return batches


def events_in(batch: List[Dict[str, Any]]) -> int:
    """The number of events a batch carries (the sum of its counts)."""
    return sum(s["count"] for s in batch)


@dataclass
class Outcome:
    """What one ``POST`` came to.

    ``status`` is the HTTP status, or 0 when no answer arrived (refused, reset, timed out,
    bad URL); ``error`` says why in that case. ``body`` is the parsed JSON answer when there is
    one. ``retry_after`` is the wait a 429 asks for, in seconds.
    """

    status: int
    body: Optional[Dict[str, Any]] = None
    retry_after: float = 1.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer or a server-side failure: the same batch may succeed later."""
        return self.status == 0 or self.status >= 500 or self.status == 408

    def refuses_client_field(self) -> bool:
        """A 400 that names the ``client`` object (a server without the reach part)."""
        if self.status != 400 or not isinstance(self.body, dict):
            return False
        error = self.body.get("error")
        if not isinstance(error, dict):
            return False
        field = str(error.get("field") or "")
        message = str(error.get("message") or "")
        return field.startswith("client") or "`client`" in message


def parse_retry_after(header: Optional[str], now: Optional[float] = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Missing or unreadable → 1 s; clamped to [0, :data:`MAX_RETRY_AFTER`].
    """
    if header is None:
        return 1.0
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return 1.0
    if seconds != seconds:  # NaN
        return 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def encode(batch: List[Dict[str, Any]], client: Optional[Dict[str, Any]]) -> bytes:
    """The request body: ``{"signals": [...]}`` plus ``"client"`` when given."""
    body: Dict[str, Any] = {"signals": batch}
    if client is not None:
        body["client"] = client
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def post(url: str, token: str, body: bytes, timeout: float) -> Outcome:
    """Sends one batch; never raises (every failure is an :class:`Outcome` with status 0)."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=max(timeout, 0.001)) as response:
            return Outcome(status=response.status, body=_json(response.read()))
    except urllib.error.HTTPError as e:
        try:
            raw = e.read()
        except Exception:  # noqa: BLE001 - a body we cannot read is no body
            raw = b""
        retry = parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
        return Outcome(status=e.code, body=_json(raw), retry_after=retry)
    except Exception as e:  # noqa: BLE001 - refused, reset, timeout, bad URL: all "no answer"
        return Outcome(status=0, error=f"{type(e).__name__}: {e}")


def _json(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
