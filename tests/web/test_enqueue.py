"""The request path's Redis writer: Dramatiq-compatible messages, batching, and every failure mode."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from ingest.dev.embedded import EmbeddedRedis, _free_port
from ingest.web.enqueue import EnqueueError, Enqueuer
from ingest.web.redis_pipe import RedisPipe, RedisPipeError, ReplyError, pack

QUEUE = "vapi-events"


def body(n: int) -> bytes:
    return orjson.dumps({"message": {"type": "speech-update", "n": n, "call": {"id": f"call-{n}"}}})


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, str]]:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start(port=_free_port())
    try:
        yield server, url
    finally:
        server.stop()


def queued(url: str, namespace: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(url)
    ids = client.lrange(f"{namespace}:{QUEUE}", 0, -1)
    return [orjson.loads(client.hget(f"{namespace}:{QUEUE}.msgs", i) or b"null") for i in ids]


def test_pack_is_redis_protocol() -> None:
    assert b"".join(pack([b"SET", b"k", b"v\r\n"])) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"


def test_concurrent_sends_share_batches_and_are_dramatiq_messages(redis_server_url: str, redis_namespace: str) -> None:
    async def run() -> None:
        enqueuer = Enqueuer(redis_server_url, QUEUE, namespace=redis_namespace, timeout=2.0)
        try:
            await asyncio.gather(*(enqueuer.send(body(n), 1_700_000_000_000 + n) for n in range(300)))
        finally:
            await enqueuer.close()

    asyncio.run(run())
    messages = queued(redis_server_url, redis_namespace)
    assert len(messages) == 300
    assert [m["args"][0]["message"]["n"] for m in messages] == list(range(300))  # type: ignore[index]
    first = messages[0]
    assert first["actor_name"] == "apply_event"
    assert first["queue_name"] == QUEUE
    assert first["args"] == [orjson.loads(body(0)), 1_700_000_000_000]
    assert first["options"]["redis_message_id"]  # type: ignore[index]
    assert len({m["message_id"] for m in messages}) == 300


def test_database_number_and_password_from_the_url(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start(port=_free_port())
    try:
        redis.Redis.from_url(url).config_set("requirepass", "s3cret")
        authed = url.replace("redis://", "redis://:s3cret@").rstrip("/") + "/3"

        async def run(target: str) -> object:
            pipe = RedisPipe(target, connect_timeout=1.0)
            try:
                await pipe.call(b"SET", b"where", b"db3")
                return await pipe.call(b"GET", b"where")
            finally:
                await pipe.close()

        assert asyncio.run(run(authed)) == b"db3"
        assert redis.Redis.from_url(authed).get("where") == b"db3"
        assert redis.Redis.from_url(authed.rsplit("/", 1)[0] + "/0").get("where") is None
        with pytest.raises(RedisPipeError, match="NOAUTH|cannot connect"):
            asyncio.run(run(url))
    finally:
        server.stop()


def test_error_reply_is_raised_and_the_connection_stays_usable(redis_server_url: str) -> None:
    async def run() -> None:
        pipe = RedisPipe(redis_server_url, connect_timeout=1.0)
        try:
            with pytest.raises(ReplyError, match="unknown command"):
                await pipe.call(b"NOSUCHCOMMAND")
            assert await pipe.call(b"PING") == b"PONG"
        finally:
            await pipe.close()

    asyncio.run(run())


def test_unreachable_redis_fails_fast_and_ping_says_so() -> None:
    async def run() -> None:
        enqueuer = Enqueuer(f"redis://127.0.0.1:{_free_port()}/0", QUEUE, timeout=0.3)
        try:
            assert await enqueuer.ping() is False
            with pytest.raises(EnqueueError, match="cannot connect"):
                await enqueuer.send(body(1), 1)
        finally:
            await enqueuer.close()

    asyncio.run(run())


def test_restarted_redis_is_reconnected(private_redis: tuple[EmbeddedRedis, str]) -> None:
    server, url = private_redis

    async def run() -> None:
        enqueuer = Enqueuer(url, QUEUE, namespace="ns", timeout=1.0)
        try:
            await enqueuer.send(body(1), 1)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            server.stop()
            with pytest.raises(EnqueueError, match="connection"):
                await enqueuer.send(body(2), 2)
            server.start(port=port)
            await enqueuer.send(body(3), 3)
        finally:
            await enqueuer.close()

    asyncio.run(run())
    assert [m["args"][0]["message"]["n"] for m in queued(url, "ns")] == [1, 3]  # type: ignore[index]


def test_a_failed_transaction_fails_its_batch_only(redis_server_url: str, redis_namespace: str) -> None:
    """A command Redis refuses inside the transaction: that batch is not taken, the next one is."""
    client = redis.Redis.from_url(redis_server_url)
    list_key = f"{redis_namespace}:{QUEUE}"

    async def run() -> None:
        enqueuer = Enqueuer(redis_server_url, QUEUE, namespace=redis_namespace, timeout=1.0)
        try:
            client.set(list_key, "not a list")
            with pytest.raises(EnqueueError, match="WRONGTYPE"):
                await asyncio.gather(enqueuer.send(body(1), 1), enqueuer.send(body(2), 2))
            client.delete(list_key, f"{list_key}.msgs")
            await enqueuer.send(body(3), 3)
        finally:
            await enqueuer.close()

    asyncio.run(run())
    assert [m["args"][0]["message"]["n"] for m in queued(redis_server_url, redis_namespace)] == [3]  # type: ignore[index]


def test_a_frozen_redis_times_out_within_the_limit(private_redis: tuple[EmbeddedRedis, str]) -> None:
    server, url = private_redis
    pid = int(redis.Redis.from_url(url).info("server")["process_id"])

    async def run() -> float:
        enqueuer = Enqueuer(url, QUEUE, namespace="ns", timeout=0.2)
        try:
            await enqueuer.send(body(1), 1)
            os.kill(pid, signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                with pytest.raises(EnqueueError, match="did not answer within 200 ms"):
                    await enqueuer.send(body(2), 2)
                elapsed = loop.time() - started
                assert enqueuer._redis._protocol is None  # the stalled connection was dropped
            finally:
                os.kill(pid, signal.SIGCONT)
            await enqueuer.send(body(3), 3)  # a fresh connection to the woken Redis
            return elapsed
        finally:
            await enqueuer.close()

    assert asyncio.run(run()) < 1.0
    # The timed-out write may still have reached Redis once it woke: a duplicate at worst, never a loss.
    assert [m["args"][0]["message"]["n"] for m in queued(url, "ns")] in ([1, 3], [1, 2, 3])  # type: ignore[index]
