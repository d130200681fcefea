"""``ingest dev --demo``: sample calls sent through the real endpoint, then what they produced.

The ``*.jsonl`` calls and the ``*.json`` event beside this module are byte-for-byte copies
of recorded bodies in ``tests/fixtures/`` (an installed package has no ``tests/``;
``tests/dev/test_stack.py`` fails when a copy no longer matches its fixture). Every run gives
each call a fresh id, so a repeated demo adds calls instead of deduplicating to nothing, and
moves every time in it so that the call ended a minute ago (``shift``): the demo's calls are
the newest, not look-alikes of the recorded ones. It also sends one status update whose call
id is not a UUID: it can never map, so the worker records it as failed, which gives the ops
page's failures panel something to show.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import psycopg

from ingest import queries
from ingest.body import loads_storable, parse_envelope
from ingest.cli.replay import Summary, iter_bodies, send_all
from ingest.dev.demo import shift
from ingest.mapping.event_key import event_key
from ingest.vocabulary import EventState
from ingest.web.auth_settings import AuthSettings

DEMO_DIR: Final = Path(__file__).resolve().parent
CALLS: Final = ("outbound_no_answer.jsonl", "voicemail.jsonl", "transferred.jsonl", "assistant_request_first.jsonl")
FAILING: Final = "status_update_bad_call_id.json"
WAIT_TIMEOUT: Final = 90.0


@dataclass(frozen=True)
class Demo:
    """One run's bodies, with the ids they were given."""

    bodies: list[tuple[str, bytes]]
    call_ids: tuple[str, ...]
    failing_call_id: str
    event_keys: frozenset[str]

    @property
    def all_ids(self) -> list[str]:
        return [*self.call_ids, self.failing_call_id]


def _as_new_call(path: Path, new_id: str, now_ms: int) -> list[tuple[str, bytes]]:
    """Every body of ``path`` with its call id replaced by ``new_id`` wherever it appears, ending now."""
    labels, bodies = zip(*iter_bodies(path), strict=True)
    old = orjson.loads(bodies[0])["message"]["call"]["id"].encode()
    renamed = [body.replace(old, new_id.encode()) for body in bodies]
    return list(zip(labels, shift.shift(renamed, shift.delta_to_now(renamed, now_ms)), strict=True))


def _key(body: bytes) -> str:
    """The dedupe key the worker will record this body under (parsed as the endpoint and worker do)."""
    _, queued = parse_envelope(body)
    return event_key(loads_storable(queued)["message"])


def prepare() -> Demo:
    """The sample calls, each under a fresh call id and ending now, then the event that fails on purpose."""
    now_ms = int(time.time() * 1000)
    bodies: list[tuple[str, bytes]] = []
    call_ids = tuple(str(uuid.uuid4()) for _ in CALLS)
    for name, call_id in zip(CALLS, call_ids, strict=True):
        bodies += _as_new_call(DEMO_DIR / name, call_id, now_ms)
    failing_call_id = f"call_demo_{secrets.token_hex(6)}"  # not a UUID: can never map
    bodies += _as_new_call(DEMO_DIR / FAILING, failing_call_id, now_ms)
    return Demo(bodies, call_ids, failing_call_id, frozenset(_key(body) for _, body in bodies))


@dataclass(frozen=True)
class DemoResult:
    """What the workers made of a demo run, read back from the database."""

    states: Mapping[str, int]
    session_rows: int
    all_session_rows: int
    failures: list[tuple[str, str]]

    @property
    def events(self) -> int:
        return sum(self.states.values())


def read_outcome(database_url: str, demo: Demo) -> DemoResult:
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = {"ids": demo.all_ids}
        states: Counter[str] = Counter(
            {str(state): int(n) for state, n in conn.execute(queries.DEMO_EVENT_STATES, ids)}
        )
        rows = conn.execute(queries.DEMO_SESSION_ROWS, {"ids": list(demo.call_ids)}).fetchone()
        all_rows = conn.execute(queries.DEMO_ALL_SESSION_ROWS).fetchone()
        failures = [(str(kind), str(error)) for kind, error in conn.execute(queries.DEMO_FAILURES, ids)]
    return DemoResult(states, int(rows[0]) if rows else 0, int(all_rows[0]) if all_rows else 0, failures)


def settled(outcome: DemoResult, demo: Demo) -> bool:
    """Every event recorded, none still pending (``waiting`` ones wait for a row that may never come)."""
    return outcome.events >= len(demo.event_keys) and not outcome.states.get(EventState.PENDING.value)


def wait_for_workers(
    database_url: str, demo: Demo, *, check: Callable[[], None], timeout: float = WAIT_TIMEOUT
) -> tuple[DemoResult, bool]:
    """Poll until the workers have dealt with every event; ``check`` raises if the stack died."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        outcome = read_outcome(database_url, demo)
        if settled(outcome, demo):
            return outcome, True
        if time.monotonic() > deadline:
            return outcome, False
        time.sleep(0.25)


def render(demo: Demo, sent: Summary, outcome: DemoResult, done: bool) -> str:
    states = ", ".join(f"{state} {count}" for state, count in sorted(outcome.states.items())) or "none yet"
    failed = outcome.states.get(EventState.FAILED.value, 0)
    lines = [
        "",
        f"demo: {len(demo.call_ids)} calls and 1 broken event — {sent.render()}",
        f"demo: {outcome.events} events in call_events ({states})",
        f"demo: {outcome.session_rows} rows in user_sessions for the demo calls ({outcome.all_session_rows} in all)",
        f"demo: {failed} failed event(s), one on purpose — the ops page lists them:",
        *(f"  {kind}: {error[:160]}" for kind, error in outcome.failures),
    ]
    if not done:
        lines.append("demo: the workers had not dealt with every event yet; the counts above are partial")
    return "\n".join([*lines, ""])


def run(url: str, env: Mapping[str, str], database_url: str, *, check: Callable[[], None]) -> DemoResult:
    """Send the demo calls to ``url``, signed as ``env`` configures, wait for the workers, print a summary."""
    demo = prepare()
    print(f"demo: sending {len(demo.bodies)} deliveries of {len(demo.call_ids)} calls to {url} …", flush=True)
    sent = asyncio.run(send_all(url, demo.bodies, AuthSettings.from_env(env), concurrency=4, progress=False))
    # Deliveries the endpoint refused never reach the workers: then only look at what did.
    outcome, done = wait_for_workers(database_url, demo, check=check, timeout=WAIT_TIMEOUT if sent.ok else 5.0)
    print(render(demo, sent, outcome, done), flush=True)
    return outcome
