"""One call full of personal data, delivered signed to a live endpoint and applied by live workers:
hidden on every surface unless revealed with a reason, and kept in the database only sealed."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from support.live import JSON, web_server, worker_process
from support.ops_cli import use_servers
from support.queue import dead_letters
from support.rows import event_states, stored_messages

from ingest.cli import main
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings

pytestmark = pytest.mark.slow

CALL_ID = "5a1e7c3d-2b4f-4e6a-9c8d-0f1e2d3c4b5a"
ASSISTANT = "7c2d9e41-3a5b-4f6c-8d7e-9f0a1b2c3d4e"
PHONE_NUMBER_ID = "1e2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0"
CLIENT = "client-privacy-check"
BUSINESS = "+6493005566"
T0 = 1_795_824_000_000  # 2026-11-28 00:00Z

# What the caller says, and every way it could leak.
CUSTOMER = "+64275550148"  # as customer_number holds it (the seed's plain column)
SAID_NUMBER = "027 555 0148"
EMAIL = "aroha.tane@kiwimail.co.nz"
CARD = "4529 3827 1650 3129"  # Luhn-valid, grouped as read out
SPOKEN = "four one two two seven nine three eight"
ORDINARY = "gutters"  # a word of the transcript that search finds the call by
SECRETS = (
    CUSTOMER,
    CUSTOMER[1:],
    "0275550148",
    SAID_NUMBER,
    "555 0148",
    "5550148",
    EMAIL,
    "aroha.tane",
    "kiwimail",
    CARD,
    CARD.replace(" ", ""),
    SPOKEN,
    "41227938",
)

USER_1 = f"Hi, it's about cleaning my {ORDINARY}. Call me back on {SAID_NUMBER} or email {EMAIL}."
USER_2 = f"My card is {CARD} and my member number is {SPOKEN}."
AI_1 = "Kia ora, you've reached Clearflow Spouting. How can I help?"
AI_2 = "Thanks, that's all noted. We'll clear the spouting on Friday morning."
TRANSCRIPT = f"AI: {AI_1}\nUser: {USER_1}\nUser: {USER_2}\nAI: {AI_2}\n"
SUMMARY = (
    f"The caller asked for their {ORDINARY} to be cleaned, gave {SAID_NUMBER} and {EMAIL} for a call back,"
    f" paid by card {CARD} and quoted member number {SPOKEN}."
)
REASONS = {
    "calls": "ticket PRIV-301: the caller asked for what they said",
    "events": "ticket PRIV-302: checking the report as received",
    "page": "ticket PRIV-303: complaint review",
}
USER, PASSWORD = "oncall", "a long ops password"


def said(role: str, text: str, at: int) -> dict[str, Any]:
    return {"role": role, "message": text, "time": at, "endTime": at + 2000, "secondsFromStart": (at - T0) / 1000}


CONVERSATION = [
    said("bot", AI_1, T0 + 1000),
    said("user", USER_1, T0 + 4000),
    said("user", USER_2, T0 + 9000),
    said("bot", AI_2, T0 + 14000),
]


def message(kind: str, at: int, *, user_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A message of the call as Vapi sends it: the call, the number called, the caller."""
    metadata = {"client_id": CLIENT, **({"user_id": user_id} if user_id else {})}
    call = {
        "id": CALL_ID,
        "orgId": "a1984baa-e6d2-4596-9058-a4648bb74a95",
        "type": "inboundPhoneCall",
        "status": "in-progress",
        "assistantId": ASSISTANT,
        "phoneNumberId": PHONE_NUMBER_ID,
        "customer": {"number": CUSTOMER},
        "metadata": metadata,
        "createdAt": "2026-11-28T00:00:00.000Z",
    }
    phone = {"id": PHONE_NUMBER_ID, "number": BUSINESS, "provider": "twilio"}
    return {
        "timestamp": at,
        "type": kind,
        **fields,
        "call": call,
        "phoneNumber": phone,
        "customer": {"number": CUSTOMER},
    }


def the_call() -> list[dict[str, Any]]:
    """Seven events: the last, a turn whose user id no row can hold, fails for good."""
    openai = [{"role": "assistant" if m["role"] == "bot" else "user", "content": m["message"]} for m in CONVERSATION]
    report = {
        "endedReason": "customer-ended-call",
        "startedAt": "2026-11-28T00:00:00.500Z",
        "endedAt": "2026-11-28T00:00:18.000Z",
        "cost": 0.0412,
        "analysis": {
            "summary": SUMMARY,
            "structuredData": {"sentiment": "neutral", "outcome": "appointment_booked"},
            "successEvaluation": "true",
        },
        "artifact": {"transcript": TRANSCRIPT, "messages": CONVERSATION, "messagesOpenAIFormatted": openai},
    }
    return [
        message("status-update", T0 + 500, status="in-progress"),
        message("transcript", T0 + 6000, role="user", transcriptType="final", transcript=USER_1),
        message("transcript", T0 + 11000, role="user", transcriptType="final", transcript=USER_2),
        message("conversation-update", T0 + 15000, messages=CONVERSATION, messagesOpenAIFormatted=openai),
        message("status-update", T0 + 18000, status="ended", endedReason="customer-ended-call"),
        message("end-of-call-report", T0 + 20000, **report),
        message("conversation-update", T0 + 16000, user_id="u" * 300, messages=CONVERSATION),
    ]


def settled(db_url: str, total: int, timeout: float = 90.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            states = event_states(conn)
            if sum(states.values()) >= total and not states.get("pending") and not states.get("waiting"):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"events did not settle: {states} of {total}")
            time.sleep(0.25)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def without_customer_numbers(dump: str) -> tuple[str, list[str]]:
    """The dump with the ``customer_number`` field of every ``user_sessions`` row emptied, and those fields."""
    lines, numbers, column = [], [], None
    for line in dump.splitlines():
        if line.startswith("COPY public.user_sessions ("):
            columns = line[len("COPY public.user_sessions (") : line.index(") FROM stdin")].split(", ")
            column = columns.index("customer_number")
        elif column is not None and line == "\\.":
            column = None
        elif column is not None:
            fields = line.split("\t")
            numbers.append(fields[column])
            line = "\t".join([*fields[:column], "", *fields[column + 1 :]])
        lines.append(line)
    return "\n".join(lines), numbers


def run(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> str:
    """``ingest ARGV`` in this process; its stdout. Its stderr (log lines included) must not leak either."""
    assert main(list(argv)) == status, argv
    captured = capsys.readouterr()
    assert leaked(captured.err) == [], argv
    return captured.out


def test_personal_data_is_hidden_everywhere_unless_revealed(
    db_url: str,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logs, metrics, errors, listings, pages and a dump hold nothing the caller said; a reveal shows it, once each."""
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    if not Path(pg_dump).exists():
        pytest.skip("pg_dump is not installed: the database dump cannot be checked")
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server_url,
        "INGEST_REDIS_NAMESPACE": redis_namespace,
        "VAPI_HMAC_SECRET": "privacy-e2e-hmac-secret",
        "INGEST_OPS_USER": USER,
        "INGEST_OPS_PASSWORD": PASSWORD,
        "INGEST_DATA_DIR": str(tmp_path),
        "LOG_LEVEL": "DEBUG",
        "SWEEP_INTERVAL_SECONDS": "1",
        "SWEEP_GRACE_SECONDS": "5",
    }
    messages = the_call()
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    auth = AuthSettings.from_env(env)
    ops = httpx.BasicAuth(USER, PASSWORD)
    with (
        web_server(env, log_path=str(web_log)) as base,
        worker_process(env, threads=2, log_path=str(worker_log)),  # DEBUG too: actor arguments are never logged
    ):
        for item in messages:
            raw = orjson.dumps({"message": item})
            answer = httpx.post(
                f"{base}/webhooks/vapi", content=raw, headers={**JSON, **sign(auth, raw, now=time.time())}, timeout=10
            )
            assert answer.status_code == 200, answer.text
        assert settled(db_url, len(messages)) == {"applied": len(messages) - 1, "failed": 1}
        deadline = time.monotonic() + 30
        while not dead_letters(redis_server_url, redis_namespace) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dead_letters(redis_server_url, redis_namespace) == 1

        pages = {
            "overview": httpx.get(f"{base}/ops", auth=ops, timeout=10),
            "call": httpx.get(f"{base}/ops/calls/{CALL_ID}", auth=ops, timeout=10),
            "stats": httpx.get(f"{base}/ops/stats.json", auth=ops, timeout=10),
            "metrics": httpx.get(f"{base}/metrics", timeout=10),
        }
        for name, page in pages.items():
            assert page.status_code == 200, name
            assert leaked(page.text) == [], name
        assert "[EMAIL]" in pages["call"].text
        assert 'action="/ops/reveal"' in pages["call"].text
        assert "metadata.user_id is 300 characters long" in pages["overview"].text  # the failure, listed
        assert "vapi_ingest_events_failed_total" in pages["metrics"].text

        revealed = httpx.post(
            f"{base}/ops/reveal",
            data={"key": CALL_ID, "reason": REASONS["page"]},
            headers={"origin": base},
            auth=ops,
            timeout=10,
        )
        assert revealed.status_code == 200
        assert revealed.headers["cache-control"] == "no-store"
        for secret in (EMAIL, CARD, SAID_NUMBER, SPOKEN, CUSTOMER):
            assert secret in revealed.text

    # -- the ingest command ----------------------------------------------------------------------
    use_servers(monkeypatch, db_url=db_url, redis_url=redis_server_url, namespace=redis_namespace)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    with psycopg.connect(db_url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM call_events ORDER BY id").fetchall()]
        [report_id] = conn.execute("SELECT id FROM call_events WHERE message_type = 'end-of-call-report'").fetchone()
    outputs = {
        "calls list": run(capsys, "calls", "list"),
        "calls show": run(capsys, "calls", "show", CALL_ID),
        "calls show --json": run(capsys, "calls", "show", CALL_ID, "--json"),
        "events list": run(capsys, "events", "list", "--call", CALL_ID, "--state", "applied,failed"),
        "events list --failed": run(capsys, "events", "list", "--failed"),
        "dlq list": run(capsys, "dlq", "list"),
        **{f"events show {event_id}": run(capsys, "events", "show", str(event_id)) for event_id in ids},
        **{
            f"events show {event_id} --json": run(capsys, "events", "show", str(event_id), "--json") for event_id in ids
        },
    }
    for name, out in outputs.items():
        assert leaked(out) == [], name
    assert "•••0148" in outputs["calls list"]
    assert "[EMAIL]" in outputs["calls show"]
    assert "metadata.user_id is 300 characters long" in outputs["dlq list"] + outputs["events list --failed"]

    shown = run(capsys, "calls", "show", CALL_ID, "--reveal", "--reason", REASONS["calls"])
    for secret in (EMAIL, CARD, SAID_NUMBER, SPOKEN, CUSTOMER):
        assert secret in shown
    as_received = run(capsys, "events", "show", str(report_id), "--reveal", "--reason", REASONS["events"], "--json")
    assert orjson.loads(as_received)["message"] == messages[5]

    listed = run(capsys, "audit", "list")
    assert leaked(listed) == []
    assert all(reason in listed for reason in REASONS.values())
    assert leaked(caplog.text) == []

    # -- what the database holds -------------------------------------------------------------------
    with psycopg.connect(db_url, autocommit=True) as conn:
        entries = conn.execute(
            "SELECT actor, actor_kind, surface, target, reason, target_count FROM data_access_log"
            " WHERE action = 'reveal' ORDER BY id"
        ).fetchall()
        errors = [row[0] for row in conn.execute("SELECT last_error FROM call_events WHERE last_error IS NOT NULL")]
        found = conn.execute(
            "SELECT call_id::text FROM user_sessions"
            " WHERE to_tsvector('english', call_transcript) @@ plainto_tsquery('english', %s)",
            (ORDINARY,),
        ).fetchall()
        assert stored_messages(conn, "id = %s", (report_id,)) == [messages[5]]
    assert [(kind, surface, target, reason, count) for _, kind, surface, target, reason, count in entries] == [
        ("ops_user", "ops", CALL_ID, REASONS["page"], 1),
        ("os_user", "cli", CALL_ID, REASONS["calls"], 1),
        ("os_user", "cli", str(report_id), REASONS["events"], 1),
    ]
    assert entries[0][0] == USER
    assert found == [(CALL_ID,)]
    assert errors == ["Unmappable: metadata.user_id is 300 characters long, more than 255"]
    assert leaked("\n".join(errors)) == []

    dump = data_dump(pg_dump, db_url)
    rest, numbers = without_customer_numbers(dump)
    assert numbers == [CUSTOMER]  # the one place the seed keeps it: user_sessions.customer_number
    assert leaked(rest) == []
    assert re.search(r"\[EMAIL\].*\[CARD\]", rest)  # the redacted transcript is in the dump, searchable

    for log in (web_log, worker_log):
        text = log.read_text()
        assert text, log
        assert leaked(text) == [], log


def data_dump(pg_dump: str, db_url: str) -> str:
    """``pg_dump --data-only`` of the test's database, as text."""
    done = subprocess.run([pg_dump, "--data-only", f"--dbname={db_url}"], capture_output=True, check=True, timeout=120)
    return done.stdout.decode()
