"""sql/pgaudit_setup.sql on a server that loads pgaudit: a Supabase client's read of user_sessions is in the log.

pgaudit must be in ``shared_preload_libraries``, so the test starts a throwaway cluster of its
own (``initdb`` + ``pg_ctl``, a temporary directory, a free port, the server's output in a
file), migrates it with ``ingest.migrate.migrate``, runs the setup file the docs link, and reads
``user_sessions`` as PostgREST would: logged in as ``authenticator``, then ``SET ROLE
authenticated``. initdb refuses to run as root: when the tests run as root, initdb and pg_ctl
run as the ``postgres`` OS user (``runuser``), in a directory that user owns. Skipped, saying
why, where initdb or pgaudit is not installed (Debian: ``apt-get install postgresql-15-pgaudit``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from conftest import LOCAL_TIMEZONE, ROOT

from ingest.dev.embedded import _free_port
from ingest.migrate import migrate

SETUP = ROOT / "sql" / "pgaudit_setup.sql"
SERVICE_USER = "postgres"  # the OS user initdb and pg_ctl run as when the tests run as root
ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
OBJECT_LINE = re.compile(r"AUDIT: OBJECT,\d+,\d+,READ,SELECT,TABLE,public\.user_sessions,")


def _bindir() -> Path | None:
    """The directory of ``initdb``: on the PATH, else the newest Debian/Ubuntu install."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return installed[-1].parent if installed else None


def _pgaudit_installed(bindir: Path) -> bool:
    """Whether the server of ``bindir`` can load pgaudit: ``pgaudit.so`` in its library directory."""
    libdir = bindir.parent / "lib"
    if (bindir / "pg_config").exists():
        done = subprocess.run([bindir / "pg_config", "--pkglibdir"], capture_output=True, text=True, check=True)
        libdir = Path(done.stdout.strip())
    return (libdir / "pgaudit.so").exists()


@dataclass(frozen=True)
class Cluster:
    url: str  # as the bootstrap superuser
    port: int
    log: Path

    def as_user(self, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def pgaudit_cluster() -> Iterator[Cluster]:
    """A Postgres cluster with pgaudit loaded, stopped and deleted afterwards, even when the test fails."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("initdb is not installed: no Postgres server binaries to start a cluster with")
    if not _pgaudit_installed(bindir):
        pytest.skip(f"pgaudit.so is not installed for {bindir.parent.name} (apt-get install postgresql-15-pgaudit)")
    as_service: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses root
        try:
            owner = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pytest.skip(f"running as root and there is no {SERVICE_USER!r} OS user to run initdb as")
        as_service = ["runuser", "-u", SERVICE_USER, "--"]
    base = Path(tempfile.mkdtemp(prefix="ingest-pgaudit-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, log, port = base / "data", base / "server.log", _free_port()

    def run(*command: object, check: bool = True) -> None:
        subprocess.run([*as_service, *map(str, command)], check=check, capture_output=True, timeout=120)

    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync")
        options = (
            f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base}"
            " -c shared_preload_libraries=pgaudit -c fsync=off"
        )
        run(bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start")
        yield Cluster(f"postgresql://postgres@127.0.0.1:{port}/postgres", port, log)
    finally:
        if (data / "postmaster.pid").exists():  # started, or half-started by a start that timed out
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


def _audited(log: Path, pattern: re.Pattern[str], timeout: float = 5.0) -> list[str]:
    """The log lines matching ``pattern``, waiting for the server to write them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in log.read_text(errors="replace").splitlines() if pattern.search(line)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _read_as_client(cluster: Cluster, statement: str) -> list[tuple[object, ...]]:
    """``statement`` as PostgREST runs a request: logged in as authenticator, SET ROLE, JWT claims."""
    with psycopg.connect(cluster.as_user("authenticator")) as conn:
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps({"client_id": "c1"}),))
        return conn.execute(statement).fetchall()


def test_a_client_read_of_user_sessions_is_in_the_server_log(pgaudit_cluster: Cluster) -> None:
    """After migrate and the setup file, authenticated's reads of user_sessions, straight or through
    user_sessions_local, are logged as pgaudit OBJECT lines; reads of other tables are not."""
    migrate(pgaudit_cluster.url, local_timezone=LOCAL_TIMEZONE, create_clients=True)
    with psycopg.connect(pgaudit_cluster.url, autocommit=True) as conn:
        # Supabase's own login role for PostgREST, which the setup file configures.
        conn.execute("CREATE ROLE authenticator LOGIN NOINHERIT")
        conn.execute("GRANT anon, authenticated, service_role TO authenticator")
        conn.execute("INSERT INTO user_sessions (client_id, assistant_id) VALUES ('c1', %s)", (ASSISTANT,))
        conn.execute(SETUP.read_text())
        conn.execute(SETUP.read_text())  # again: nothing changes, nothing fails
    before = len(_audited(pgaudit_cluster.log, OBJECT_LINE, timeout=0))

    assert _read_as_client(pgaudit_cluster, "SELECT client_id FROM user_sessions") == [("c1",)]
    assert _read_as_client(pgaudit_cluster, "SELECT count(*) FROM client_subscriptions") == [(1,)]
    assert _read_as_client(pgaudit_cluster, "SELECT client_id FROM user_sessions_local") == [("c1",)]

    lines = _audited(pgaudit_cluster.log, OBJECT_LINE)
    assert len(lines) - before == 2, lines
    assert "SELECT client_id FROM user_sessions" in lines[-2]
    assert "SELECT client_id FROM user_sessions_local" in lines[-1]
    assert not _audited(pgaudit_cluster.log, re.compile(r"AUDIT: OBJECT,.*client_subscriptions"), timeout=0)
