"""What the ops page shows, read synchronously (the page runs these in a worker thread).

Phone numbers and e-mail addresses never leave this module whole (``masking``): number
columns show their last digits, and every text or JSON value from outside is masked
before it is returned. A call's transcript, summary and analysis are read only for its
own details view, and recording links (presigned URLs) are never shown at all. The one
exception is a reveal (``revealed_call_detail``, for a POST with a reason): the original
transcript and summary, opened, and the call's numbers whole.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg
import redis
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.mapping.timing import parse_instant
from ingest.ops import backlog, dead_letters, events, reconcile_runs
from ingest.ops.masking import mask_json, mask_phone, mask_text
from ingest.ops.reveal import hidden_text, sealed_label
from ingest.patch import ORIGINALS
from ingest.privacy import Privacy

FILTER_MAX = 200  # longest client, assistant or outcome value a filter takes


def _status(started: dt.datetime | None, ended: dt.datetime | None) -> str:
    if ended is not None:
        return "ended"
    return "in progress" if started is not None else "not started"


@dataclass(frozen=True)
class CallSummary:
    """One ``user_sessions`` row as the recent-calls list shows it."""

    key: str  # call id, else session id: what /ops/calls/{key} takes
    call_id: str | None
    session_id: str | None
    type: str | None
    customer: str
    business: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    ended_reason: str | None
    duration_seconds: decimal.Decimal | None
    cost_total: decimal.Decimal | None
    outcome: str | None
    sentiment: str | None
    created_at: dt.datetime | None
    client_id: str | None
    assistant_id: str | None

    @property
    def status(self) -> str:
        return _status(self.started_at, self.ended_at)

    @classmethod
    def from_row(cls, row: dict[str, Any], region: str) -> CallSummary:
        call_id = str(row["call_id"]) if row["call_id"] is not None else None
        return cls(
            key=call_id or str(row["session_id"]),
            call_id=call_id,
            session_id=row["session_id"],
            type=row["type"],
            customer=mask_phone(row["customer_number"]),
            business=mask_phone(row["business_number"]),
            started_at=row["started_at_utc"],
            ended_at=row["ended_at_utc"],
            ended_reason=row["ended_reason"],
            duration_seconds=row["duration_seconds"],
            cost_total=row["cost_total"],
            outcome=mask_text(row["call_outcome"], region) if row["call_outcome"] else None,
            sentiment=row["sentiment"],
            created_at=row["created_at"],
            client_id=row["client_id"],
            assistant_id=str(row["assistant_id"]) if row["assistant_id"] is not None else None,
        )


@dataclass(frozen=True)
class CallDetail:
    """The resulting row of one call, for its details view."""

    summary: CallSummary
    fields: dict[str, Any]  # the remaining columns, shown as they are
    call_summary: str | None
    transcript: str | None
    keywords: list[str]
    timeline: list[dict[str, Any]]
    provenance: dict[str, Any]
    costs: list[dict[str, Any]]
    analysis: str | None  # pretty JSON
    recordings: list[str] = field(default_factory=list)  # which links exist; never the links
    sealed: dict[str, str] = field(default_factory=dict)  # column → what holds its original (its key), never it
    revealed: bool = False  # call_summary and transcript are the originals, the numbers whole


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _masked(value: str | None, region: str) -> str | None:
    return mask_text(value, region) if value else value


def call_detail_from_row(row: dict[str, Any], region: str) -> CallDetail:
    """The row as its details view shows it: every text and JSON value from outside masked."""
    metadata = mask_json(_as_dict(row["metadata"]), region)
    analysis = metadata.get("analysis")
    timeline = _as_list(mask_json(_as_dict(row["server_messages"]), region).get("timeline"))
    return CallDetail(
        summary=CallSummary.from_row(row, region),
        fields={
            "assistant_id": row["assistant_id"],
            "phone_number_id": row["phone_number_id"],
            "client_id": row["client_id"],
            "user_id": row["user_id"],
            "source": row["source"],
            "duration_minutes": row["duration_minutes"],
            "cost_source": metadata.get("cost_source"),
        },
        call_summary=hidden_text(row["call_summary"], region) if row["call_summary"] else None,
        transcript=hidden_text(row["call_transcript"], region) if row["call_transcript"] else None,
        keywords=[hidden_text(str(k), region) for k in row["keywords"] or []],
        timeline=[e for e in timeline if isinstance(e, dict)],
        provenance=_as_dict(metadata.get("provenance")),
        costs=[c for c in _as_list(metadata.get("costs")) if isinstance(c, dict)],
        analysis=orjson.dumps(analysis, option=orjson.OPT_INDENT_2).decode() if analysis else None,
        recordings=sorted(key for key, value in _as_dict(metadata.get("recordings")).items() if value),
        sealed={column: sealed_label(row[original]) for column, original in ORIGINALS.items() if row.get(original)},
    )


def revealed_from_row(row: dict[str, Any], privacy: Privacy) -> CallDetail:
    """The details view once revealed: the original transcript and summary and the numbers whole,
    the rest as ``call_detail_from_row``; ``KeyUnavailable`` / ``SealError`` naming the key."""
    opened = privacy.open_row(row)
    detail = call_detail_from_row(row, privacy.phone_region)
    originals = {column: opened[original] or row[column] for column, original in ORIGINALS.items()}
    whole = replace(detail.summary, customer=row["customer_number"] or "", business=row["business_number"] or "")
    return replace(
        detail,
        summary=whole,
        call_summary=originals["call_summary"],
        transcript=originals["call_transcript"],
        revealed=True,
    )


@dataclass(frozen=True)
class CallEvent:
    """One event of a call's timeline, whatever its state; ``error`` is the whole last error."""

    id: int
    received_at: dt.datetime
    event_at: dt.datetime | None  # the message's own timestamp
    message_type: str
    status: str | None
    call_id: str | None
    session_id: str | None
    state: str
    attempts: int
    error: str | None
    applied_at: dt.datetime | None

    @property
    def key(self) -> str | None:
        return self.call_id or self.session_id


def call_events(conn: psycopg.Connection[Any], key: str, limit: int, region: str) -> list[CallEvent]:
    """Every event recorded for a call (or session) id, in arrival order, at most ``limit``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_EVENTS_OF_KEY, {"key": key, "limit": limit})
        rows = cur.fetchall()
    return [
        CallEvent(
            id=row["id"],
            received_at=row["received_at"],
            event_at=parse_instant(row["event_timestamp"]),
            message_type=row["message_type"],
            status=row["status"],
            call_id=row["call_id"],
            session_id=row["session_id"],
            state=row["state"],
            attempts=row["attempts"],
            error=_masked(row["last_error"], region),
            applied_at=row["applied_at"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class CallFilter:
    """Which calls the list shows, from the page's query parameters; dates are UTC days, inclusive."""

    client: str | None = None
    assistant: str | None = None
    outcome: str | None = None
    started_from: dt.date | None = None
    started_to: dt.date | None = None
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CallFilter:
        """The filter a query asks for; ``ValueError`` saying which parameter is wrong."""
        texts: dict[str, str | None] = {}
        for name in ("client", "assistant", "outcome"):
            value = query.get(name, "").strip()
            if len(value) > FILTER_MAX:
                raise ValueError(f"{name} is longer than {FILTER_MAX} characters")
            texts[name] = value or None
        dates: dict[str, dt.date | None] = {}
        for name in ("from", "to"):
            value = query.get(name, "").strip()
            try:
                dates[name] = dt.date.fromisoformat(value) if value else None
            except ValueError:
                raise ValueError(f"{name} is not a date (YYYY-MM-DD)") from None
        raw_page = query.get("page", "1").strip() or "1"
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= 100_000:
            raise ValueError("page is not a page number (1 or more)")
        return cls(**texts, started_from=dates["from"], started_to=dates["to"], page=int(raw_page))

    @property
    def active(self) -> bool:
        return any((self.client, self.assistant, self.outcome, self.started_from, self.started_to))

    def query(self, **changes: Any) -> str:
        """This filter as a query string (``page`` left out when it is 1), with ``changes`` applied."""
        wanted = replace(self, **changes)
        pairs = {
            "client": wanted.client,
            "assistant": wanted.assistant,
            "outcome": wanted.outcome,
            "from": wanted.started_from.isoformat() if wanted.started_from else None,
            "to": wanted.started_to.isoformat() if wanted.started_to else None,
            "page": str(wanted.page) if wanted.page != 1 else None,
        }
        return urlencode({key: value for key, value in pairs.items() if value})


def _midnight(day: dt.date | None) -> dt.datetime | None:
    return dt.datetime.combine(day, dt.time(), dt.UTC) if day is not None else None


@dataclass(frozen=True)
class CallPage:
    calls: list[CallSummary]
    filter: CallFilter
    per_page: int
    has_next: bool


def calls_page(conn: psycopg.Connection[Any], wanted: CallFilter, per_page: int, region: str) -> CallPage:
    """One page of the calls matching ``wanted``, newest start first."""
    params = {
        "client": wanted.client,
        "assistant": wanted.assistant,
        "outcome": wanted.outcome,
        "since": _midnight(wanted.started_from),
        "until": _midnight(wanted.started_to + dt.timedelta(days=1) if wanted.started_to else None),
        "limit": per_page + 1,  # one more than shown: whether there is a next page
        "offset": (wanted.page - 1) * per_page,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_CALLS_PAGE, params)
        rows = cur.fetchall()
    calls = [CallSummary.from_row(row, region) for row in rows[:per_page]]
    return CallPage(calls=calls, filter=wanted, per_page=per_page, has_next=len(rows) > per_page)


def _session_row(conn: psycopg.Connection[Any], key: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.OPS_SESSION_BY_KEY, {"key": key})
        return cur.fetchone()


def call_detail(conn: psycopg.Connection[Any], key: str, region: str) -> CallDetail | None:
    """The row whose call id (or, for chat sessions, session id) is ``key``."""
    row = _session_row(conn, key)
    return call_detail_from_row(row, region) if row is not None else None


def revealed_call_detail(conn: psycopg.Connection[Any], key: str, privacy: Privacy) -> CallDetail | None:
    """The row of ``key`` with its originals opened (``revealed_from_row``): only for a reveal with a reason."""
    row = _session_row(conn, key)
    return revealed_from_row(row, privacy) if row is not None else None


def failures(conn: psycopg.Connection[Any], limit: int, region: str) -> list[events.EventSummary]:
    """The newest failed events, their error lines masked."""
    found = events.list_events(conn, failed=True, limit=limit)
    return [replace(e, error=_masked(e.error, region)) for e in found]


def reconciliation(conn: psycopg.Connection[Any], limit: int) -> reconcile_runs.Figures:
    """The last reconciliation runs and the newest calls that reached us only through one (numbers masked)."""
    return reconcile_runs.figures(conn, limit=limit)


def not_applied(conn: psycopg.Connection[Any], event_ids: list[int], privacy: Privacy) -> list[tuple[int, str]]:
    """Why each of these events (the ones a retry just reported) is not applied, masked."""
    reasons = [(event_id, events.why_not_applied(events.get_event(conn, event_id, privacy))) for event_id in event_ids]
    return [(event_id, mask_text(reason, privacy.phone_region)) for event_id, reason in reasons if reason is not None]


def dead_letter_list(
    client: redis.Redis, namespace: str, queue_name: str, limit: int | None, region: str
) -> list[dead_letters.DeadLetter]:
    """The oldest dead letters, their error lines masked; never their bodies."""
    found = dead_letters.list_dead_letters(client, namespace, queue_name, limit=limit)
    return [
        replace(
            letter,
            message_type=_masked(letter.message_type, region),
            call=_masked(letter.call, region),
            error=_masked(letter.error, region),
        )
        for letter in found
    ]


def read_stats(
    pool: ConnectionPool, client: redis.Redis, namespace: str, queue_name: str, region: str
) -> dict[str, Any]:
    """The numbers of ``/ops/stats.json``; a source that cannot be read is reported, not raised."""
    taken = backlog.snapshot(client, pool.connection, namespace, [queue_name])
    stats = taken.as_dict()
    # The page names what is missing, not why: the reason can quote a server's address.
    stats["errors"] = [f"{source}: {type(exc).__name__}" for source, exc in taken.failures.items()]
    if stats["events"] is not None:
        for group in stats["events"]["failed_by_error"]:
            group["error"] = mask_text(group["error"], region)
    return stats
