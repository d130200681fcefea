"""The client of Vapi's REST API, against the stand-in served on a local port."""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest.dev.embedded import _free_port
from ingest.errors import ConfigError
from ingest.settings import Settings
from ingest.vapi_api import DEFAULT_BASE_URL, ApiSettings, VapiApi, VapiApiError, calls_updated_between
from tests.support.vapi_api import API_KEY, FakeVapi, iso, make_call, serve_vapi

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def quick(base_url: str, **changes: object) -> ApiSettings:
    """Settings with tiny waits, so that retries take milliseconds."""
    settings = ApiSettings(
        api_key=API_KEY,
        base_url=base_url,
        timeout=2.0,
        max_attempts=3,
        max_requests_per_second=1000,
        backoff_base=0.01,
        backoff_max=0.05,
        retry_after_max=2.0,
    )
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeVapi:
    return FakeVapi()


@pytest.fixture
def base_url(fake: FakeVapi) -> Iterator[str]:
    with serve_vapi(fake) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[VapiApi]:
    with VapiApi(quick(base_url)) as client:
        yield client


def updated(at: datetime, **changes: object) -> dict[str, object]:
    return make_call(created_at=at - timedelta(minutes=5), updated_at=at, **changes)  # type: ignore[arg-type]


def test_list_calls_filters_strictly_by_updated_at(fake: FakeVapi, api: VapiApi) -> None:
    """``list_calls`` sends updatedAtGt/Lt and gets the calls strictly between them."""
    calls = [updated(T0 + timedelta(minutes=m)) for m in range(5)]
    fake.add(*calls)
    got = api.list_calls(T0, T0 + timedelta(minutes=4))
    assert sorted(call["id"] for call in got) == sorted(call["id"] for call in calls[1:4])
    assert fake.requests[0].params == {
        "updatedAtGt": iso(T0),
        "updatedAtLt": iso(T0 + timedelta(minutes=4)),
        "limit": "1000",
    }


def test_window_includes_its_start_and_excludes_its_end(fake: FakeVapi, api: VapiApi) -> None:
    """``calls_updated_between`` yields calls updated in [start, end), to the millisecond."""
    start, end = T0, T0 + timedelta(hours=1)
    at_start, inside, at_end = updated(start), updated(start + timedelta(minutes=1)), updated(end)
    before = updated(start - timedelta(milliseconds=1))
    fake.add(at_start, inside, at_end, before)
    got = {call["id"] for call in calls_updated_between(api, start, end)}
    assert got == {at_start["id"], inside["id"]}


def test_full_windows_are_split_until_every_call_came_once(fake: FakeVapi, api: VapiApi) -> None:
    """2,500 calls in one window with limit 1000: each call comes exactly once, in a few requests."""
    calls = [updated(T0 + timedelta(seconds=7 * n)) for n in range(2500)]
    fake.add(*calls)
    got = [call["id"] for call in calls_updated_between(api, T0, T0 + timedelta(days=1))]
    assert sorted(got) == sorted(call["id"] for call in calls)
    assert len(fake.list_requests) <= 9


def test_calls_sharing_one_millisecond_are_split_by_created_at(fake: FakeVapi, api: VapiApi) -> None:
    """More calls than ``limit`` with one and the same ``updatedAt`` still come once each."""
    calls = [make_call(created_at=T0 - timedelta(seconds=n), updated_at=T0 + timedelta(minutes=1)) for n in range(25)]
    fake.add(*calls, updated(T0 + timedelta(minutes=2)))
    got = [call["id"] for call in calls_updated_between(api, T0, T0 + timedelta(hours=1), limit=10)]
    assert len(got) == 26
    assert set(got) >= {call["id"] for call in calls}


def test_calls_no_filter_can_separate_are_kept_with_a_warning(
    fake: FakeVapi, api: VapiApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls with the same ``updatedAt`` and ``createdAt`` beyond ``limit``: what came back, and a warning."""
    fake.add(*[make_call(created_at=T0, updated_at=T0 + timedelta(minutes=1)) for _ in range(12)])
    with caplog.at_level(logging.WARNING, logger="ingest.vapi_api"):
        got = list(calls_updated_between(api, T0, T0 + timedelta(hours=1), limit=10))
    assert len(got) == 10
    assert "share one millisecond" in caplog.text


def test_a_call_updated_before_its_window_is_read_comes_once_as_it_is_now(fake: FakeVapi, api: VapiApi) -> None:
    """A call whose ``updatedAt`` moves mid-run, before its window is read, comes once, in its new state."""
    calls = [updated(T0 + timedelta(minutes=n)) for n in range(30)]
    fake.add(*calls)
    moving, moved_to = calls[0]["id"], T0 + timedelta(minutes=29, seconds=30)

    def move(vapi: FakeVapi) -> None:
        if len(vapi.list_requests) == 2:  # after the first, full, answer
            vapi.update(moving, moved_to)

    fake.on_list = move
    got = list(calls_updated_between(api, T0, T0 + timedelta(hours=1), limit=10))
    assert sorted(call["id"] for call in got) == sorted(call["id"] for call in calls)
    assert next(call["updatedAt"] for call in got if call["id"] == moving) == iso(moved_to)


def test_a_call_updated_after_it_was_read_comes_once(fake: FakeVapi, api: VapiApi) -> None:
    """A call yielded, then moved into a window not read yet, is not yielded a second time."""
    calls = [updated(T0 + timedelta(minutes=n)) for n in range(30)]
    fake.add(*calls)
    got = []
    for call in calls_updated_between(api, T0, T0 + timedelta(hours=1), limit=10):
        got.append(call["id"])
        if call["id"] == calls[0]["id"]:
            fake.update(call["id"], T0 + timedelta(minutes=29, seconds=30))
    assert sorted(got) == sorted(call["id"] for call in calls)


def test_get_call_finds_one_call_or_none(fake: FakeVapi, api: VapiApi) -> None:
    """``get_call`` returns the Call object, or None for a call Vapi does not know."""
    call = updated(T0)
    fake.add(call)
    assert api.get_call(call["id"]) == call
    assert api.get_call("6f1e7c52-0000-4000-8000-000000000000") is None


def test_the_private_key_goes_in_a_bearer_header(fake: FakeVapi, api: VapiApi) -> None:
    """Every request carries ``Authorization: Bearer <private key>``."""
    api.list_calls(T0, T0 + timedelta(hours=1))
    api.get_call("6f1e7c52-0000-4000-8000-000000000000")
    assert [seen.authorization for seen in fake.requests] == [f"Bearer {API_KEY}"] * 2


def test_a_refused_key_fails_at_once(fake: FakeVapi, base_url: str) -> None:
    """A 401 is not retried: the error names VAPI_API_KEY, not the key."""
    with VapiApi(quick(base_url, api_key="sk-wrong-secret-value")) as api:
        with pytest.raises(VapiApiError, match="VAPI_API_KEY") as raised:
            api.list_calls(T0, T0 + timedelta(hours=1))
        assert len(fake.requests) == 1
        assert "sk-wrong-secret-value" not in str(raised.value)


def test_a_429_is_waited_out_for_its_retry_after(fake: FakeVapi, api: VapiApi) -> None:
    """A 429 with ``Retry-After: 1`` is retried after a second, then succeeds."""
    fake.throttle(1, retry_after="1")
    started = time.monotonic()
    assert api.list_calls(T0, T0 + timedelta(hours=1)) == []
    assert time.monotonic() - started >= 0.95
    assert len(fake.requests) == 2


def test_a_retry_after_date_is_honoured_up_to_its_cap(fake: FakeVapi, base_url: str) -> None:
    """A ``Retry-After`` HTTP date an hour away waits ``retry_after_max``, not an hour."""
    fake.throttle(1, retry_after=email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True))
    with VapiApi(quick(base_url, retry_after_max=0.4)) as api:
        started = time.monotonic()
        api.list_calls(T0, T0 + timedelta(hours=1))
        assert 0.35 <= time.monotonic() - started < 1.5


def test_server_errors_are_retried_then_give_up(fake: FakeVapi, api: VapiApi) -> None:
    """5xx answers are retried; after ``max_attempts`` a clear error, and no more requests."""
    fake.fail(2)
    assert api.list_calls(T0, T0 + timedelta(hours=1)) == []
    assert len(fake.requests) == 3
    fake.fail(5)
    with pytest.raises(VapiApiError, match=r"GET /call answered 500, 3 tries"):
        api.list_calls(T0, T0 + timedelta(hours=1))
    assert len(fake.requests) == 6


def test_a_hanging_api_times_out_into_an_error(fake: FakeVapi, base_url: str) -> None:
    """A request that never answers times out, is retried, and ends in an error within the timeouts."""
    fake.hang(2)
    with VapiApi(quick(base_url, timeout=0.3, max_attempts=2)) as api:
        started = time.monotonic()
        with pytest.raises(VapiApiError, match="timed out, 2 tries"):
            api.get_call("6f1e7c52-0000-4000-8000-000000000000")
        assert time.monotonic() - started < 2


def test_a_dead_api_gives_a_clear_error() -> None:
    """Nothing listening: the connection error is retried, then reported."""
    dead = f"http://127.0.0.1:{_free_port()}"
    with VapiApi(quick(dead)) as api, pytest.raises(VapiApiError, match="GET /call connection failed"):
        api.list_calls(T0, T0 + timedelta(hours=1))


def test_requests_keep_to_the_rate(fake: FakeVapi, base_url: str) -> None:
    """At 10 requests per second, six requests take half a second at least, evenly spaced."""
    with VapiApi(quick(base_url, max_requests_per_second=10)) as api:
        for _ in range(6):
            api.get_call("6f1e7c52-0000-4000-8000-000000000000")
        times = [seen.at for seen in fake.requests]
        assert times[-1] - times[0] >= 0.45
        assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.08


def test_the_key_is_never_logged_nor_in_errors(fake: FakeVapi, base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Retries, failures and settings' repr never show the private key."""
    fake.throttle(1, retry_after="0")
    fake.fail(3)
    settings = quick(base_url)
    with VapiApi(settings) as api:
        with caplog.at_level(logging.DEBUG), pytest.raises(VapiApiError) as raised:
            api.list_calls(T0, T0 + timedelta(hours=1))
        assert "try 2 of 3" in caplog.text
        for text in (caplog.text, str(raised.value), repr(settings)):
            assert API_KEY not in text


def test_limit_is_bounded_by_the_api() -> None:
    """``limit`` above Vapi's 1000 is a programming error, caught before any request."""
    with VapiApi(quick("http://127.0.0.1:9")) as api, pytest.raises(ValueError, match=r"1\.\.1000"):
        api.list_calls(T0, T0 + timedelta(hours=1), limit=1001)


def test_settings_read_the_key_and_url() -> None:
    """``VAPI_API_KEY`` turns the API on (default URL), ``VAPI_API_URL`` moves it; no key, no API."""
    assert Settings.from_env({}).vapi_api is None
    on = Settings.from_env({"VAPI_API_KEY": "k1"}).vapi_api
    assert on is not None
    assert (on.api_key, on.base_url) == ("k1", DEFAULT_BASE_URL)
    moved = Settings.from_env({"VAPI_API_KEY": "k1", "VAPI_API_URL": "http://127.0.0.1:9999/"}).vapi_api
    assert moved is not None
    assert moved.base_url == "http://127.0.0.1:9999"
    with pytest.raises(ConfigError, match="VAPI_API_URL"):
        ApiSettings.from_env({"VAPI_API_KEY": "k1", "VAPI_API_URL": "api.vapi.ai"})
