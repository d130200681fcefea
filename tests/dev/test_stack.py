"""`ingest dev` with nothing configured: embedded servers, migrations, web and worker, banner, demo, clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
import redis
from support.fixtures import CALLS_DIR, EVENTS_DIR, all_calls, iter_bodies
from support.stack import CONFIG, OPS, ROOT, Stack, assert_all_stopped, leftovers

from ingest.dev import demo, stack, state
from ingest.dev.embedded import _free_port
from ingest.dev.stack import OPS_PASSWORD_FILE, banner, base_url, child_env
from ingest.migrate import discover
from ingest.sealing import Keyring
from ingest.settings import Settings

# The `ingest` script beside this interpreter, as the banner shows it: `.venv/bin/ingest` in a checkout.
_SCRIPT = Path(sys.executable).with_name("ingest")
INGEST = _SCRIPT.relative_to(ROOT) if _SCRIPT.is_relative_to(ROOT) else _SCRIPT


def fixture_call_ids() -> set[str]:
    """The call id of every recorded call (the chat session has none)."""
    messages = (orjson.loads(next(iter_bodies(path)))["message"] for path in all_calls())
    return {message["call"]["id"] for message in messages if "call" in message}


@pytest.mark.slow
def test_dev_stack_banner_demo_replay_stop_and_restart(tmp_path: Path) -> None:
    """Ready before it says so, demo applied with its failure, replay works as printed, Ctrl-C stops all, data kept."""
    data_dir, port = tmp_path / "data", _free_port()
    base = f"http://127.0.0.1:{port}"
    stack = Stack(data_dir, port, "--demo")
    try:
        banner = stack.banner()
        assert httpx.get(f"{base}/readyz").status_code == 200  # printed only once ready
        assert banner["webhook URL"] == f"{base}/webhooks/vapi"
        assert banner["ops page"] == f"{base}/ops"
        assert banner["metrics"] == f"{base}/metrics"
        password_file = data_dir / OPS_PASSWORD_FILE
        password = password_file.read_text().strip()
        assert banner["ops login"] == f"ops / {password}"
        assert len(password) >= 20
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert (
            banner["replay"] == f"INGEST_INSECURE=true {INGEST} replay tests/fixtures/calls --url {base}/webhooks/vapi"
        )

        summary = "".join(stack.read_until(lambda line: "rows in user_sessions" in line, timeout=120))
        assert "demo: 4 rows in user_sessions for the demo calls (4 in all)" in summary
        with psycopg.connect(banner["database"], autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(discover()),)
            assert conn.execute("SELECT count(*) FROM user_sessions WHERE ended_at_utc IS NOT NULL").fetchone() == (4,)
            states = dict(conn.execute("SELECT state, count(*) FROM call_events GROUP BY state").fetchall())
            assert states.pop("failed") == 1
            assert set(states) <= {"applied", "ignored"}  # nothing pending or waiting
            assert sum(states.values()) == 38  # every other delivery of the four calls
            (error,) = conn.execute("SELECT last_error FROM call_events WHERE state = 'failed'").fetchone() or ("",)
            assert "is not a UUID" in str(error)
            conn.execute("INSERT INTO client_subscriptions (client_id, plan) VALUES ('kept-across-restarts', 'pro')")

        # The printed URLs and login work; the ops page shows the deliberate failure.
        user, _, given = banner["ops login"].partition(" / ")
        assert httpx.get(banner["ops page"]).status_code == 401
        page = httpx.get(banner["ops page"], auth=(user, given))
        assert page.status_code == 200
        assert "is not a UUID" in page.text
        assert httpx.get(banner["metrics"]).status_code == 200

        # The printed command, from a fresh shell: no variables but PATH and HOME.
        fresh = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
        replayed = subprocess.run(
            ["bash", "-c", banner["replay"] + " --no-progress"],
            cwd=ROOT,
            env=fresh,
            capture_output=True,
            text=True,
            timeout=300,
        )
        deliveries = sum(1 for path in all_calls() for _ in iter_bodies(path))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert f"sent {deliveries} deliveries — 200: {deliveries}" in replayed.stdout
        expected_rows = 4 + len(all_calls())  # one row per recorded call, the chat session included
        with psycopg.connect(banner["database"], autocommit=True) as conn:
            deadline = time.monotonic() + 90
            while (rows := conn.execute("SELECT count(*) FROM user_sessions").fetchone()) != (expected_rows,):
                assert time.monotonic() < deadline, f"{rows} rows in user_sessions, expected {expected_rows}"
                time.sleep(0.5)

        client = redis.Redis.from_url(banner["redis"])
        assert client.zcard("dramatiq:__heartbeats__") >= 1  # the worker fetched from the queue
        client.close()
        running = leftovers(data_dir)
        assert len(running) >= 4, running  # ingest dev, web, worker, postgres: what must be gone after Ctrl-C
    finally:
        assert stack.stop(whole_group=True) == 0, stack.log_tail()
    assert_all_stopped(data_dir, port, banner["redis"])

    stack = Stack(data_dir, port)
    try:
        again = stack.banner()
        assert again["ops login"] == f"ops / {password}"  # the generated password is kept
        with psycopg.connect(again["database"]) as conn:
            kept = conn.execute("SELECT plan FROM client_subscriptions WHERE client_id = 'kept-across-restarts'")
            assert kept.fetchone() == ("pro",)
            assert conn.execute("SELECT count(*) FROM user_sessions").fetchone() == (expected_rows,)
    finally:
        assert stack.stop() == 0, stack.log_tail()  # SIGINT to `ingest dev` alone: it stops its children itself
    assert_all_stopped(data_dir, port, again["redis"])


@pytest.mark.slow
def test_sigterm_in_the_middle_of_the_demo_stops_everything(tmp_path: Path) -> None:
    """SIGTERM while the demo sends and waits stops the stack like Ctrl-C, with nothing left running."""
    data_dir, port = tmp_path / "data", _free_port()
    stack = Stack(data_dir, port, "--demo")
    try:
        redis_url = stack.banner()["redis"]
        stack.read_until(lambda line: line.startswith("demo: sending"))
    finally:
        assert stack.stop(signal.SIGTERM) == 0, stack.log_tail()
    assert not any(line.startswith("demo: 4 calls") for line in stack.output)
    assert_all_stopped(data_dir, port, redis_url)


def test_sigterm_inside_an_event_loop_callback_still_interrupts() -> None:
    """SIGTERM raises KeyboardInterrupt, which asyncio lets out of a callback (other exceptions it only logs)."""
    previous = signal.signal(signal.SIGTERM, stack._interrupt)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await asyncio.sleep(10)

    try:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(main())
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ops_password_is_generated_private_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no ops credentials, the children get user `ops` and a random password kept (0600) in the data dir."""
    for name in OPS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(database_url="postgresql:///x", redis_url="redis://x", data_dir=tmp_path / "data")
    first, second = child_env(settings), child_env(settings)
    assert first["INGEST_OPS_USER"] == "ops"
    assert len(first["INGEST_OPS_PASSWORD"]) >= 20
    assert second["INGEST_OPS_PASSWORD"] == first["INGEST_OPS_PASSWORD"]
    kept = tmp_path / "data" / OPS_PASSWORD_FILE
    assert kept.read_text().strip() == first["INGEST_OPS_PASSWORD"]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    kept.chmod(0o644)
    child_env(settings)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    other = Settings(data_dir=tmp_path / "other")
    assert child_env(other)["INGEST_OPS_PASSWORD"] != first["INGEST_OPS_PASSWORD"]


def test_local_stack_seals_with_a_key_it_makes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys the children get one made on first run, kept (0600) in the data dir, and found by other commands."""
    monkeypatch.delenv("INGEST_ENCRYPTION_KEYS")
    monkeypatch.delenv("INGEST_PLAINTEXT", raising=False)
    settings = Settings(database_url="postgresql:///x", redis_url="redis://x", data_dir=tmp_path / "data")
    first, second = child_env(settings), child_env(settings)
    key = first["INGEST_ENCRYPTION_KEYS"]
    assert Keyring.parse(key).sealing
    assert second["INGEST_ENCRYPTION_KEYS"] == key
    kept = tmp_path / "data" / state.KEY_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    state.write(settings.data_dir, {"DATABASE_URL": "postgresql:///x", "REDIS_URL": "redis://x"})
    assert key not in (tmp_path / "data" / state.STATE_FILE).read_text()  # the secret stays in its own file
    found = state.discovered(Settings.from_env({"INGEST_DATA_DIR": str(settings.data_dir)}))
    assert found.keyring.key_ids == Keyring.parse(key).key_ids
    monkeypatch.setenv("INGEST_PLAINTEXT", "true")
    assert "INGEST_ENCRYPTION_KEYS" not in child_env(Settings(data_dir=tmp_path / "plain"))


def test_local_stack_makes_a_pseudonym_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without INGEST_PSEUDONYM_KEY the children get one made on first run, kept (0600), found by other commands."""
    monkeypatch.delenv("INGEST_PSEUDONYM_KEY")
    settings = Settings(database_url="postgresql:///x", redis_url="redis://x", data_dir=tmp_path / "data")
    key = child_env(settings)["INGEST_PSEUDONYM_KEY"]
    assert child_env(settings)["INGEST_PSEUDONYM_KEY"] == key
    kept = tmp_path / "data" / state.PSEUDONYM_KEY_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    state.write(settings.data_dir, {"DATABASE_URL": "postgresql:///x", "REDIS_URL": "redis://x"})
    found = state.discovered(Settings.from_env({"INGEST_DATA_DIR": str(settings.data_dir)}))
    assert found.pseudonym_key is not None
    assert found.pseudonym_key == Settings.from_env({"INGEST_PSEUDONYM_KEY": key}).pseudonym_key


@pytest.mark.parametrize(
    ("configured", "login"),
    [
        ({"INGEST_OPS_TOKEN": "tok-not-shown"}, "Authorization: Bearer <INGEST_OPS_TOKEN>"),
        ({"INGEST_OPS_USER": "me", "INGEST_OPS_PASSWORD": "pw-not-shown"}, "me / the password in INGEST_OPS_PASSWORD"),
    ],
)
def test_configured_ops_credentials_are_left_alone(
    configured: dict[str, str], login: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ops credentials from the environment pass through unchanged, and the banner never prints them."""
    for name in OPS:
        monkeypatch.delenv(name, raising=False)
    for name, value in configured.items():
        monkeypatch.setenv(name, value)
    settings = Settings(database_url="postgresql:///x", redis_url="redis://x", data_dir=tmp_path)
    env = child_env(settings)
    assert {name: env[name] for name in OPS if name in env} == configured
    assert not (tmp_path / OPS_PASSWORD_FILE).exists()
    text = banner(settings, env)
    assert f"  ops login    {login}\n" in text
    assert "not-shown" not in text


def test_banner_replay_command_signs_like_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Insecure by default the command carries INGEST_INSECURE=true; with a secret it says to export it instead."""
    monkeypatch.chdir(ROOT)
    for name in CONFIG + OPS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(database_url="postgresql:///x", redis_url="redis://x", data_dir=tmp_path, host="0.0.0.0")  # noqa: S104
    assert base_url(settings) == "http://127.0.0.1:8000"
    insecure = banner(settings, child_env(settings))
    expected = (
        f"  INGEST_INSECURE=true {INGEST} replay tests/fixtures/calls --url http://127.0.0.1:8000/webhooks/vapi\n"
    )
    assert expected in insecure
    assert "WITHOUT authentication" in insecure
    monkeypatch.setenv("VAPI_SECRET", "s3cret")
    secured = banner(settings, child_env(settings))
    assert f"  {INGEST} replay tests/fixtures/calls --url" in secured
    assert "export the same settings" in secured
    assert "s3cret" not in secured


def test_demo_calls_are_the_recorded_fixtures() -> None:
    """Every body shipped for the demo is byte-for-byte the fixture it was copied from."""
    for name in demo.CALLS:
        assert (demo.DEMO_DIR / name).read_bytes() == (CALLS_DIR / name).read_bytes(), name
    assert (demo.DEMO_DIR / demo.FAILING).read_bytes() == (EVENTS_DIR / demo.FAILING).read_bytes()


def test_demo_gives_every_run_fresh_call_ids() -> None:
    """Two demo runs share no call id or dedupe key, and the broken event's call id is no UUID."""
    first, second = demo.prepare(), demo.prepare()
    assert len(first.call_ids) == len(demo.CALLS) == len(set(first.call_ids))
    assert not set(first.all_ids) & set(second.all_ids)
    assert not first.event_keys & second.event_keys
    assert len(first.event_keys) == len(first.bodies)
    originals = fixture_call_ids() | {"call_8e21f0f7b3c94d6a"}
    for _, body in first.bodies:
        assert not any(original.encode() in body for original in originals)
        assert orjson.loads(body)["message"]["call"]["id"] in first.all_ids
    assert not re.fullmatch(r"[0-9a-f-]{36}", first.failing_call_id)
