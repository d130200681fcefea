"""generate_call_analytics (derived columns, routing, placeholders, cost) and get_client_call_analytics."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[tuple[Any, ...]]

ASSISTANT = "0f6d7a64-1a7c-4b8e-9c55-3e2f1d0c9b8a"
PHONE = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CALL = "5b0c4f0e-8f0a-4f57-9d8e-2b1f3c4d5e6f"
START = "2026-11-10T01:00:00Z"
END = "2026-11-10T01:05:30Z"  # 330 s


def insert_session(conn: Conn, **columns: Any) -> str:
    columns = {"assistant_id": ASSISTANT, **columns}
    placeholders = ", ".join(["%s"] * len(columns))
    row = conn.execute(
        f"INSERT INTO user_sessions ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id::text",
        tuple(columns.values()),
    ).fetchone()
    assert row is not None
    return str(row[0])


def update_session(conn: Conn, session: str, **columns: Any) -> None:
    assignments = ", ".join(f"{name} = %s" for name in columns)
    conn.execute(f"UPDATE user_sessions SET {assignments} WHERE id = %s", (*columns.values(), session))


def read(conn: Conn, session: str, *columns: str) -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {', '.join(columns)} FROM user_sessions WHERE id = %s", (session,)).fetchone()
    assert row is not None
    return tuple(row)


# ---------------------------------------------------------------- durations


def test_durations_derived_from_timestamps(db: Conn) -> None:
    """Without durations, seconds = end - start and minutes = round(seconds / 60, 2)."""
    session = insert_session(db, started_at_utc=START, ended_at_utc="2026-11-10T01:05:30.1234Z")
    assert read(db, session, "duration_seconds", "duration_minutes") == (Decimal("330.123"), Decimal("5.50"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"duration_seconds": Decimal("95.5")}, (Decimal("95.500"), Decimal("1.59"))),
        ({"duration_minutes": Decimal("2.25")}, (Decimal("135.000"), Decimal("2.25"))),
        (
            {"duration_seconds": Decimal("330.5"), "duration_minutes": Decimal("5.5")},
            (Decimal("330.500"), Decimal("5.50")),
        ),
    ],
)
def test_given_durations_fill_each_other(db: Conn, given: dict[str, Any], expected: tuple[Decimal, Decimal]) -> None:
    """A given duration wins over the timestamps; the missing unit is computed from it; both given are kept."""
    session = insert_session(db, started_at_utc=START, ended_at_utc=END, **given)
    assert read(db, session, "duration_seconds", "duration_minutes") == expected


def test_derived_durations_follow_moved_timestamps(db: Conn) -> None:
    """When the end moves and the durations were derived, they are derived again."""
    session = insert_session(db, started_at_utc=START, ended_at_utc=END)
    update_session(db, session, ended_at_utc="2026-11-10T01:10:00Z")
    assert read(db, session, "duration_seconds", "duration_minutes") == (Decimal("600.000"), Decimal("10.00"))


def test_reported_durations_survive_moved_timestamps(db: Conn) -> None:
    """Durations a writer gave are not overwritten by a later timestamp change."""
    session = insert_session(db, started_at_utc=START, ended_at_utc=END, duration_seconds=Decimal("300"))
    update_session(db, session, ended_at_utc="2026-11-10T01:10:00Z")
    assert read(db, session, "duration_seconds", "duration_minutes") == (Decimal("300.000"), Decimal("5.00"))


def test_duration_given_with_the_end_is_kept(db: Conn) -> None:
    """An update setting the end and a duration together keeps the duration it set."""
    session = insert_session(db, started_at_utc=START)
    update_session(db, session, ended_at_utc=END, duration_seconds=Decimal("200"))
    assert read(db, session, "duration_seconds", "duration_minutes") == (Decimal("200.000"), Decimal("3.33"))


def test_corrected_seconds_update_derived_minutes(db: Conn) -> None:
    """Changing only the seconds recomputes minutes that were derived from them."""
    session = insert_session(db, started_at_utc=START, ended_at_utc=END)
    update_session(db, session, duration_seconds=Decimal("90"))
    assert read(db, session, "duration_seconds", "duration_minutes") == (Decimal("90.000"), Decimal("1.50"))


def test_impossible_spans_give_no_duration(db: Conn) -> None:
    """An end before the start, or a span too long for numeric(10,3), leaves the durations NULL."""
    backwards = insert_session(db, started_at_utc=END, ended_at_utc=START)
    huge = insert_session(db, started_at_utc="2000-01-01T00:00Z", ended_at_utc="2026-01-01T00:00Z")
    assert read(db, backwards, "duration_seconds", "duration_minutes") == (None, None)
    assert read(db, huge, "duration_seconds", "duration_minutes") == (None, None)


# ---------------------------------------------------------------- analysis columns


@pytest.mark.parametrize(
    ("keywords", "expected"),
    [
        (["Pricing", " product ", "PRICING", "", None, "  ", "Inquiry", "product"], ["pricing", "product", "inquiry"]),
        (["Customer   Service", "customer service"], ["customer service"]),
        (["", None, " "], None),
        ([], None),
        (None, None),
    ],
)
def test_keywords_are_normalised(db: Conn, keywords: list[str | None] | None, expected: list[str] | None) -> None:
    """Keywords are lower-cased, trimmed, de-duplicated in first-seen order, and NULL when nothing is left."""
    session = insert_session(db, keywords=keywords)
    assert read(db, session, "keywords") == (expected,)
    update_session(db, session, keywords=["B", "a", "b"])
    assert read(db, session, "keywords") == (["b", "a"],)


def test_sentiment_and_outcome_are_normalised(db: Conn) -> None:
    """sentiment and call_outcome are lower-cased and trimmed; blank becomes NULL."""
    session = insert_session(db, sentiment="  Positive\n", call_outcome=" Information_Provided ")
    assert read(db, session, "sentiment", "call_outcome") == ("positive", "information_provided")
    update_session(db, session, sentiment="  ", call_outcome="BOOKED")
    assert read(db, session, "sentiment", "call_outcome") == (None, "booked")


# ---------------------------------------------------------------- routing and parents


def test_client_is_routed_by_phone_number_first(db: Conn) -> None:
    """A session without client_id takes it from its phone number, else from its assistant."""
    db.execute("INSERT INTO assistants (id, client_id) VALUES (%s, 'by-assistant')", (ASSISTANT,))
    db.execute("INSERT INTO phone_numbers (id, client_id) VALUES (%s, 'by-phone')", (PHONE,))
    both = insert_session(db, phone_number_id=PHONE)
    assistant_only = insert_session(db)
    explicit = insert_session(db, phone_number_id=PHONE, client_id="explicit")
    assert read(db, both, "client_id") == ("by-phone",)
    assert read(db, assistant_only, "client_id") == ("by-assistant",)
    assert read(db, explicit, "client_id") == ("explicit",)


def test_routing_fills_a_client_assigned_later(db: Conn) -> None:
    """Once ops assigns the placeholder assistant to a client, the session's next write routes it."""
    session = insert_session(db)
    assert read(db, session, "client_id") == (None,)
    db.execute("UPDATE assistants SET client_id = 'c7' WHERE id = %s", (ASSISTANT,))
    update_session(db, session, ended_reason="customer-ended-call")
    assert read(db, session, "client_id") == ("c7",)


def test_unknown_parents_get_placeholders(db: Conn) -> None:
    """An unknown assistant, phone number and client are stored as placeholders, not rejected."""
    insert_session(db, phone_number_id=PHONE, client_id="new-client")
    assert db.execute("SELECT id::text, client_id, name FROM assistants").fetchall() == [(ASSISTANT, None, None)]
    assert db.execute("SELECT id::text, client_id FROM phone_numbers").fetchall() == [(PHONE, None)]
    assert db.execute("SELECT client_id, status, rate_per_minute, plan FROM client_subscriptions").fetchall() == [
        ("new-client", "unknown", None, None)
    ]


def test_existing_parents_are_left_alone(db: Conn) -> None:
    """Known parents are not touched and no duplicate is attempted on later writes."""
    db.execute("INSERT INTO client_subscriptions (client_id, plan, status) VALUES ('c1', 'pro', 'active')")
    session = insert_session(db, client_id="c1")
    update_session(db, session, client_id="c2")
    update_session(db, session, client_id="c1")
    assert db.execute("SELECT client_id, plan, status FROM client_subscriptions ORDER BY 1").fetchall() == [
        ("c1", "pro", "active"),
        ("c2", None, "unknown"),
    ]


def test_parent_with_sessions_cannot_be_deleted(db: Conn) -> None:
    """Sessions are billing records: deleting a referenced assistant is refused."""
    insert_session(db)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("DELETE FROM assistants")


# ---------------------------------------------------------------- cost


@pytest.fixture
def rated(db: Conn) -> Conn:
    """Client c1 pays 0.20 per minute; c2 has no rate."""
    db.execute("INSERT INTO client_subscriptions (client_id, rate_per_minute) VALUES ('c1', 0.2), ('c2', NULL)")
    return db


def test_rate_plan_prices_an_ended_call_without_cost(rated: Conn) -> None:
    """An ended call with a duration and no reported cost costs duration x rate, marked rate_plan."""
    session = insert_session(rated, client_id="c1", started_at_utc=START, ended_at_utc=END, metadata='{"k": 1}')
    assert read(rated, session, "cost_total", "metadata") == (
        Decimal("1.1000"),
        {"k": 1, "cost_source": "rate_plan"},
    )


def test_no_price_before_the_end_or_without_rate(rated: Conn) -> None:
    """A call not yet ended, or whose client has no rate, gets no computed cost."""
    running = insert_session(rated, client_id="c1", started_at_utc=START, duration_seconds=60)
    unrated = insert_session(rated, client_id="c2", started_at_utc=START, ended_at_utc=END)
    assert read(rated, running, "cost_total", "metadata") == (None, None)
    assert read(rated, unrated, "cost_total", "metadata") == (None, None)


def test_rate_plan_cost_follows_duration_and_client(rated: Conn) -> None:
    """A rate_plan cost is recomputed when the duration or the client change."""
    session = insert_session(rated, client_id="c1", started_at_utc=START, ended_at_utc=END)
    update_session(rated, session, duration_seconds=Decimal("600"))
    assert read(rated, session, "cost_total") == (Decimal("2.0000"),)
    update_session(rated, session, client_id="c2")
    assert read(rated, session, "cost_total", "metadata") == (None, {})


def test_reported_cost_replaces_rate_plan_and_stays(rated: Conn) -> None:
    """A reported cost replaces a rate_plan one and is not re-priced by later corrections."""
    session = insert_session(rated, client_id="c1", started_at_utc=START, ended_at_utc=END)
    update_session(rated, session, cost_total=Decimal("0.0731"))
    assert read(rated, session, "cost_total", "metadata") == (Decimal("0.0731"), {"cost_source": "reported"})
    update_session(rated, session, duration_seconds=Decimal("900"), metadata='{"other": true}')
    assert read(rated, session, "cost_total", "metadata") == (
        Decimal("0.0731"),
        {"other": True, "cost_source": "reported"},
    )
    assert rated.execute("SELECT cost FROM client_monthly_usage").fetchone() == (Decimal("0.0731"),)


UPSERT = """
    INSERT INTO user_sessions AS s
        (call_id, assistant_id, client_id, started_at_utc, ended_at_utc, cost_total, metadata)
    VALUES (%(call)s, %(assistant)s, 'c1', %(start)s, %(end)s, %(cost)s, %(metadata)s)
    ON CONFLICT (call_id) DO UPDATE
    SET ended_at_utc = excluded.ended_at_utc,
        duration_seconds = excluded.duration_seconds,
        duration_minutes = excluded.duration_minutes,
        cost_total = coalesce(excluded.cost_total, s.cost_total),
        metadata = coalesce(s.metadata, '{}') || coalesce(excluded.metadata, '{}')
"""


def upsert(conn: Conn, end: str, cost: Decimal | None, metadata: str = "{}") -> None:
    conn.execute(
        UPSERT, {"call": CALL, "assistant": ASSISTANT, "start": START, "end": end, "cost": cost, "metadata": metadata}
    )


def test_upsert_does_not_mistake_its_own_rate_plan_for_a_report(rated: Conn) -> None:
    """In a worker-style upsert the EXCLUDED row's rate_plan cost never overrides a reported cost."""
    upsert(rated, END, Decimal("0.42"))
    upsert(rated, "2026-11-10T01:10:00Z", None)  # a late status update carrying no cost
    row = rated.execute("SELECT cost_total, metadata ->> 'cost_source', duration_seconds FROM user_sessions").fetchone()
    assert row == (Decimal("0.4200"), "reported", Decimal("600.000"))


def test_upsert_reprices_a_rate_plan_row(rated: Conn) -> None:
    """A worker-style upsert of a longer call re-prices a rate_plan row, and a later report wins."""
    upsert(rated, END, None)
    upsert(rated, "2026-11-10T01:10:00Z", None)
    assert rated.execute("SELECT cost_total, metadata ->> 'cost_source' FROM user_sessions").fetchone() == (
        Decimal("2.0000"),
        "rate_plan",
    )
    upsert(rated, "2026-11-10T01:10:00Z", Decimal("0.99"))
    assert rated.execute("SELECT cost_total, metadata ->> 'cost_source' FROM user_sessions").fetchone() == (
        Decimal("0.9900"),
        "reported",
    )
    assert rated.execute("SELECT calls, minutes, cost FROM client_monthly_usage").fetchone() == (
        1,
        Decimal("10.00"),
        Decimal("0.9900"),
    )


# ---------------------------------------------------------------- get_client_call_analytics

RPC = "SELECT * FROM get_client_call_analytics(%s, %s, %s)"


def test_rpc_aggregates_a_clients_sessions(db: Conn) -> None:
    """Counts, sums, average, sentiment and outcome maps and top keywords over the client's sessions."""
    rows = [
        ("c1", "2026-11-02T01:00Z", 120, "1.00", "Positive", "booked", ["pricing", "demo"]),
        ("c1", "2026-11-03T01:00Z", 300, "2.50", "negative", "booked", ["pricing", "refund"]),
        ("c1", "2026-11-04T01:00Z", 60, None, "positive", "no_answer", ["Pricing"]),
        ("c1", "2026-11-05T01:00Z", None, None, None, None, None),
        ("c2", "2026-11-05T01:00Z", 600, "9.00", "positive", "booked", ["pricing"]),
    ]
    for client, started, seconds, cost, sentiment, outcome, keywords in rows:
        insert_session(
            db,
            client_id=client,
            started_at_utc=started,
            duration_seconds=seconds,
            cost_total=cost,
            sentiment=sentiment,
            call_outcome=outcome,
            keywords=keywords,
        )
    result = db.execute(RPC, ("c1", "2026-11-01", "2026-11-30")).fetchone()
    assert result == (
        4,
        Decimal("8.00"),
        Decimal("3.5000"),
        Decimal("2.67"),
        {"positive": 2, "negative": 1},
        {"booked": 2, "no_answer": 1},
        [{"keyword": "pricing", "count": 3}, {"keyword": "demo", "count": 1}, {"keyword": "refund", "count": 1}],
    )
    names = [column.name for column in db.execute(RPC, ("c1", "2026-11-01", "2026-11-30")).description or []]
    assert names == [
        "total_calls",
        "total_minutes",
        "total_cost",
        "avg_duration",
        "sentiment_counts",
        "outcome_counts",
        "top_keywords",
    ]


def test_rpc_with_no_sessions_returns_zeros(db: Conn) -> None:
    """An empty range gives one row of zeros and empty maps."""
    assert db.execute(RPC, ("c1", "2026-11-01", "2026-11-30")).fetchone() == (0, 0, 0, None, {}, {}, [])


def test_rpc_top_keywords_are_limited_to_ten(db: Conn) -> None:
    """Only the ten most frequent keywords are returned, ties broken alphabetically."""
    words = [f"w{i:02d}" for i in range(12)]
    insert_session(db, client_id="c1", started_at_utc="2026-11-02T01:00Z", keywords=words)
    insert_session(db, client_id="c1", started_at_utc="2026-11-02T02:00Z", keywords=["w11"])
    top = db.execute("SELECT top_keywords FROM get_client_call_analytics('c1', '2026-11-01', '2026-11-30')").fetchone()
    assert top is not None
    assert [item["keyword"] for item in top[0]] == ["w11", *words[:9]]
    assert top[0][0] == {"keyword": "w11", "count": 2}


def test_rpc_dates_are_local_and_inclusive(db: Conn) -> None:
    """Sessions belong to the NZ local date of their start; both range ends are included."""
    starts = {
        "2026-02-28T10:59:59Z": False,  # 2026-02-28 23:59:59 NZDT, before the range
        "2026-02-28T11:00:00Z": True,  # 2026-03-01 00:00 NZDT, first day
        "2026-03-31T10:59:59Z": True,  # 2026-03-31 23:59:59 NZDT, last day
        "2026-03-31T11:00:00Z": False,  # 2026-04-01 00:00 NZDT, after the range
    }
    for started in starts:
        insert_session(db, client_id="c1", started_at_utc=started, duration_seconds=60)
    insert_session(db, client_id="c1", ended_at_utc="2026-03-15T00:00Z", duration_seconds=60)  # no start: by end
    row = db.execute(RPC, ("c1", "2026-03-01", "2026-03-31")).fetchone()
    assert row is not None
    assert row[0] == sum(starts.values()) + 1
    single_day = db.execute(RPC, ("c1", "2026-03-01", "2026-03-01")).fetchone()
    assert single_day is not None
    assert single_day[0] == 1


def test_rpc_follows_the_configured_zone(db: Conn) -> None:
    """With local_timezone UTC the same instants fall on their UTC dates."""
    insert_session(db, client_id="c1", started_at_utc="2026-02-28T11:00:00Z")
    db.execute("UPDATE ingest_settings SET value = 'UTC' WHERE key = 'local_timezone'")
    row = db.execute(RPC, ("c1", "2026-03-01", "2026-03-31")).fetchone()
    assert row is not None
    assert row[0] == 0
