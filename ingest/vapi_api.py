"""A client of Vapi's REST API for reconciliation: list calls by ``updatedAt`` and fetch one call.

``GET /call`` answers a bare array of Call objects, at most ``limit`` (1000) of them, with no
cursor and no documented order: the only way to page is to narrow the window. So
``calls_updated_between`` asks for a whole window, and when the answer is full (exactly
``limit`` calls, so some may be missing) it throws it away and asks for each half, recursively,
oldest half first. Calls whose ``updatedAt`` is one and the same millisecond cannot be told apart
by ``updatedAt``: a full one-millisecond window is split by ``createdAt`` instead (never later than
``updatedAt``). Should even one millisecond of ``createdAt`` within one millisecond of
``updatedAt`` come back full, no filter of the API can separate those calls: what came back is
kept and a warning (with the count only) is logged. A call updated while the run goes on may come
back in two windows; the first state seen is kept (the newer one comes with the next run).

Being a polite client: every request waits its turn (``max_requests_per_second``); a ``429``
waits the ``Retry-After`` Vapi gives (seconds or an HTTP date, capped by ``retry_after_max``);
``5xx``, timeouts and connection errors back off exponentially with jitter; after
``max_attempts`` tries, or at once on any other answer, ``VapiApiError`` says what failed.
The private key goes only into the ``Authorization`` header: never into a message or a log line.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from ingest.errors import ConfigError

__all__ = ["DEFAULT_BASE_URL", "MAX_LIMIT", "ApiSettings", "VapiApi", "VapiApiError", "calls_updated_between"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.vapi.ai"
MAX_LIMIT = 1000  # GET /call's own bound on `limit`
_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ApiSettings:
    """Where Vapi's API is, the private key, and how patiently to talk to it."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0
    max_attempts: int = 5
    max_requests_per_second: float = 5.0
    backoff_base: float = 0.5  # first backoff on 5xx/timeouts, doubled on each further try
    backoff_max: float = 30.0
    retry_after_max: float = 60.0  # the longest Retry-After honoured; longer ones wait this long

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings | None:
        """``VAPI_API_KEY`` and ``VAPI_API_URL``; None when no key is set (reconciliation is off)."""
        key = env.get("VAPI_API_KEY", "").strip()
        if not key:
            return None
        base_url = (env.get("VAPI_API_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"VAPI_API_URL must be an http(s) URL, got {base_url!r}")
        return cls(api_key=key, base_url=base_url)


class VapiApiError(Exception):
    """Vapi's API could not be read: the message says which request and why (never the key)."""


def _stamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as Vapi writes its own timestamps."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), cap)


class _Pacer:
    """At most ``rate`` requests per second: each one waits for its slot (no bursts)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class VapiApi:
    """``GET /call`` and ``GET /call/{id}`` with retries, backoff and a bounded rate."""

    def __init__(self, settings: ApiSettings, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(timeout=settings.timeout)
        self._owns_client = client is None
        self._pacer = _Pacer(settings.max_requests_per_second)

    def list_calls(
        self,
        updated_after: datetime,
        updated_before: datetime,
        limit: int = MAX_LIMIT,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """One ``GET /call``: calls with ``updated_after < updatedAt < updated_before`` (and the
        ``createdAt`` bounds when given, strict too), at most ``limit`` of them."""
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit must be within 1..{MAX_LIMIT}, got {limit}")
        params = {"updatedAtGt": _stamp(updated_after), "updatedAtLt": _stamp(updated_before), "limit": str(limit)}
        if created_after is not None:
            params["createdAtGt"] = _stamp(created_after)
        if created_before is not None:
            params["createdAtLt"] = _stamp(created_before)
        answer = self._get("/call", params)
        body = _json(answer, "GET /call")
        if not isinstance(body, list) or not all(isinstance(call, dict) for call in body):
            raise VapiApiError("GET /call did not answer an array of calls")
        return body

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """One ``GET /call/{id}``; None when Vapi does not know the call (404)."""
        answer = self._get(f"/call/{quote(call_id, safe='')}", {}, missing_ok=True)
        if answer.status_code == 404:
            return None
        body = _json(answer, "GET /call/{id}")
        if not isinstance(body, dict):
            raise VapiApiError("GET /call/{id} did not answer a call object")
        return body

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> VapiApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, str], *, missing_ok: bool = False) -> httpx.Response:
        what = "GET /call/{id}" if path != "/call" else "GET /call"
        headers = {"Authorization": f"Bearer {self.settings.api_key}", "Accept": "application/json"}
        problem = ""
        wait: float | None
        for attempt in range(1, self.settings.max_attempts + 1):
            self._pacer.wait()
            try:
                answer = self._client.get(self.settings.base_url + path, params=params, headers=headers)
            except httpx.TimeoutException:
                problem, wait = "timed out", None
            except httpx.TransportError as exc:
                problem, wait = f"connection failed ({type(exc).__name__})", None
            else:
                status = answer.status_code
                if status < 300:
                    return answer
                if status == 404 and missing_ok:
                    return answer
                if status in (401, 403):
                    raise VapiApiError(f"{what} was refused ({status}): check VAPI_API_KEY (a private key)")
                if status != 429 and status < 500:
                    raise VapiApiError(f"{what} answered {status}")
                problem = f"answered {status}"
                wait = _retry_after(answer.headers.get("retry-after"), self.settings.retry_after_max)
            if attempt == self.settings.max_attempts:
                break
            delay = wait if wait is not None else self._backoff(attempt)
            log.warning("%s %s; try %d of %d in %.1fs", what, problem, attempt + 1, self.settings.max_attempts, delay)
            time.sleep(delay)
        raise VapiApiError(f"{what} {problem}, {self.settings.max_attempts} tries: giving up")

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter: between half and all of ``backoff_base * 2**(attempt-1)``, capped."""
        ceiling = min(self.settings.backoff_max, self.settings.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _json(answer: httpx.Response, what: str) -> Any:
    try:
        return answer.json()
    except ValueError:
        raise VapiApiError(f"{what} answered something that is not JSON") from None


def _ceil_ms(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    floor = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return floor if floor == moment else floor + _MS


def calls_updated_between(
    api: VapiApi, start: datetime, end: datetime, limit: int = MAX_LIMIT
) -> Iterator[dict[str, Any]]:
    """Every call whose ``updatedAt`` lies in [start, end), once each, oldest windows first."""
    seen: set[str] = set()
    # Vapi's timestamps have millisecond precision: [start, end) is (ceil(start) - 1 ms, ceil(end)).
    windows = [(_ceil_ms(start) - _MS, _ceil_ms(end))]
    while windows:
        after, before = windows.pop()
        calls = api.list_calls(after, before, limit)
        if len(calls) >= limit and before - after > 2 * _MS:
            middle = after + (before - after) / 2
            middle = _ceil_ms(middle)
            windows += [(middle - _MS, before), (after, middle)]  # popped oldest first
            continue
        if len(calls) >= limit:  # one millisecond of updatedAt, full: separate by createdAt
            calls = list(_same_update(api, after, before, limit))
        for call in calls:
            call_id = str(call.get("id"))
            if call_id not in seen:
                seen.add(call_id)
                yield call


def _same_update(api: VapiApi, after: datetime, before: datetime, limit: int) -> Iterator[dict[str, Any]]:
    """The calls of a one-millisecond ``updatedAt`` window, split by ``createdAt`` (<= ``updatedAt``)."""
    windows = [(_EPOCH, before)]
    while windows:
        low, high = windows.pop()
        calls = api.list_calls(after, before, limit, created_after=low, created_before=high)
        if len(calls) >= limit and high - low > 2 * _MS:
            middle = _ceil_ms(low + (high - low) / 2)
            windows += [(middle - _MS, high), (low, middle)]
            continue
        if len(calls) >= limit:
            log.warning("%d calls share one millisecond of updatedAt and createdAt: some may be missed", len(calls))
        yield from calls
