"""The six detectors of abuse monitoring: what each finds unusual in one window of calls.

Each reads counts from ``sql/functions/87_anomalies.sql`` for the window [start, end) and
returns ``Detection`` values; ``ingest.ops.anomalies.scan`` records them. Thresholds are
``AnomalySettings`` (docs/abuse.md):

- ``volume`` / ``cost``: a client's calls (cost) in the window against the same window of
  each of ``baseline_weeks`` weeks before, in local time. With m the median of those weeks
  and MAD their median absolute deviation, score = (observed − m) / scale, where scale is
  max(1.4826·MAD, √max(m, 1)) for calls and max(1.4826·MAD, m/4, 1) for cost; raised from
  ``volume_min_calls`` (``cost_min``) and ``volume_score`` (``cost_score``). A client with
  fewer than ``baseline_min_weeks`` weeks of history is not judged.
- ``repeat_caller``: one number calling one client ``repeat_calls`` times; score = calls / threshold.
- ``short_calls``: ``short_calls`` calls shorter than ``short_call_seconds`` that are at least
  ``short_call_share`` of a phone number's (else a client's) calls; score = short / threshold.
- ``outbound_destination``: outbound calls to premium-rate or shared-cost numbers, or to a
  region outside ``allowed_countries``; score = calls.
- ``vapi_signal``: calls Vapi ended for its fraud check or a limit; score = calls.

Callers and dialled numbers become ``pseudonym(number, key)`` here: no number leaves this module.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import phonenumbers
import psycopg

from ingest import queries
from ingest.ops.anomaly_settings import AnomalySettings
from ingest.pseudonym import pseudonym
from ingest.vocabulary import AnomalyKind, AnomalySubject

Connection = psycopg.Connection[Any]
NO_CLIENT = "(no client)"  # the subject of client-wide patterns among calls that had no client
MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation, from its median absolute deviation
FLAGGED_TYPES = {
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "premium_rate",
    phonenumbers.PhoneNumberType.SHARED_COST: "shared_cost",
}


@dataclass(frozen=True)
class Window:
    """The calls a scan looks at: [start, end), and the local zone baselines shift in."""

    start: datetime
    end: datetime
    zone: str


@dataclass(frozen=True)
class Detection:
    """One unusual pattern in a window, ready to record (``subject`` is never a number)."""

    kind: AnomalyKind
    client_id: str | None
    subject_kind: AnomalySubject
    subject: str
    observed: float
    baseline: float | None = None
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _window(window: Window) -> dict[str, Any]:
    return {"start": window.start, "end": window.end}


def _robust(values: Sequence[float]) -> tuple[float, float]:
    """The median and the median absolute deviation."""
    median = statistics.median(values)
    return median, statistics.median(abs(value - median) for value in values)


def baselines(conn: Connection, window: Window, limits: AnomalySettings) -> list[Detection]:
    """``volume`` and ``cost``: clients far above the same local hour of their past weeks."""
    rows = conn.execute(
        queries.ANOMALY_BASELINES,
        {
            **_window(window),
            "zone": window.zone,
            "weeks": limits.baseline_weeks,
            "min_calls": limits.volume_min_calls,
            "min_cost": Decimal(str(limits.cost_min)),
        },
    ).fetchall()
    found: list[Detection] = []
    for client_id, calls, cost, weekly_calls, weekly_cost in rows:
        if len(weekly_calls) < limits.baseline_min_weeks:
            continue
        median, mad = _robust([float(n) for n in weekly_calls])
        scale = max(MAD_TO_SIGMA * mad, max(median, 1.0) ** 0.5)
        score = (calls - median) / scale
        if calls >= limits.volume_min_calls and score >= limits.volume_score:
            details = {"weekly_calls": [int(n) for n in weekly_calls], "mad": mad}
            found.append(_client(AnomalyKind.VOLUME, client_id, float(calls), median, score, details))
        median, mad = _robust([float(n) for n in weekly_cost])
        scale = max(MAD_TO_SIGMA * mad, 0.25 * median, 1.0)
        score = (float(cost) - median) / scale
        if float(cost) >= limits.cost_min and score >= limits.cost_score:
            details = {"weekly_cost": [float(n) for n in weekly_cost], "mad": mad, "calls": int(calls)}
            found.append(_client(AnomalyKind.COST, client_id, float(cost), median, score, details))
    return found


def _client(
    kind: AnomalyKind, client_id: str, observed: float, baseline: float, score: float, details: dict[str, Any]
) -> Detection:
    return Detection(kind, client_id, AnomalySubject.CLIENT, client_id, observed, baseline, round(score, 4), details)


def repeat_callers(conn: Connection, window: Window, limits: AnomalySettings, key: bytes) -> list[Detection]:
    """``repeat_caller``: one number calling one client many times, by its pseudonym."""
    rows = conn.execute(queries.ANOMALY_REPEAT_CALLERS, {**_window(window), "min": limits.repeat_calls}).fetchall()
    return [
        Detection(
            AnomalyKind.REPEAT_CALLER,
            client_id,
            AnomalySubject.CALLER,
            pseudonym(number, key),
            float(calls),
            score=round(calls / limits.repeat_calls, 4),
            details={"calls": int(calls)},
        )
        for client_id, number, calls in rows
    ]


def short_calls(conn: Connection, window: Window, limits: AnomalySettings) -> list[Detection]:
    """``short_calls``: a burst of very short calls to one phone number, else to one client."""
    rows = conn.execute(
        queries.ANOMALY_SHORT_CALLS,
        {
            **_window(window),
            "seconds": Decimal(str(limits.short_call_seconds)),
            "min": limits.short_calls,
            "share": Decimal(str(limits.short_call_share)),
        },
    ).fetchall()
    found = []
    for client_id, phone_number_id, short, calls in rows:
        subject_kind = AnomalySubject.PHONE_NUMBER if phone_number_id is not None else AnomalySubject.CLIENT
        subject = str(phone_number_id) if phone_number_id is not None else client_id or NO_CLIENT
        details = {"short_calls": int(short), "calls": int(calls), "share": round(short / calls, 4)}
        score = round(short / limits.short_calls, 4)
        found.append(
            Detection(AnomalyKind.SHORT_CALLS, client_id, subject_kind, subject, float(short), None, score, details)
        )
    return found


def classify(number: str, region: str, allowed: frozenset[str]) -> tuple[str, str] | None:
    """(region, number type) of a dialled number that is unusual: premium rate, shared cost or
    outside ``allowed``; None for an expected one or something that is not a phone number."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    number_region = phonenumbers.region_code_for_number(parsed) or "unknown"
    number_type = phonenumbers.number_type(parsed)
    if number_type in FLAGGED_TYPES:
        return number_region, FLAGGED_TYPES[number_type]
    if number_region not in allowed:
        return number_region, _type_name(number_type)
    return None


def _type_name(number_type: int) -> str:
    names = {value: name.lower() for name, value in vars(phonenumbers.PhoneNumberType).items() if name.isupper()}
    return names.get(number_type, "unknown")


def outbound_destinations(
    conn: Connection, window: Window, limits: AnomalySettings, key: bytes, region: str
) -> list[Detection]:
    """``outbound_destination``: outbound calls to premium, shared-cost or unexpected-country numbers."""
    rows = conn.execute(queries.ANOMALY_OUTBOUND_NUMBERS, _window(window)).fetchall()
    found = []
    for client_id, number, calls in rows:
        unusual = classify(number, region, limits.allowed_countries)
        if unusual is None:
            continue
        number_region, number_type = unusual
        details = {"region": number_region, "number_type": number_type, "calls": int(calls)}
        found.append(
            Detection(
                AnomalyKind.OUTBOUND_DESTINATION,
                client_id,
                AnomalySubject.CALLER,
                pseudonym(number, key),
                float(calls),
                score=float(calls),
                details=details,
            )
        )
    return found


def vapi_signals(conn: Connection, window: Window) -> list[Detection]:
    """``vapi_signal``: each client's calls Vapi ended for its fraud check or a limit, by reason."""
    reasons: dict[str | None, dict[str, int]] = defaultdict(dict)
    for client_id, reason, calls in conn.execute(queries.ANOMALY_VAPI_SIGNALS, _window(window)).fetchall():
        reasons[client_id][reason] = int(calls)
    found = []
    for client_id, counts in sorted(reasons.items(), key=lambda item: item[0] or ""):
        total = float(sum(counts.values()))
        details = {"ended_reasons": dict(sorted(counts.items()))}
        subject = client_id or NO_CLIENT
        found.append(
            Detection(AnomalyKind.VAPI_SIGNAL, client_id, AnomalySubject.CLIENT, subject, total, None, total, details)
        )
    return found


__all__ = [
    "NO_CLIENT",
    "Detection",
    "Window",
    "baselines",
    "classify",
    "outbound_destinations",
    "repeat_callers",
    "short_calls",
    "vapi_signals",
]
