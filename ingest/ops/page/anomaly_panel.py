"""The ops page's Anomalies panel and its one action, acknowledging an anomaly with a reason.

The panel shows the open anomalies (``ingest.ops.anomalies``), newest detected first and at
most ``ANOMALIES_SHOWN``, with how many are open of each kind, and the last scan. Nothing in it
is personal: a subject is a client id, a Vapi phone number id or a caller's pseudonym
(``anon:<hex>``), and an anomaly's ``details`` are not shown at all.

``POST /ops/anomalies/acknowledge`` takes one ``id`` and a ``reason``; the reason is checked as
a reveal's is (``ingest.ops.reveal.reveal_reason``: the access log keeps it for good, so it may
not hold a phone number, an e-mail address or a card number).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

from ingest.ops import anomalies
from ingest.ops.page.guard import action_form, problem
from ingest.ops.reveal import ReasonRefused, reveal_reason
from ingest.vocabulary import AnomalyKind

ANOMALIES_SHOWN = 50
KINDS = tuple(kind.value for kind in AnomalyKind)
_ID = re.compile(r"[0-9]{1,18}")
REASON_REQUIRED = "acknowledging an anomaly needs a reason (what was checked, or the ticket): it is recorded"


@dataclass(frozen=True)
class Panel:
    """What the Anomalies panel shows."""

    open: list[anomalies.Anomaly]  # newest detected first, at most ANOMALIES_SHOWN
    open_counts: dict[str, int]  # every kind, 0 included
    last_scan: dict[str, Any] | None

    @property
    def open_total(self) -> int:
        return sum(self.open_counts.values())


def read(conn: psycopg.Connection[Any], limit: int = ANOMALIES_SHOWN) -> Panel:
    """The open anomalies (newest first, at most ``limit``), the open counts by kind and the last scan."""
    newest_first = anomalies.list_anomalies(conn, open_only=True, limit=limit)
    return Panel(newest_first, anomalies.open_counts(conn), anomalies.last_scan(conn))


@dataclass(frozen=True)
class Acknowledgement:
    """An acknowledge form, checked: which anomaly, why, and the page to come back to."""

    anomaly_id: int
    reason: str
    target: str


async def acknowledge_form(request: Request, region: str) -> Acknowledgement | Response:
    """The posted ``id`` (one) and ``reason``, or a 400/413 saying what is wrong (HTML for a browser)."""
    form = await action_form(request, "id")
    if isinstance(form, Response):
        return form
    ids, target, fields = form
    if len(ids) != 1 or not _ID.fullmatch(ids[0]):
        return problem(request, 400, "invalid_id", "send the id of one anomaly")
    text = fields.get("reason", [""])[0]
    try:
        if not text.strip():
            raise ReasonRefused("reason_required", REASON_REQUIRED)
        reason = reveal_reason(text, region)
    except ReasonRefused as exc:
        return problem(request, 400, exc.code, str(exc), "not_acknowledged.html")
    return Acknowledgement(int(ids[0]), reason, target)
