"""Failed attempts per address in Redis (the `limits` library), and in memory when Redis is down."""

from __future__ import annotations

import asyncio

import pytest

from ingest.dev.embedded import _free_port
from ingest.errors import ConfigError
from ingest.web.failure_limit import FailureLimit, parse_limit


async def _exhaust(limit: FailureLimit, address: str, times: int) -> list[int | None]:
    waits = []
    for _ in range(times):
        waits.append(await limit.retry_after(address))
        await limit.failed(address)
    waits.append(await limit.retry_after(address))
    await limit.close()
    return waits


def test_past_the_limit_an_address_waits_and_others_do_not(redis_server_url: str, redis_namespace: str) -> None:
    """Three failures of 3/minute block that address for up to a minute; another address is untouched."""
    limit = FailureLimit(redis_server_url, redis_namespace, "test", parse_limit("X", "3/minute"))
    waits = asyncio.run(_exhaust(limit, "192.0.2.1", 3))
    assert waits[:3] == [None, None, None]
    assert waits[3] is not None
    assert 1 <= waits[3] <= 60
    other = FailureLimit(redis_server_url, redis_namespace, "test", parse_limit("X", "3/minute"))
    assert asyncio.run(_exhaust(other, "192.0.2.2", 0)) == [None]


def test_redis_down_counts_in_memory(redis_namespace: str) -> None:
    """With Redis unreachable the limit still holds, in this process."""
    limit = FailureLimit(f"redis://127.0.0.1:{_free_port()}/0", redis_namespace, "test", parse_limit("X", "2/minute"))
    assert asyncio.run(_exhaust(limit, "192.0.2.1", 2))[2] is not None


@pytest.mark.parametrize("text", ["ten per minute", "0/minute", ""])
def test_bad_limits_name_the_variable(text: str) -> None:
    """A limit that is not in the `limits` notation, or allows nothing, is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="INGEST_OPS_LOGIN_LIMIT"):
        parse_limit("INGEST_OPS_LOGIN_LIMIT", text)
