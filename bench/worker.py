"""Worker throughput and cost per event, against a plain psycopg ceiling and a baseline commit.

    .venv/bin/python bench/worker.py [--small-calls 600] [--calls 100] [--rounds 2] [--baseline HEAD]

Needs Postgres and Redis (BENCH_DATABASE_URL / BENCH_REDIS_URL, defaulting to the
machine's 127.0.0.1 services). Everything it creates (scratch databases, a Redis
namespace, the baseline's source tree) is removed at the end.

For each mix (``bench/_mixes.py``: ``small``, 12 lifecycle events of 2–9 KB per call;
``long``, the recorded 44-event call with its growing conversation updates):

(a) ceiling   one connection in pipeline mode appends every raw body to a log table and
              upserts its call's row into user_sessions (the seed's columns, indexes and
              triggers), committing every 100 events: the database work a worker cannot avoid.
(b) pipeline  the same bodies, encoded as the endpoint encodes them, pushed to Redis and
              drained by real `ingest worker` processes, sealed and redacted, from the first
              enqueue to the last committed event: events/s, and CPU µs per event of the
              workers, of the database's Postgres backends and of Redis (``/proc``), and
              the bytes on disk per call. It runs for the baseline commit (its `git archive`,
              its own migrations) and for the working tree, alternated ``--rounds`` times,
              each on a fresh database.
(c) growth    one call of constant-size events applied through the working tree's code
              path; the per-event cost of its last 100 events against its first 100.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._cpu import CpuClock  # noqa: E402
from bench._mixes import EVENTS_PER_CALL, MIXES, small_mix  # noqa: E402
from ingest.apply import apply_event  # noqa: E402
from ingest.event import Event  # noqa: E402
from ingest.privacy import Privacy  # noqa: E402
from ingest.sealing import Keyring, generate_key  # noqa: E402
from ingest.web.enqueue import encode_message  # noqa: E402

QUEUE = "vapi-events"
OUT = ROOT / "bench" / "out" / "worker.json"
KEY = generate_key()  # made for this run, like the test suite's
SEALED = {"INGEST_ENCRYPTION_KEYS": KEY, "INGEST_PLAINTEXT": "", "INGEST_REDACT": "true"}
# ``--plain``: the working tree again with sealing and redaction off, for issue 13's budget
# (sealed and redacted at least 0.85x of this, in the same run).
PLAIN = {"INGEST_ENCRYPTION_KEYS": "", "INGEST_PLAINTEXT": "true", "INGEST_REDACT": "false"}


class Version(NamedTuple):
    source: Path
    privacy: dict[str, str]


def checkout(revision: str) -> Path:
    """``revision``'s files in a temporary directory (``git archive``: the checkout is left alone)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def scratch_database(server: str, source: Path) -> tuple[str, str]:
    """A new database migrated by the code in ``source``."""
    name = f"bench_worker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server)
    params["dbname"] = name
    url = make_conninfo(**params)
    code = f"from ingest.migrate import migrate; migrate({url!r}, local_timezone='Pacific/Auckland')"
    subprocess.run([sys.executable, "-c", code], cwd=source, env={**os.environ, "PYTHONPATH": str(source)}, check=True)
    return name, url


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ceiling(url: str, bodies: list[bytes]) -> float:
    """Events per second for the plain pipelined writes: raw body appended, row upserted."""
    rows = []
    for body in bodies:
        call = orjson.loads(body)["message"].get("call") or {}
        rows.append((body, {"call_id": call.get("id"), "assistant_id": call.get("assistantId")}))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw_log (received_at timestamptz NOT NULL DEFAULT now(), body bytea NOT NULL)")
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.pipeline():
        for n, (body, session) in enumerate(rows, start=1):
            conn.execute("INSERT INTO bench_raw_log (body) VALUES (%s)", (body,))
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
    """Events committed so far: their dedupe keys, which commit with them (``pending()`` checks
    that none is waiting for a retry). Counting ``call_events`` instead read its heap, 14 times
    the keys' bytes, 50 times a second: Postgres CPU taken from the workers and counted as theirs."""
    row = conn.execute("SELECT count(*) FROM call_event_keys").fetchone()
    return int(row[0]) if row else 0


def pending(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM call_events WHERE state = 'pending'").fetchone()
    return int(row[0]) if row else 0


def bytes_on_disk(conn: psycopg.Connection[Any]) -> int:
    """call_events (its partitions, its dedupe keys), call_envelopes where it exists, and
    user_sessions, with their indexes and TOAST, after a VACUUM."""
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            " AND (c.relname LIKE 'call_event%%' OR c.relname IN ('call_envelopes', 'user_sessions'))"
        )
    ]
    conn.execute(sql.SQL("VACUUM {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class AS c WHERE c.relname = ANY(%s) AND c.relkind = 'r'",
        (tables,),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def pipeline(
    url: str, redis_url: str, mix: tuple[list[bytes], list[bytes], int], version: Version, args: argparse.Namespace
) -> dict[str, float]:
    """Drain a mix's ``bodies`` through real workers running ``version``: events/s and CPU µs per
    event; then ``again`` (as many calls of their own), untimed, for the bytes on disk in steady state."""
    bodies, again, calls = mix
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    source = version.source
    env = {
        **os.environ,
        **version.privacy,
        "PYTHONPATH": str(source),
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "WORKER_PROCESSES": str(args.processes),
        "WORKER_THREADS": str(args.threads),
        "LOG_LEVEL": "WARNING",
        # The mixes' calls are dated when they were recorded, long past the default windows:
        # a retention run in the middle of a drain would remove the events being counted.
        **dict.fromkeys(("RETENTION_RAW_EVENTS_DAYS", "RETENTION_TRANSCRIPT_DAYS", "RETENTION_ANONYMISE_DAYS"), "off"),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "ingest", "worker"],
        cwd=source,
        env=env,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
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
        if waiting := pending(monitor):
            raise RuntimeError(f"{waiting} events failed and wait for a retry: the run measures nothing")

    try:
        # Warm up: the clock starts once every worker process has booted (imports, pools)
        # and applied events of its own, whole calls with their reports (the first report
        # a process maps loads YAKE), so start-up is not counted as throughput.
        warm_up = small_mix(args.processes * 4)
        push(warm_up)
        wait_for(len(warm_up), 120)
        bytes_before = bytes_on_disk(monitor)
        time.sleep(1)
        clock = CpuClock(worker.pid, monitor, client)
        clock.start()
        started = time.perf_counter()
        push(bodies)
        wait_for(len(warm_up) + len(bodies), 600)
        elapsed = time.perf_counter() - started
        spent = clock.stop()
        result = {"events_per_s": len(bodies) / elapsed}
        result.update({f"{role}_us_per_event": seconds / len(bodies) * 1e6 for role, seconds in spent.items()})
        # Bytes per call, after a VACUUM each time: what the measured calls added to the tables
        # the warm-up had started ("first"), then what as many calls again added once the
        # VACUUM after the first batch had freed its dead row versions for reuse, as
        # autovacuum does for a running service (steady state).
        bytes_first = bytes_on_disk(monitor)
        push(again)
        wait_for(len(warm_up) + len(bodies) + len(again), 600)
        result["bytes_first_per_call"] = (bytes_first - bytes_before) / calls
        result["bytes_per_call"] = (bytes_on_disk(monitor) - bytes_first) / calls
        return result
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


def measure_mix(
    mix: str, calls: int, versions: dict[str, Version], server: str, redis_url: str, args: Any
) -> dict[str, Any]:
    """The ceiling, then each version's pipeline alternated ``args.rounds`` times, for one mix."""
    bodies = MIXES[mix](calls)
    results: dict[str, Any] = {"calls": calls, "events": len(bodies)}
    name, url = scratch_database(server, ROOT)
    try:
        results["ceiling_events_per_s"] = round(ceiling(url, bodies))
    finally:
        drop_database(server, name)
    again = MIXES[mix](calls)
    for _ in range(args.rounds):
        for version, spec in versions.items():  # alternated: the machine's drift hits every version
            name, url = scratch_database(server, spec.source)
            try:
                run = pipeline(url, redis_url, (bodies, again, calls), spec, args)
            finally:
                drop_database(server, name)
            results.setdefault(version, []).append({key: round(value, 1) for key, value in run.items()})
            print(f"  {mix:5} {version:8} " + "  ".join(f"{k} {v:.0f}" for k, v in run.items()), flush=True)
    return results


def report(mix: str, results: dict[str, Any], versions: list[str]) -> None:
    print(f"{mix}: {results['events']} events ({results['calls']} calls of {EVENTS_PER_CALL[mix]})")
    print(f"  (a) ceiling {results['ceiling_events_per_s']:>8} events/s")
    columns = ["events_per_s", "worker_us_per_event", "postgres_us_per_event", "redis_us_per_event"]
    columns += ["bytes_first_per_call", "bytes_per_call"]
    print(f"  (b) {'version':10}" + "".join(f"{c:>24}" for c in columns))
    for version in versions:
        runs = results[version]
        cells = ["/".join(f"{run[c]:.0f}" for run in runs) for c in columns]
        print(f"      {version:10}" + "".join(f"{cell:>24}" for cell in cells))
    best = {version: max(run["events_per_s"] for run in results[version]) for version in versions}
    results["best_events_per_s"] = best
    results["ratio_to_ceiling"] = {v: round(rate / results["ceiling_events_per_s"], 3) for v, rate in best.items()}
    if len(versions) >= 2:
        print(f"      best of each: {best}")
    if "baseline" in best:
        results["speedup"] = round(best["tree"] / best["baseline"], 2)
        print(f"      tree / baseline = {results['speedup']:.2f}")
    if "plain" in best:
        results["sealed_to_plain"] = round(best["tree"] / best["plain"], 2)
        print(f"      tree (sealed, redacted) / plain = {results['sealed_to_plain']:.2f}   (budget >= 0.85)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-calls", type=int, default=600, help="copies of the 12-event small call")
    parser.add_argument("--calls", type=int, default=100, help="copies of the recorded long call (44 events each)")
    parser.add_argument("--mixes", default="small,long", help="which mixes, in order")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of baseline and working tree")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with ('' for none)")
    parser.add_argument("--growth", type=int, default=2000, help="events in the growth call (0: skip)")
    parser.add_argument("--plain", action="store_true", help="also run the tree with sealing and redaction off")
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

    versions = {"baseline": Version(checkout(args.baseline), SEALED)} if args.baseline else {}
    versions["tree"] = Version(ROOT, SEALED)
    if args.plain:
        versions["plain"] = Version(ROOT, PLAIN)
    results: dict[str, Any] = {"baseline": args.baseline, "processes": args.processes, "threads": args.threads}
    try:
        for mix in args.mixes.split(","):
            calls = args.small_calls if mix == "small" else args.calls
            results[mix] = measure_mix(mix, calls, versions, server, redis_url, args)
        if args.growth:
            name, url = scratch_database(server, ROOT)
            try:
                first, last = growth(url, args.growth)
            finally:
                drop_database(server, name)
            results["growth"] = {"first_100_ms": round(first, 3), "last_100_ms": round(last, 3)}
    finally:
        if "baseline" in versions:
            shutil.rmtree(versions["baseline"].source)

    for mix in args.mixes.split(","):
        report(mix, results[mix], list(versions))
    if args.growth:
        growth_ratio = results["growth"]["last_100_ms"] / results["growth"]["first_100_ms"]
        print(f"(c) growth over {args.growth} events: first 100 {first:.3f} ms/event, last 100 {last:.3f} ms/event")
        print(f"    ratio {growth_ratio:.2f}   (target <= 1.3)")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
