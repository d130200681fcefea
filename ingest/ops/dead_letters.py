"""Dramatiq's dead letters on Redis: list them, put them back on the queue, or delete them.

Dramatiq's Redis broker dead-letters a message (its ``nack``) by moving it from the
queue's hash to ``<ns>:<q>.XQ`` (a sorted set of message ids scored by the time, in ms)
and ``<ns>:<q>.XQ.msgs`` (id → message). It drops them after ``dead_message_ttl`` (7 days).

- ``list_dead_letters(client, namespace, queue_name, *, limit=None)`` → ``list[DeadLetter]``,
  oldest first.
- ``requeue(client, namespace, queue_name, ids=None, *, now_ms=None)`` → ``RequeueResult``:
  each message (every one when ``ids`` is None) moves back to the main queue in one Lua
  script, doing what Dramatiq's ``enqueue`` does (``HSET <q>.msgs``, ``RPUSH <q>``) and
  removing it from the dead-letter pair, atomically; a message another operator moved or
  deleted meanwhile is not queued twice. On the way its retry count goes back to 0 and its
  ``message_timestamp`` becomes now: otherwise the Retries middleware would find its budget
  spent and the AgeLimit middleware (``max_age`` one day) would silently drop an old message
  again. A delayed retry's ``eta`` is removed and its queue name made the main queue's.
- ``purge(client, namespace, queue_name, ids)`` → how many were deleted, atomically.
- ``purge_events(client, namespace, queue_name, dedupe_keys)`` → how many were deleted: the
  dead letters whose body is one of these ``call_events`` rows. A message carries the
  webhook body and its received-at time, exactly what the worker turned into the event it
  recorded, so the body's dedupe key (``Event.from_body``, ``event_key``) names the row;
  every redelivery of the same event has the same key and goes too. ``ingest.ops.events.
  discard`` uses it, so a discarded event leaves no dead letter behind.

Nothing else here touches ``call_events``. Every dead-lettered event is recorded there as
``failed`` too: one the actor raised on, with its error; one dropped for its age (it never
reached the actor) by the workers' middleware (``after_skip_message``), so ``ingest events
list --failed`` shows it and ``ingest events reapply`` applies it without the queue.

The error a dead letter carries is the traceback Dramatiq saved in the message when it
queued its last retry: the error of the attempt before the last. The final attempt's error
is not stored with the message (the broker moves the stored copy aside, and a permanent
failure on a first attempt leaves none); ``call_events.last_error`` has it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from ingest.event import Event
from ingest.mapping.event_key import event_key
from ingest.mapping.identity import call_id, session_id
from ingest.queue_keys import QueueKeys

CHUNK = 100  # messages read (and moved, atomically) per round trip: end-of-call reports are large

# KEYS: dead-letter set, its hash, the queue's list, its hash; ARGV: id, message, id, message…
# A message is moved only while it is still dead-lettered; returns the ids moved.
REQUEUE_SCRIPT = """
local moved = {}
for i = 1, #ARGV, 2 do
    if redis.call("zrem", KEYS[1], ARGV[i]) == 1 then
        redis.call("hdel", KEYS[2], ARGV[i])
        redis.call("hset", KEYS[4], ARGV[i], ARGV[i + 1])
        redis.call("rpush", KEYS[3], ARGV[i])
        moved[#moved + 1] = ARGV[i]
    end
end
return moved
"""


@dataclass(frozen=True)
class DeadLetter:
    id: str  # the Redis message id (``options.redis_message_id``)
    dead_at: datetime
    actor: str | None
    message_type: str | None
    call: str | None  # call id, else session id
    retries: int
    enqueued_at: datetime | None  # ``message_timestamp``
    error: str | None  # last line of the traceback Dramatiq kept (before the last retry), if any

    def as_dict(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class RequeueResult:
    requeued: int
    not_found: list[str] = field(default_factory=list)  # no longer dead-lettered
    unreadable: list[str] = field(default_factory=list)  # not a JSON Dramatiq message: left where it is


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _decode(data: bytes | str) -> dict[str, Any] | None:
    for loads in (orjson.loads, json.loads):
        try:
            value = loads(data)
        except ValueError:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            continue
        return value if isinstance(value, dict) else None
    return None


def _encode(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message)
    except TypeError:  # an integer beyond 64 bits, which only the standard library writes
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def _instant(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if isinstance(ms, (int, float)) else None


def _dead_letter(redis_id: str, score: float, message: dict[str, Any]) -> DeadLetter:
    options = _obj(message.get("options"))
    args = message.get("args")
    event = _obj(_obj(args[0] if isinstance(args, list) and args else None).get("message"))
    traceback = options.get("traceback")
    lines = [line for line in traceback.splitlines() if line.strip()] if isinstance(traceback, str) else []
    retries = options.get("retries")
    return DeadLetter(
        id=redis_id,
        dead_at=datetime.fromtimestamp(score / 1000, UTC),
        actor=message.get("actor_name") if isinstance(message.get("actor_name"), str) else None,
        message_type=event.get("type") if isinstance(event.get("type"), str) else None,
        call=call_id(event) or session_id(event),
        retries=retries if isinstance(retries, int) else 0,
        enqueued_at=_instant(message.get("message_timestamp")),
        error=lines[-1].strip()[:500] if lines else None,
    )


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def dead_letter_ids(client: redis.Redis, namespace: str, queue_name: str) -> list[str]:
    """Every dead-lettered message id, oldest first."""
    keys = QueueKeys(namespace, queue_name)
    return [_text(raw) for raw in client.zrange(keys.dead, 0, -1)]


def list_dead_letters(
    client: redis.Redis, namespace: str, queue_name: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """The dead letters, oldest first (at most ``limit``); unreadable ones show their id only."""
    keys = QueueKeys(namespace, queue_name)
    entries: list[Any] = client.zrange(keys.dead, 0, -1 if limit is None else limit - 1, withscores=True)
    scored = {_text(raw): float(score) for raw, score in entries}
    letters = []
    for chunk in _chunks(list(scored)):
        for redis_id, data in zip(chunk, client.hmget(keys.dead_messages, chunk), strict=True):
            message = _decode(data) if data is not None else None
            letters.append(_dead_letter(redis_id, scored[redis_id], message or {}))
    return letters


def revived(message: dict[str, Any], queue_name: str, now_ms: int) -> dict[str, Any]:
    """The message as a fresh delivery on the main queue: no retries spent, enqueued now."""
    options = {key: value for key, value in (message.get("options") or {}).items() if key != "eta"}
    options["retries"] = 0
    return {**message, "queue_name": queue_name, "message_timestamp": now_ms, "options": options}


def requeue(
    client: redis.Redis,
    namespace: str,
    queue_name: str,
    ids: Sequence[str] | None = None,
    *,
    now_ms: int | None = None,
) -> RequeueResult:
    """Move dead letters (all when ``ids`` is None) back to the end of the main queue."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    keys = QueueKeys(namespace, queue_name)
    wanted = list(dict.fromkeys(ids)) if ids is not None else dead_letter_ids(client, namespace, queue_name)
    script = client.register_script(REQUEUE_SCRIPT)
    requeued, not_found, unreadable = 0, [], []
    for chunk in _chunks(wanted):
        sent: list[str] = []
        args: list[str | bytes] = []
        for redis_id, data in zip(chunk, client.hmget(keys.dead_messages, chunk), strict=True):
            message = _decode(data) if data is not None else None
            if data is None:
                not_found.append(redis_id)
            elif message is None:
                unreadable.append(redis_id)
            else:
                sent.append(redis_id)
                args += [redis_id, _encode(revived(message, queue_name, now_ms))]
        if not sent:
            continue
        moved = {
            _text(raw) for raw in script(keys=[keys.dead, keys.dead_messages, keys.ready, keys.messages], args=args)
        }
        requeued += len(moved)
        not_found += [redis_id for redis_id in sent if redis_id not in moved]  # moved or deleted meanwhile
    return RequeueResult(requeued=requeued, not_found=not_found, unreadable=unreadable)


def purge(client: redis.Redis, namespace: str, queue_name: str, ids: Sequence[str]) -> int:
    """Delete these dead letters; returns how many there were."""
    keys = QueueKeys(namespace, queue_name)
    deleted = 0
    for chunk in _chunks(list(dict.fromkeys(ids))):
        pipe = client.pipeline(transaction=True)
        pipe.zrem(keys.dead, *chunk)
        pipe.hdel(keys.dead_messages, *chunk)
        removed, _ = pipe.execute()
        deleted += int(removed)
    return deleted


def _dedupe_key(message: dict[str, Any]) -> str | None:
    """The ``call_events.dedupe_key`` of the event a message carries, or None if it carries none."""
    args = message.get("args")
    if not isinstance(args, list) or len(args) != 2:
        return None
    body, received_at_ms = args
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict) or not isinstance(received_at_ms, int):
        return None
    return event_key(Event.from_body(body, received_at_ms).message)


def purge_events(client: redis.Redis, namespace: str, queue_name: str, dedupe_keys: set[str]) -> int:
    """Delete the dead letters carrying one of these events (by dedupe key); returns how many."""
    keys = QueueKeys(namespace, queue_name)
    doomed: list[str] = []
    for chunk in _chunks(dead_letter_ids(client, namespace, queue_name)):
        for redis_id, data in zip(chunk, client.hmget(keys.dead_messages, chunk), strict=True):
            message = _decode(data) if data is not None else None
            if message is not None and _dedupe_key(message) in dedupe_keys:
                doomed.append(redis_id)
    return purge(client, namespace, queue_name, doomed)
