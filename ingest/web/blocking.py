"""``BLOCK_FLAGGED_CALLERS``: an ``assistant-request`` from a flagged caller is answered with an error.

Vapi does not connect a call whose ``assistant-request`` is answered with ``error``: the
caller hears that message instead (``VAPI_ASSISTANT_REQUEST_ERROR``). A caller is flagged
while a repeat-caller anomaly of theirs is open (``ingest.flagged_callers``, kept by the
anomaly scan). Everyone else is answered as usual; with blocking off nothing is looked up.

Each refusal is counted (``vapi_ingest_callers_blocked_total``), logged with the anomaly's
id (never the number), kept as the delivery it was (the call's events show the request),
and audited: a ``caller_blocked`` row in ``data_access_log``, written after the answer is
sent so the call never waits on the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ingest import audit
from ingest.audit import Actor
from ingest.mapping.call import customer_number
from ingest.metrics import counters
from ingest.ops.flagged_callers import FlaggedCallers
from ingest.pseudonym import pseudonym
from ingest.vocabulary import AuditAction, AuditActorKind, AuditSurface, AuditTargetKind

log = logging.getLogger("ingest.web.blocking")

ACTOR = Actor("BLOCK_FLAGGED_CALLERS", AuditActorKind.SERVICE)


@dataclass(frozen=True)
class CallerBlock:
    """What the endpoint needs to refuse flagged callers."""

    flagged: FlaggedCallers
    pseudonym_key: bytes
    phone_region: str

    async def anomaly(self, message: dict[str, Any]) -> int | None:
        """The open anomaly that flags this request's caller; None for anyone else (or no number)."""
        number = customer_number(message, self.phone_region)
        if number is None:
            return None
        return await self.flagged.lookup(pseudonym(number, self.pseudonym_key))


def refused(anomaly: int, call_id: str | None) -> None:
    """Count and log one refusal."""
    counters.caller_blocked()
    log.warning("flagged caller refused", extra={"anomaly": anomaly, "call_id": call_id})


async def record(pool: AsyncConnectionPool, anomaly: int, call_id: str | None) -> None:
    """The audit row of one refusal; a database that cannot take it is logged, not raised."""
    try:
        async with pool.connection(timeout=5.0) as conn:
            await audit.record_async(
                conn,
                action=AuditAction.CALLER_BLOCKED,
                surface=AuditSurface.WEBHOOK,
                actor=ACTOR,
                target_kind=AuditTargetKind.ANOMALY,
                target=str(anomaly),
                details={"call_id": call_id},
            )
    except Exception as exc:
        log.error("could not audit a refused caller", extra={"anomaly": anomaly, "error": type(exc).__name__})
