"""Worker throughput against a plain psycopg ceiling, and per-event cost as a call grows.

    .venv/bin/python bench/worker.py [--calls 40] [--processes 2] [--threads 8] [--growth 2000]

Needs Postgres and Redis (BENCH_DATABASE_URL / BENCH_REDIS_URL, defaulting to the
machine's 127.0.0.1 services). Everything it creates (a scratch database, a Redis
namespace) is removed at the end.

(a) ceiling   one connection in pipeline mode writes, for every event, its call_events
              row and a plain upsert of its user_sessions row, committing every 100
              events: the database work with no mapping, no queue, no merge rules.
(b) pipeline  the same events, encoded as the endpoint encodes them, pushed to Redis,
              consumed by real `ingest worker` processes: enqueue to committed rows.
(c) growth    one call of constant-size events (final transcripts, speech updates)
              applied through the worker's code path; the per-event cost of its last
              100 events against its first 100.

(b) runs twice, alternating, on a database of its own each: with personal data sealed and
redacted (the default: INGEST_ENCRYPTION_KEYS, INGEST_REDACT) and in plain text without
redaction (INGEST_PLAINTEXT=true, INGEST_REDACT=false); the ratio of the two is the cost of
privacy. Each also reports the bytes on disk per call (call_events and user_sessions with
their indexes and TOAST).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.apply import apply_event  # noqa: E402
from ingest.event import Event  # noqa: E402
from ingest.mapping.event_key import event_key  # noqa: E402
from ingest.migrate import migrate  # noqa: E402
from ingest.privacy import Privacy  # noqa: E402
from ingest.sealing import Keyring, generate_key  # noqa: E402
from ingest.web.enqueue import encode_message  # noqa: E402

TEMPLATE_CALL = ROOT / "tests" / "fixtures" / "calls" / "long_call.jsonl"
TEMPLATE_ID = b"33ac20f6-19cb-4bb2-a2d2-37ac3a048062"
QUEUE = "vapi-events"
OUT = ROOT / "bench" / "out" / "worker.json"
KEY = generate_key()  # made for this run, like the test suite's
MODES = {
    "sealed": {"INGEST_ENCRYPTION_KEYS": KEY, "INGEST_PLAINTEXT": "", "INGEST_REDACT": "true"},
    "plain": {"INGEST_ENCRYPTION_KEYS": "", "INGEST_PLAINTEXT": "true", "INGEST_REDACT": "false"},
}


def scratch_database(server: str) -> tuple[str, str]:
    name = f"bench_worker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server)
    params["dbname"] = name
    url = make_conninfo(**params)
    migrate(url, local_timezone="Pacific/Auckland")
    return name, url


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def realistic_mix(calls: int) -> list[bytes]:
    """``calls`` copies of the recorded long call (status/speech updates, finals, growing
    conversation updates, one report), each under its own call id, interleaved."""
    template = [line for line in TEMPLATE_CALL.read_bytes().split(b"\n") if line]
    ids = [str(uuid.uuid4()).encode() for _ in range(calls)]
    per_call = [[line.replace(TEMPLATE_ID, call_id) for line in template] for call_id in ids]
    return [per_call[c][i] for i in range(len(template)) for c in range(calls)]


def ceiling(url: str, bodies: list[bytes]) -> float:
    """Events per second for the plain pipelined writes."""
    rows = []
    for body in bodies:
        message = orjson.loads(body)["message"]
        call = message.get("call") or {}
        rows.append(
            (
                {
                    "call_id": call.get("id"),
                    "type": message["type"],
                    "key": event_key(message),
                    "message": Jsonb(message, dumps=lambda v: orjson.dumps(v).decode()),
                },
                {"call_id": call.get("id"), "assistant_id": call.get("assistantId"), "status": message.get("status")},
            )
        )
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.pipeline():
        for n, (event, session) in enumerate(rows, start=1):
            conn.execute(
                "WITH key AS (INSERT INTO call_event_keys (dedupe_key, received_at) VALUES (%(key)s, now())"
                " ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key)"
                " INSERT INTO call_events (call_id, message_type, dedupe_key, message, state)"
                " SELECT %(call_id)s, %(type)s, key.dedupe_key, %(message)s, 'applied' FROM key",
                event,
            )
            conn.execute(
                "INSERT INTO user_sessions (call_id, assistant_id, source)"
                " VALUES (%(call_id)s, %(assistant_id)s, 'vapi')"
                " ON CONFLICT (call_id) DO UPDATE SET source = EXCLUDED.source",
                session,
            )
            if n % 100 == 0:
                conn.commit()
        conn.commit()
    return len(rows) / (time.perf_counter() - started)


def committed(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM call_events WHERE state <> 'pending'").fetchone()
    return int(row[0]) if row else 0


def bytes_on_disk(conn: psycopg.Connection[Any]) -> int:
    """call_events (its partitions, its dedupe keys) and user_sessions with their indexes and TOAST, after a
    checkpoint-free VACUUM."""
    conn.execute("VACUUM call_events, call_event_keys, user_sessions")
    row = conn.execute(
        "SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('call_events'))"
        " + pg_total_relation_size('call_event_keys') + pg_total_relation_size('user_sessions')"
    ).fetchone()
    return int(row[0]) if row else 0


def pipeline(url: str, redis_url: str, bodies: list[bytes], processes: int, threads: int, mode: str) -> float:
    """Events per second from the first enqueue to the last committed row, through real workers."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **MODES[mode],
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "WORKER_PROCESSES": str(processes),
        "WORKER_THREADS": str(threads),
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "ingest", "worker"], env=env, start_new_session=True, stderr=subprocess.DEVNULL
    )
    client = redis.Redis.from_url(redis_url)
    # One polling connection for the whole run: a new one every poll would fork a Postgres
    # backend 50 times a second, taking CPU from the workers being measured.
    monitor = psycopg.connect(url, autocommit=True)

    def push(batch: list[bytes]) -> None:
        pipe = client.pipeline(transaction=False)
        for n, body in enumerate(batch, start=1):
            redis_id, data = encode_message(QUEUE, body, int(time.time() * 1000))
            pipe.hset(f"{namespace}:{QUEUE}.msgs", redis_id, data)
            pipe.rpush(f"{namespace}:{QUEUE}", redis_id)
            if n % 200 == 0:
                pipe.execute()
        pipe.execute()

    def wait_for(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while committed(monitor) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers did not commit {count} events within {timeout:.0f} s")
            time.sleep(0.02)

    try:
        # Warm up: the clock starts once every worker process has booted (imports, pools)
        # and applied an event of its own, so start-up is not counted as throughput.
        warm_up = realistic_mix(processes * 2)[: processes * 2]
        push(warm_up)
        wait_for(len(warm_up), 120)
        time.sleep(1)
        started = time.perf_counter()
        push(bodies)
        wait_for(len(warm_up) + len(bodies), 600)
        return len(bodies) / (time.perf_counter() - started)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(60)
        for key in client.scan_iter(match=f"{namespace}*"):
            client.delete(key)
        client.close()
        monitor.close()


def growth(url: str, events: int) -> tuple[float, float]:
    """Mean milliseconds per event for the first and the last 100 events of one long call."""
    call_id = str(uuid.uuid4())
    base = 1_790_000_000_000
    call = {"id": call_id, "type": "inboundPhoneCall", "assistantId": str(uuid.uuid4())}
    timings: list[float] = []
    privacy = Privacy(keyring=Keyring.parse(KEY))
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(events):
            if n % 2:
                message: dict[str, Any] = {"type": "speech-update", "status": "started", "role": "user", "turn": n}
            else:
                text = f"Utterance {n:05d}: I would like to book a viewing for the flat on Marine Parade."
                message = {"type": "transcript", "transcriptType": "final", "role": "user", "transcript": text}
            message.update(timestamp=base + 1000 * n, call=call)
            started = time.perf_counter()
            apply_event(conn, Event.from_body({"message": message}, base), privacy)
            timings.append(time.perf_counter() - started)
    first, last = timings[:100], timings[-100:]
    return statistics.mean(first) * 1000, statistics.mean(last) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40, help="copies of the recorded long call (44 events each)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--growth", type=int, default=2000, help="events in the growth call")
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

    bodies = realistic_mix(args.calls)
    results: dict[str, Any] = {"events": len(bodies)}
    names: list[str] = []
    try:
        name, url = scratch_database(server)
        names.append(name)
        results["ceiling_events_per_s"] = round(ceiling(url, bodies))
        for mode in ("plain", "sealed", "plain", "sealed"):  # alternated: the machine's drift hits both
            name, url = scratch_database(server)
            names.append(name)
            rate = pipeline(url, redis_url, bodies, args.processes, args.threads, mode)
            results.setdefault(f"pipeline_{mode}_events_per_s", []).append(round(rate))
            with psycopg.connect(url, autocommit=True) as conn:
                results[f"bytes_per_call_{mode}"] = round(bytes_on_disk(conn) / args.calls)
            drop_database(server, names.pop())
        best = {mode: max(results[f"pipeline_{mode}_events_per_s"]) for mode in ("plain", "sealed")}
        results["pipeline_events_per_s"] = best["sealed"]
        results["sealed_ratio"] = round(best["sealed"] / best["plain"], 3)
        name, url = scratch_database(server)
        names.append(name)
        first, last = growth(url, args.growth)
        results.update(growth_first_100_ms=round(first, 3), growth_last_100_ms=round(last, 3))
    finally:
        for name in names:
            drop_database(server, name)

    ratio = results["pipeline_events_per_s"] / results["ceiling_events_per_s"]
    growth_ratio = results["growth_last_100_ms"] / results["growth_first_100_ms"]
    results.update(ratio=round(ratio, 3), growth_ratio=round(growth_ratio, 3))
    print(f"events: {len(bodies)} ({args.calls} calls of the recorded long call)")
    print(f"(a) ceiling, pipelined psycopg   {results['ceiling_events_per_s']:>8} events/s")
    print(f"(b) endpoint-encoded -> workers  {results['pipeline_events_per_s']:>8} events/s (sealed, redacted)")
    print(f"    ratio                        {ratio:>8.2f}   (target >= 0.5)")
    plain_runs, sealed_runs = results["pipeline_plain_events_per_s"], results["pipeline_sealed_events_per_s"]
    print(f"    plain text runs {plain_runs}, sealed runs {sealed_runs} events/s")
    print(f"    sealed / plain (best of each)  {results['sealed_ratio']:>6.2f}   (target >= 0.85)")
    plain_bytes, sealed_bytes = results["bytes_per_call_plain"], results["bytes_per_call_sealed"]
    print(f"    bytes on disk per call: plain {plain_bytes}, sealed {sealed_bytes}")
    print(f"(c) growth over {args.growth} events: first 100 {first:.3f} ms/event, last 100 {last:.3f} ms/event")
    print(f"    ratio                        {growth_ratio:>8.2f}   (target <= 1.3)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
