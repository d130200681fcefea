"""Endpoint benchmark: our ``POST /webhooks/vapi`` against a bare Starlette app, in one run.

    .venv/bin/python bench/endpoint.py [--duration 10] [--payload all] [--skip-install]

Servers (each a subprocess on a free 127.0.0.1 port, served the way ``ingest web`` serves:
uvicorn, 1 worker process, uvloop, httptools, no access log):

- ``bare``: bench/_bare.py, a Starlette app that reads the body, parses it with orjson, answers 200.
- ``ours``: ``ingest web`` (``ingest.web.app:create_app``) with HMAC on (``VAPI_HMAC_SECRET``, the
  default ``{timestamp}.{body}`` template), enqueueing to real Redis; run once with
  ``LOG_LEVEL=WARNING`` and once with ``LOG_LEVEL=INFO`` (production's level: one JSON line per
  delivery, written to a file).

Load: wrk (1 thread) with bench/_load.lua, sending the same body to both servers, each request
signed afresh in wrk (the service answers a repeated signature as a replay). Per payload and
server: a warm-up, the peak (closed loop, ``--connections``), then latency at half that peak
(fixed-rate schedule, ``--half-connections``). The server is pinned to CPU 0 and wrk to CPU 1
when the machine has two or more cores.

Bodies: a ~20 KB ``status-update`` and a ~200 KB ``end-of-call-report`` built from
tests/fixtures/calls/long_call.jsonl (bench/_payloads.py). wrk's script signs every request with a
timestamp of its own (see bench/_load.lua), so every request is authentic, fresh and not a replay;
``ingest.web.auth.sign`` signs the checks made before each server is loaded.

Scratch data: a fresh Postgres database (migrated, dropped at the end) and a unique Redis key
namespace; since no worker consumes the queue, the bench deletes the queue keys every 0.25 s
(counting the messages, to check that every 200 was really queued) and at the end. Every
process and every piece of data is removed on exit, Ctrl-C included.

Output: a table on stdout and a JSON summary in bench/out/endpoint.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "_load.lua"
BARE = BENCH / "_bare.py"
DEFAULT_OUT = BENCH / "out" / "endpoint.json"
PATH = "/webhooks/vapi"
TARGET_RATIO = 0.75
TARGET_P99_MS = 10.0
PAYLOAD_TARGETS = {"status": 20_000, "report": 200_000}
# Closed-loop peak connections per payload (see bench/README.md): 200 KB bodies peak at a few
# connections, more only add queueing; 20 KB bodies need more in flight to saturate the server.
DEFAULT_CONNECTIONS = {"status": 32, "report": 8}
SERVER_CPU, LOADGEN_CPU = 0, 1
BUSY_CORES = 0.25  # other load above which the table warns that the numbers are noisy
CLEAN_ENV_PREFIXES = ("VAPI_", "INGEST_", "DB_", "ENQUEUE_", "MAX_BODY", "LOCAL_TIMEZONE", "LOG_LEVEL", "WEB_")


class BenchError(RuntimeError):
    """A precondition failed or a measurement is not trustworthy; the message says which."""


# --------------------------------------------------------------------------------------------
# processes


class Processes:
    """Every subprocess this run started, so that cleanup can stop exactly those."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # A session of its own: Ctrl-C in the terminal reaches only this script, which then
        # stops its children in order (servers get SIGTERM and run their lifespan shutdown).
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def _pin(cpu: int | None) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu)] if cpu is not None and taskset else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _machine_busy_seconds() -> float:
    """CPU seconds spent on all cores, not idle, since boot (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    label: str
    kind: str  # "bare" or "ours"
    log_level: str | None
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - local URL
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local URL
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.label} exited with {server.proc.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            if _http("GET", f"http://127.0.0.1:{server.port}/healthz")[0] == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{server.label} did not answer /healthz within {timeout:.0f} s:\n{server.log_tail()}")


# --------------------------------------------------------------------------------------------
# redis janitor


class Janitor:
    """Deletes the queue keys every ``interval`` seconds, counting the messages it deletes.

    No worker consumes the queue during the bench, and 200 KB messages at a thousand a second
    would otherwise fill Redis's memory. Each sweep is one MULTI/EXEC (LLEN, UNLINK), so it
    never splits an enqueue batch and the count is exact.
    """

    def __init__(self, redis_url: str, list_key: str, hash_key: str, interval: float = 0.25) -> None:
        import redis

        self._client = redis.Redis.from_url(redis_url)
        self._keys = (list_key, hash_key)
        self._interval = interval
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="janitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> int:
        pipe = self._client.pipeline(transaction=True)
        pipe.llen(self._keys[0])
        pipe.unlink(*self._keys)
        length = int(pipe.execute()[0])
        with self._lock:
            self._count += length
        return length

    def take(self) -> int:
        """Messages deleted since the last ``take``, after a final sweep."""
        self.sweep()
        with self._lock:
            count, self._count = self._count, 0
        return count

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):
                self.sweep()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with contextlib.suppress(Exception):
            self.sweep()
        self._client.close()


# --------------------------------------------------------------------------------------------
# wrk


@dataclass
class Measurement:
    phase: str  # "peak" or "half"
    connections: int
    duration_s: float
    target_rate: float | None
    requests: int
    rate: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    server_cpu_s: float
    server_sys_share: float  # of the server's CPU time, the part spent in the kernel
    server_cpu_us_per_request: float
    loadgen_cpu_s: float
    redis_cpu_us_per_request: float | None  # when Redis runs on this machine
    other_cpu_cores: float  # average cores busy with anything but the server, wrk and Redis
    queued: int | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk\s+(\S+)", result.stdout + result.stderr)
    return match.group(1) if match else "unknown"


def run_wrk(
    procs: Processes,
    wrk: str,
    server: Server,
    *,
    body_file: Path,
    headers_file: Path,
    connections: int,
    duration: float,
    rate: float | None,
    pin: bool,
    phase: str,
    redis_pid: int | None,
    hmac_secret: str,
) -> Measurement:
    env = dict(os.environ)
    env.update(
        BENCH_BODY_FILE=str(body_file),
        BENCH_HEADERS_FILE=str(headers_file),
        BENCH_HMAC_SECRET=hmac_secret,
        BENCH_RATE=f"{rate:.3f}" if rate else "0",
    )
    seconds = max(1, round(duration))
    cmd = [
        *_pin(LOADGEN_CPU if pin else None),
        wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s", "-s", str(LUA), server.url,
    ]  # fmt: skip
    cpu_before, busy_before, started = _cpu_seconds(server.proc.pid), _machine_busy_seconds(), time.monotonic()
    redis_before = sum(_cpu_seconds(redis_pid)) if redis_pid else 0.0
    children_before = _children_cpu()
    proc = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=seconds + 30)
    finally:
        procs.stop(proc)
    usage = _children_cpu() - children_before  # wrk's own CPU time: the only child reaped meanwhile
    elapsed = time.monotonic() - started
    cpu_after = _cpu_seconds(server.proc.pid)
    server_user, server_sys = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
    server_cpu = server_user + server_sys
    busy = _machine_busy_seconds() - busy_before
    redis_cpu = sum(_cpu_seconds(redis_pid)) - redis_before if redis_pid else 0.0
    text = out.decode(errors="replace")
    match = re.search(r"^BENCH_RESULT (\{.*\})$", text, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {text}{err.decode(errors='replace')}")
    data = json.loads(match.group(1))
    requests = int(data["requests"])
    wall = data["duration_us"] / 1e6
    latency = {key: round(value / 1000, 3) for key, value in data["latency_us"].items()}
    return Measurement(
        phase=phase,
        connections=connections,
        duration_s=round(wall, 3),
        target_rate=round(rate, 1) if rate else None,
        requests=requests,
        rate=round(requests / wall, 1),
        latency_ms=latency,
        errors={key: int(value) for key, value in data["errors"].items()},
        server_cpu_s=round(server_cpu, 2),
        server_sys_share=round(server_sys / server_cpu, 2) if server_cpu else 0.0,
        server_cpu_us_per_request=round(server_cpu / requests * 1e6, 1) if requests else 0.0,
        loadgen_cpu_s=round(usage, 2),
        redis_cpu_us_per_request=round(redis_cpu / requests * 1e6, 1) if redis_pid and requests else None,
        other_cpu_cores=round(max(0.0, busy - server_cpu - usage - redis_cpu) / elapsed, 2),
    )


def _children_cpu() -> float:
    """CPU seconds of every reaped child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int | None
    half_connections: int
    payloads: list[str]
    log_levels: list[str]
    redis_url: str
    postgres_url: str
    out: Path
    pin: bool


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)


class Bench:
    """Owns the scratch database, the Redis namespace, the servers and the temporary files."""

    def __init__(self, options: Options, wrk: str) -> None:
        self.options = options
        self.wrk = wrk
        self.procs = Processes()
        self.tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
        token = secrets.token_hex(4)
        self.db_name = f"bench_endpoint_{os.getpid()}_{token}"
        self.namespace = f"bench-endpoint-{os.getpid()}-{token}"
        self.hmac_secret = secrets.token_urlsafe(32)
        self.database_url: str | None = None
        self.janitor: Janitor | None = None
        self.redis_pid = _local_redis_pid(options.redis_url)

    # -- scratch data

    def create_database(self) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        from ingest.migrate import migrate

        with psycopg.connect(self.options.postgres_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.database_url = make_conninfo(self.options.postgres_url, dbname=self.db_name)
        migrate(self.database_url, local_timezone="Pacific/Auckland")

    def pending_in_postgres(self) -> int:
        """Deliveries the intake kept in Postgres because Redis failed or was too slow."""
        import psycopg

        assert self.database_url is not None
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM call_events").fetchone()
        return int(row[0]) if row else 0

    def drop_database(self) -> None:
        if self.database_url is None:
            return
        import psycopg

        with psycopg.connect(self.options.postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.database_url = None

    def queue_keys(self) -> tuple[str, str]:
        from ingest.settings import DEFAULT_QUEUE

        return f"{self.namespace}:{DEFAULT_QUEUE}", f"{self.namespace}:{DEFAULT_QUEUE}.msgs"

    def delete_redis_keys(self) -> int:
        import redis

        client = redis.Redis.from_url(self.options.redis_url)
        try:
            keys = list(client.scan_iter(match=f"{self.namespace}:*", count=1000))
            return int(client.delete(*keys)) if keys else 0
        finally:
            client.close()

    def cleanup(self) -> None:
        # Finish cleaning up whatever happens: a second Ctrl-C or a SIGTERM waits for it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.procs.stop_all()
            if self.janitor is not None:
                with contextlib.suppress(Exception):
                    self.janitor.close()
                self.janitor = None
            for step in (self.delete_redis_keys, self.drop_database):
                try:
                    step()
                except Exception as exc:
                    print(f"cleanup: {step.__name__} failed: {exc}", file=sys.stderr)
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])

    # -- servers

    def start_bare(self) -> Server:
        port = _free_port()
        log_path = self.tmp / "bare.log"
        cmd = [*_pin(SERVER_CPU if self.options.pin else None), sys.executable, str(BARE), "--port", str(port)]
        with log_path.open("wb") as log:
            proc = self.procs.start(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_clean_env())
        server = Server("bare", "bare", None, port, proc, log_path)
        _wait_ready(server)
        return server

    def start_ours(self, log_level: str) -> Server:
        assert self.database_url is not None
        port = _free_port()
        log_path = self.tmp / f"ours-{log_level.lower()}.log"

        def _sealing_key() -> str:
            from ingest.sealing import generate_key  # the repository's own, like `sign` below

            return generate_key()

        env = _clean_env()
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.options.redis_url,
            INGEST_REDIS_NAMESPACE=self.namespace,
            VAPI_HMAC_SECRET=self.hmac_secret,
            INGEST_ENCRYPTION_KEYS=_sealing_key(),  # as production runs (the request path seals nothing)
            LOG_LEVEL=log_level,
            HOST="127.0.0.1",
            PORT=str(port),
            WEB_CONCURRENCY="1",
        )
        cmd = [*_pin(SERVER_CPU if self.options.pin else None), sys.executable, "-m", "ingest", "web"]
        with log_path.open("wb") as log:  # the JSON log lines go to a file, as to a log collector
            proc = self.procs.start(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        server = Server(f"ours LOG_LEVEL={log_level}", "ours", log_level, port, proc, log_path)
        _wait_ready(server)
        return server

    def sign(self, body: bytes) -> dict[str, str]:
        from ingest.web.auth import sign
        from ingest.web.auth_settings import AuthSettings

        return sign(AuthSettings.from_env({"VAPI_HMAC_SECRET": self.hmac_secret}), body, now=time.time())

    def check_ours(self, server: Server, body: bytes) -> None:
        """One signed delivery is queued (200), one unsigned is refused (401)."""
        assert self.janitor is not None
        self.janitor.take()
        headers = {"Content-Type": "application/json", **self.sign(body)}
        status, answer = _http("POST", server.url, body, headers)
        if status != 200:
            raise BenchError(f"signed delivery got {status} {answer[:300]!r}:\n{server.log_tail()}")
        status, answer = _http("POST", server.url, body, {"Content-Type": "application/json"})
        if status != 401:
            raise BenchError(f"unsigned delivery got {status}, expected 401: {answer[:300]!r}")
        if (queued := self.janitor.take()) != 1:
            raise BenchError(f"expected 1 queued message after the check, found {queued}")

    # -- measurements

    def measure(self, server: Server, name: str, body_file: Path, body: bytes) -> dict[str, Any]:
        options = self.options
        connections = options.connections or DEFAULT_CONNECTIONS[name]
        headers_file = self.tmp / "headers.txt"

        headers_file.write_text("")  # wrk's script signs every request itself (bench/_load.lua)

        def once(phase: str, seconds: float, conns: int, rate: float | None) -> Measurement:
            if self.janitor is not None:
                self.janitor.take()
            result = run_wrk(
                self.procs, self.wrk, server,
                body_file=body_file, headers_file=headers_file, connections=conns,
                duration=seconds, rate=rate, pin=options.pin, phase=phase, redis_pid=self.redis_pid,
                hmac_secret=self.hmac_secret,
            )  # fmt: skip
            if self.janitor is not None:
                time.sleep(0.2)  # let in-flight batches land before the final count
                result.queued = self.janitor.take()
            _check(server, result)
            return result

        if options.warmup > 0:
            once("warmup", options.warmup, connections, None)
        peak = once("peak", options.duration, connections, None)
        time.sleep(0.5)
        half = once("half", options.duration, options.half_connections, peak.rate / 2)
        _progress(server, name, peak, half)
        return {"server": server.label, "log_level": server.log_level, "peak": asdict(peak), "half": asdict(half)}

    def run(self, payloads: dict[str, bytes]) -> Results:
        options = self.options
        results = Results()
        body_files: dict[str, Path] = {}
        for name in options.payloads:
            body_files[name] = self.tmp / f"{name}.json"
            body_files[name].write_bytes(payloads[name])
            results.payloads[name] = {"bytes": len(payloads[name]), "runs": []}
        self.create_database()
        list_key, hash_key = self.queue_keys()

        plan: list[tuple[str, str | None]] = [("bare", None)] + [("ours", level) for level in options.log_levels]
        for kind, level in plan:
            if kind == "bare":
                server = self.start_bare()
            else:
                assert level is not None
                self.janitor = Janitor(options.redis_url, list_key, hash_key)
                self.janitor.start()
                server = self.start_ours(level)
                self.check_ours(server, payloads[options.payloads[0]])
            try:
                for name in options.payloads:
                    run = self.measure(server, name, body_files[name], payloads[name])
                    if kind == "ours":
                        run["log_lines"] = _count_lines(server.log_path)
                    results.payloads[name]["runs"].append(run)
            finally:
                self.procs.stop(server.proc)
                if self.janitor is not None:
                    self.janitor.close()
                    self.janitor = None
            if kind == "ours":
                pending = self.pending_in_postgres()
                if pending:
                    raise BenchError(f"{pending} deliveries fell back to Postgres: Redis was too slow or failing")
        return results


def _local_redis_pid(redis_url: str) -> int | None:
    """The Redis server's pid when it runs on this machine (to account for its CPU time)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("server")
    except Exception:
        return None
    finally:
        client.close()
    pid = int(info.get("process_id", 0))
    host = (client.connection_pool.connection_kwargs.get("host") or "").lower()
    if pid and host in {"127.0.0.1", "localhost", "::1"} and Path(f"/proc/{pid}/stat").exists():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if "redis" in Path(f"/proc/{pid}/comm").read_text():
                return pid
    return None


def _check(server: Server, result: Measurement) -> None:
    if result.phase == "warmup":
        return
    if result.error_count:
        print(f"  ! {server.label} {result.phase}: wrk errors {result.errors}", file=sys.stderr)
    if result.queued is not None and not result.requests <= result.queued <= result.requests + result.connections:
        raise BenchError(
            f"{server.label} {result.phase}: {result.requests} answered but {result.queued} queued:\n"
            f"{server.log_tail()}"
        )


def _count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _clean_env() -> dict[str, str]:
    """This process's environment without any of the service's own settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_ENV_PREFIXES) and k not in _SERVICE_VARS}


_SERVICE_VARS = {"DATABASE_URL", "REDIS_URL", "HOST", "PORT"}


def _progress(server: Server, name: str, peak: Measurement, half: Measurement) -> None:
    print(
        f"  {name:<6} {server.label:<22} peak {peak.rate:>8.0f} req/s   "
        f"half {half.rate:>7.0f} req/s  p50 {half.latency_ms['p50']:.2f} ms  p99 {half.latency_ms['p99']:.2f} ms",
        flush=True,
    )


# --------------------------------------------------------------------------------------------
# report


def summarize(results: Results) -> dict[str, Any]:
    """Ratios and target checks per payload, added to the results."""
    for data in results.payloads.values():
        runs = data["runs"]
        bare = next(run for run in runs if run["server"] == "bare")
        for run in runs:
            peak, half = run["peak"], run["half"]
            run["ratio"] = round(peak["rate"] / bare["peak"]["rate"], 3)
            run["cpu_ratio"] = round(bare["peak"]["server_cpu_us_per_request"] / peak["server_cpu_us_per_request"], 3)
            run["meets_ratio"] = run["ratio"] >= TARGET_RATIO
            run["meets_p99"] = half["latency_ms"]["p99"] < TARGET_P99_MS
    return {"meta": results.meta, "payloads": results.payloads}


def render(summary: dict[str, Any]) -> str:
    meta = summary["meta"]
    lines = [
        "",
        f"vapi-ingest endpoint benchmark  {meta['date']}  {meta['machine']}",
        f"wrk {meta['wrk']} (1 thread), {meta['duration_s']:g} s per measurement; "
        f"peak: closed loop; half: fixed rate, {meta['half_connections']} connections; {meta['pinning']}",
        f"HMAC: {meta['signing']}",
        "",
    ]
    header = (
        f"{'payload':<16} {'server':<22} {'peak req/s':>10} {'ratio':>6} {'cpu µs/req':>10} {'cpu ratio':>9} "
        f"{'redis µs/req':>12} {'conns':>5} {'half req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
        f"{'errors':>6} {'other cpu':>9}"
    )
    lines += [header, "-" * len(header)]
    for name, data in summary["payloads"].items():
        label = f"{name} {data['bytes'] / 1000:.1f} KB"
        for run in data["runs"]:
            peak, half = run["peak"], run["half"]
            errors = sum(peak["errors"].values()) + sum(half["errors"].values())
            other = max(peak["other_cpu_cores"], half["other_cpu_cores"])
            redis_us = peak["redis_cpu_us_per_request"]
            redis = "-" if redis_us is None or run["server"] == "bare" else f"{redis_us:.0f}"
            lines.append(
                f"{label:<16} {run['server']:<22} {peak['rate']:>10.0f} {run['ratio']:>6.2f} "
                f"{peak['server_cpu_us_per_request']:>10.0f} {run['cpu_ratio']:>9.2f} {redis:>12} "
                f"{peak['connections']:>5} "
                f"{half['rate']:>10.0f} {half['latency_ms']['p50']:>7.2f} {half['latency_ms']['p99']:>7.2f} "
                f"{half['latency_ms']['p999']:>8.2f} {errors:>6} {other:>9.2f}"
            )
            label = ""
    lines += [
        "",
        "ratio = ours/bare peak req/s; cpu µs/req = server process CPU time per request at peak;",
        "cpu ratio = bare/ours cpu µs/req (less sensitive to other load on the machine); redis µs/req = the",
        "Redis server's CPU per request (local Redis only); p50/p99/p99.9 at half of each server's own peak;",
        "other cpu = cores busy with anything but server, wrk and Redis (other load: makes numbers noisy).",
        "",
        f"targets: ratio >= {TARGET_RATIO}, p99 < {TARGET_P99_MS:g} ms at half load",
    ]
    runs = [run for data in summary["payloads"].values() for run in data["runs"]]
    busiest = max(run[phase]["other_cpu_cores"] for run in runs for phase in ("peak", "half"))
    if busiest > BUSY_CORES:
        lines.insert(
            -1,
            f"WARNING: other processes kept up to {busiest:.2f} cores busy during a measurement: req/s and "
            "latencies are noisy (cpu ratio less so); rerun on an idle machine.\n",
        )
    for name, data in summary["payloads"].items():
        for run in data["runs"]:
            if run["server"] == "bare":
                continue
            verdict = "PASS" if run["meets_ratio"] and run["meets_p99"] else "MISS"
            lines.append(
                f"  {name:<6} {run['server']:<22} ratio {run['ratio']:.2f} {'ok' if run['meets_ratio'] else 'MISS'}, "
                f"p99 {run['half']['latency_ms']['p99']:.2f} ms {'ok' if run['meets_p99'] else 'MISS'}  -> {verdict}"
            )
    return "\n".join(lines)


def _machine() -> str:
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in ("uvicorn", "starlette", "uvloop", "httptools", "orjson", "redis"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


# --------------------------------------------------------------------------------------------
# entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/endpoint.py",
        description="Peak req/s and half-load latency: our webhook endpoint against a bare Starlette app.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each peak (default 2)")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="connections for the peak runs (default: status 32, report 8)",
    )
    parser.add_argument(
        "--half-connections", type=int, default=16, help="connections for the half-load runs (default 16)"
    )
    parser.add_argument("--payload", choices=["status", "report", "all"], default="all")
    parser.add_argument(
        "--log-levels",
        default="WARNING,INFO",
        help="LOG_LEVEL values to run our endpoint with, comma-separated (default WARNING,INFO)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="Redis for the queue (default $BENCH_REDIS_URL or redis://127.0.0.1:6379/14)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="existing database to connect to for creating and dropping the scratch database "
        "(default $BENCH_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON summary (default bench/out/endpoint.json)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and wrk to separate CPUs")
    parser.add_argument(
        "--skip-install",
        action="store_true",
        help="do not run scripts/install (which brings .venv up to date with pyproject.toml, "
        "and does nothing when it already is)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.half_connections < 1 or (args.connections or 1) < 1:
        parser.error("--duration must be >= 1, --warmup >= 0, connections >= 1")
    return args


def _preflight(options: Options) -> None:
    import psycopg
    import redis

    try:
        client = redis.Redis.from_url(options.redis_url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        raise BenchError(f"Redis at {options.redis_url} is not reachable: {exc}") from None
    try:
        psycopg.connect(options.postgres_url, connect_timeout=3).close()
    except Exception as exc:
        raise BenchError(f"Postgres at {options.postgres_url} is not reachable: {exc}") from None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    # Ctrl-C and SIGTERM both raise KeyboardInterrupt, which cleans up; SIGINT explicitly too,
    # since a shell starting this in the background sets it to "ignore".
    previous = signal.signal(signal.SIGTERM, _on_sigterm), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_install:
        subprocess.run([str(ROOT / "scripts" / "install")], cwd=ROOT, check=True)
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "bench/endpoint.py needs wrk (https://github.com/wg/wrk) on PATH.\n"
            "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
            "  macOS:         brew install wrk",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(BENCH))
    import _payloads

    names = ["status", "report"] if args.payload == "all" else [args.payload]
    levels = [level.strip().upper() for level in args.log_levels.split(",") if level.strip()]
    cores = os.cpu_count() or 1
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        half_connections=args.half_connections,
        payloads=names,
        log_levels=levels,
        redis_url=args.redis_url,
        postgres_url=args.postgres_url,
        out=args.out,
        pin=not args.no_pin and cores >= 2 and shutil.which("taskset") is not None,
    )
    bench: Bench | None = None
    started = time.monotonic()
    with _interruptible():
        try:
            _preflight(options)
            payloads = _payloads.build(PAYLOAD_TARGETS["status"], PAYLOAD_TARGETS["report"])
            bench = Bench(options, wrk)
            print(
                f"bodies: {', '.join(f'{n} {len(payloads[n])} bytes' for n in names)}; "
                f"servers: bare, {', '.join(f'ours LOG_LEVEL={level}' for level in levels)}",
                flush=True,
            )
            results = bench.run(payloads)
        except BenchError as exc:
            print(f"bench/endpoint.py: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; cleaning up", file=sys.stderr)
            return 130
        finally:
            if bench is not None:
                bench.cleanup()
    load1, load5, _ = os.getloadavg()
    results.meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "cores": cores,
        "loadavg_1m_5m_after": [round(load1, 2), round(load5, 2)],
        "git_commit": _git_commit(),
        "wrk": _wrk_version(wrk),
        "versions": _versions(),
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "half_connections": options.half_connections,
        "pinning": f"server on CPU {SERVER_CPU}, wrk on CPU {LOADGEN_CPU}" if options.pin else "no CPU pinning",
        "signing": "VAPI_HMAC_SECRET set, default template {timestamp}.{body} (x-signature hex sha256 + "
        "x-timestamp), every request signed afresh by bench/_load.lua (OpenSSL through LuaJIT's FFI)",
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    summary = summarize(results)
    print(render(summary))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nJSON summary: {options.out.relative_to(ROOT) if options.out.is_relative_to(ROOT) else options.out}")
    print(f"elapsed: {results.meta['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
