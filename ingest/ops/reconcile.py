"""Reconciliation: the calls Vapi's API lists, applied as ``api.call`` events, and the gaps they show.

Each Call object the API returns (``ingest.vapi_api``) becomes the message
``{"type": "api.call", "timestamp": <updatedAt, epoch ms>, "call": <the Call object>}``
(``ingest.handlers.api_call``) and goes through ``ingest.apply.apply_event`` like a webhook:
recorded (sealed) in ``call_events``, its dedupe key made of the call id and ``updatedAt`` (the
same state fetched twice is one event, a newer one is a new event), merged by the same rules
with the API's own source rank.

Before applying, each call's row is read and the call classified (``RESULTS``):

- ``missing``: no row at all: none of its webhooks arrived (or none could create the row);
- ``filled``: the row lacked a value the Call has: its end, cost, analysis or transcript;
- ``complete``: the row already had all of them;
- ``erased``: the call was erased on request (``ingest erase``): nothing of it is applied;
- ``failed``: the Call could not be mapped or applied (a call id that is not a UUID, a
  ``metadata.client_id`` longer than any row holds, …). Like a webhook that fails, it is kept
  in ``call_events`` with its error (``ingest.apply.record_failure``: sealed, failed, or
  pending when a retry may help), listed by ``ingest events list --failed --type api.call``
  and applied again by ``ingest events reapply`` once its cause is fixed; the run goes on
  with the other calls, is recorded and moves the watermark (the call is not lost). Only a
  database that cannot be reached stops a run.

The whole window is listed before any row is touched: an API that cannot be read (after
``ingest.vapi_api``'s bounded retries) raises ``VapiApiError`` and changes nothing. A run
stopped after the listing (the database went away) is recorded as failed when it still can.

- ``run(conn, api, privacy, start=…, end=…)`` → ``Result``; unless a dry run, one
  ``reconcile_runs`` row records the window and counts (or the error) and moves the watermark.
- ``run_locked(…)``: ``run`` under a session advisory lock, or None when another runner (on
  any host) holds it; without ``start`` it reads the trailing window (``trailing_window``):
  what the workers call every ``RECONCILE_INTERVAL_MINUTES``.
- The runs' record, the watermark and what ops sees of them: ``ingest.ops.reconcile_runs``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.apply import apply_event, prepare, record_failure
from ingest.db import session_lock
from ingest.errors import Unmappable, describe, is_retryable
from ingest.event import Event
from ingest.handlers.api_call import api_call_message
from ingest.mapping.identity import as_uuid
from ingest.ops import reconcile_runs
from ingest.ops.masking import mask_phone
from ingest.privacy import Privacy
from ingest.settings import Settings
from ingest.vapi_api import VapiApi, VapiApiError, calls_updated_between
from ingest.vocabulary import EventState, MessageType, ReconcileResult

Connection = psycopg.Connection[Any]
log = logging.getLogger(__name__)

COMPLETE, FILLED, MISSING, ERASED, FAILED = (result.value for result in ReconcileResult)
RESULTS = (COMPLETE, FILLED, MISSING, ERASED, FAILED)
# How much of a failed call's error the summary and the result carry (``describe``: the class
# and the mapping's message, never a value of the call's; the event keeps up to 2,000).
ERROR_CHARS = 200
LOCK_KEY = 0x5641_5043  # "VAPC": one reconciliation runner across every host

# What a row can lack that a Call carries: the row's columns, any of which counts as present.
VALUES: dict[str, tuple[str, ...]] = {
    "end": ("ended_at_utc",),
    "cost": ("cost_total",),
    "summary": ("call_summary",),
    "analysis": ("sentiment", "call_outcome"),
    "transcript": ("call_transcript",),
}
ROW = (
    "SELECT ended_at_utc, cost_total, call_summary, sentiment, call_outcome, call_transcript, business_number"
    " FROM user_sessions WHERE call_id = %s"
)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def carried(call: dict[str, Any]) -> set[str]:
    """The ``VALUES`` a Call object carries (a report would bring the same)."""
    analysis, artifact = _dict(call.get("analysis")), _dict(call.get("artifact"))
    found = {
        "end": _text(call.get("endedAt")) is not None,
        "cost": isinstance(call.get("cost"), int | float) and not isinstance(call.get("cost"), bool),
        "summary": _text(analysis.get("summary")) is not None,
        "analysis": bool(_dict(analysis.get("structuredData"))),
        "transcript": _text(artifact.get("transcript")) is not None or _text(call.get("transcript")) is not None,
    }
    return {name for name, present in found.items() if present}


def lacked(row: dict[str, Any], call: dict[str, Any]) -> tuple[str, ...]:
    """What ``call`` carries that ``row`` has none of, in ``VALUES`` order."""
    has = carried(call)
    return tuple(name for name, columns in VALUES.items() if name in has and all(row[c] is None for c in columns))


@dataclass(frozen=True)
class Reconciled:
    """One call as reconciliation found it; no personal data (the number is masked)."""

    call_id: str | None  # None: a failed Call whose id is not a UUID (never printed as given)
    result: str  # one of RESULTS
    assistant_id: str | None
    phone_number_id: str | None
    number: str  # the number the call came through, masked
    lacked: tuple[str, ...] = ()
    state: str | None = None  # the api.call event's state; None: not applied (dry run, or a duplicate)
    error: str | None = None  # a failed call's error (``describe``): its class and a short reason

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "lacked": list(self.lacked)}


def _count(result: str | None, count: int = 1) -> None:
    """Count applied calls by result, or (``result`` None) an API error. ``ingest.metrics.counters``
    is imported here, not above: ``ingest.cli`` imports this module before ``ingest web`` and
    ``ingest worker`` put prometheus_client in multiprocess mode."""
    from ingest.metrics import counters

    if result is None:
        counters.reconcile_api_error()
    else:
        counters.reconciled(result, count)


def _erased(conn: Connection, call_id: str) -> bool:
    row = conn.execute("SELECT ingest_erased(%s::uuid, NULL::text)", (call_id,)).fetchone()
    return bool(row and row[0])


def reconcile_call(
    conn: Connection, call: dict[str, Any], privacy: Privacy, *, dry_run: bool = False, now: datetime | None = None
) -> Reconciled:
    """Classify one Call object against its row, then (unless ``dry_run``) apply it as an event.

    Raises what mapping raises (``Unmappable``: a call id that is not a UUID, …); ``reconcile``
    and ``run_call`` keep such a call as a failed event (``reconcile_one``)."""
    raw_id = call.get("id")
    call_id = as_uuid(raw_id)
    if call_id is None:
        # the id is not quoted: whatever it holds stays out of the error, the summary and the logs
        if isinstance(raw_id, str) and raw_id.strip():
            raise Unmappable(f"call.id is not a UUID ({len(raw_id)} characters)")
        raise Unmappable("the Call object has no id" if raw_id is None else f"call.id is a {type(raw_id).__name__}")
    message = api_call_message(call)
    business = _text(_dict(call.get("phoneNumber")).get("number"))
    assistant_id, phone_number_id = _text(call.get("assistantId")), _text(call.get("phoneNumberId"))
    if _erased(conn, call_id):
        return Reconciled(call_id, ERASED, assistant_id, phone_number_id, mask_phone(business))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(ROW, (call_id,)).fetchone()
    if row is None:
        result, missing_values = MISSING, tuple(name for name in VALUES if name in carried(call))
    else:
        missing_values = lacked(row, call)
        result = FILLED if missing_values else COMPLETE
        business = business or _text(row["business_number"])
    state: EventState | None = None
    event = Event(message, now or datetime.now(UTC))
    if dry_run:
        prepare(event, privacy)  # mapped, not recorded: a Call that cannot be mapped fails a dry run too
    else:
        state = apply_event(conn, event, privacy)
    return Reconciled(
        call_id,
        result,
        assistant_id,
        phone_number_id,
        mask_phone(business),
        missing_values,
        None if state is None else state.value,
    )


def _message(call: Any) -> dict[str, Any]:
    """The api.call message of ``call``, whatever it holds (a failed call is kept as given)."""
    try:
        return api_call_message(call)
    except Exception:  # not a JSON object, or a field no parser expected: kept whole
        return {"type": MessageType.API_CALL.value, "call": call}


def _failed(
    conn: Connection, call: Any, error: Exception, privacy: Privacy, *, dry_run: bool, now: datetime | None
) -> Reconciled:
    """Keep a Call that could not be mapped or applied as a failed ``api.call`` event, with its
    error, as the worker keeps a webhook (``record_failure``: sealed; pending when a retry may
    help, for the sweeper); a dry run records nothing. Raises when the database cannot take it."""
    state: str | None = None
    if not dry_run:
        permanent = not is_retryable(error)
        record_failure(
            conn, Event(_message(call), now or datetime.now(UTC)), error, permanent=permanent, privacy=privacy
        )
        state = (EventState.FAILED if permanent else EventState.PENDING).value
    fields = _dict(call)
    return Reconciled(
        as_uuid(fields.get("id")),
        FAILED,
        as_uuid(fields.get("assistantId")),
        as_uuid(fields.get("phoneNumberId")),
        mask_phone(_text(_dict(fields.get("phoneNumber")).get("number"))),
        state=state,
        error=describe(error, ERROR_CHARS),
    )


def reconcile_one(
    conn: Connection, call: Any, privacy: Privacy, *, dry_run: bool = False, now: datetime | None = None
) -> Reconciled:
    """``reconcile_call``, or a call that cannot be mapped or applied kept as failed (``_failed``).
    A connection that broke is raised: no later call could be applied either."""
    try:
        return reconcile_call(conn, call, privacy, dry_run=dry_run, now=now)
    except Exception as exc:
        if conn.closed or conn.broken:
            raise
        log.warning("reconciliation could not apply a call", extra={"error": describe(exc, ERROR_CHARS)})
        return _failed(conn, call, exc, privacy, dry_run=dry_run, now=now)


@dataclass
class Result:
    """What a run found over its window (or for one call): counts by result, and the gaps."""

    start: datetime | None
    end: datetime | None
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    calls: list[Reconciled] = field(default_factory=list)

    def add(self, item: Reconciled) -> None:
        self.counts[item.result] += 1
        self.calls.append(item)

    @property
    def gaps(self) -> list[Reconciled]:
        """The missing and filled calls: those whose webhooks (some or all) never arrived."""
        return [item for item in self.calls if item.result in (MISSING, FILLED)]

    @property
    def failed(self) -> list[Reconciled]:
        """The calls that could not be mapped or applied (kept in ``call_events`` with their error)."""
        return [item for item in self.calls if item.result == FAILED]

    def counts_dict(self) -> dict[str, int]:
        return {result: self.counts[result] for result in RESULTS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start and self.start.isoformat(),
            "end": self.end and self.end.isoformat(),
            "dry_run": self.dry_run,
            "counts": self.counts_dict(),
            "total": sum(self.counts.values()),
            "gaps": [item.as_dict() for item in self.gaps],
            "failed": [item.as_dict() for item in self.failed],
        }


def reconcile(
    conn: Connection,
    calls: Iterable[dict[str, Any]],
    privacy: Privacy,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    dry_run: bool = False,
    into: Result | None = None,
) -> Result:
    """Every Call of ``calls`` (already fetched), one transaction each; one that cannot be
    mapped or applied is kept as a failed event and counted ``failed`` (``reconcile_one``).
    With ``into``, the calls are added to that result (which keeps what was done when a
    broken connection stops the run)."""
    result = into if into is not None else Result(start, end, dry_run)
    for call in calls:
        result.add(reconcile_one(conn, call, privacy, dry_run=dry_run))
    return result


def run(
    conn: Connection,
    api: VapiApi,
    privacy: Privacy,
    *,
    start: datetime,
    end: datetime,
    dry_run: bool = False,
    runner: str = "cli",
) -> Result:
    """List every call updated in [start, end), then classify and apply each (``conn`` in autocommit).

    The listing comes first: when the API cannot be read, ``VapiApiError`` is raised before
    any row is touched (and, unless a dry run, the failure is recorded in ``reconcile_runs``).
    A call that cannot be mapped or applied does not stop the run: it is kept as a failed
    event and counted ``failed``; the run is recorded (a success: the watermark moves). Only
    an error no call could get past (the connection broke) stops it, recorded as failed when
    the database still answers, and raised.
    """
    if not conn.autocommit:
        raise ValueError("reconciliation runs in autocommit mode: each call is a transaction of its own")
    started = datetime.now(UTC)
    try:
        calls = list(calls_updated_between(api, start, end))
    except VapiApiError as exc:
        _count(None)
        if not dry_run:
            reconcile_runs.record(
                conn, started=started, runner=runner, start=start, end=end, counts={}, error=str(exc)[:500]
            )
        raise
    result = Result(start, end, dry_run)
    try:
        reconcile(conn, calls, privacy, dry_run=dry_run, into=result)
    except Exception as exc:
        if not dry_run:
            _count_results(result)
            _record_stopped(conn, started=started, runner=runner, start=start, end=end, result=result, error=exc)
        raise
    if not dry_run:
        _count_results(result)
        reconcile_runs.record(
            conn, started=started, runner=runner, start=start, end=end, counts=result.counts_dict(), error=None
        )
    return result


def _count_results(result: Result) -> None:
    for name, count in result.counts.items():
        _count(name, count)


def _record_stopped(
    conn: Connection,
    *,
    started: datetime,
    runner: str,
    start: datetime,
    end: datetime,
    result: Result,
    error: Exception,
) -> None:
    """Record a run stopped part-way as failed (the watermark stays), if the database still answers."""
    try:
        reconcile_runs.record(
            conn,
            started=started,
            runner=runner,
            start=start,
            end=end,
            counts=result.counts_dict(),
            error=f"stopped after {len(result.calls)} call(s): {describe(error, 400)}",
        )
    except Exception as record_error:
        log.error("could not record a stopped reconciliation", extra={"error": type(record_error).__name__})


def run_call(conn: Connection, api: VapiApi, privacy: Privacy, call_id: str, *, dry_run: bool = False) -> Result:
    """One call (``GET /call/{id}``); a call the API does not know gives an empty result."""
    try:
        found = api.get_call(call_id)
    except VapiApiError:
        _count(None)
        raise
    result = Result(None, None, dry_run)
    if found is not None:
        result.add(reconcile_one(conn, found, privacy, dry_run=dry_run))
        if not dry_run:
            _count(result.calls[0].result)
    return result


def run_locked(
    conn: Connection,
    api: VapiApi,
    privacy: Privacy,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window_hours: int = 48,
    interval_minutes: int | None = None,
    dry_run: bool = False,
    runner: str = "cli",
) -> Result | None:
    """``run`` while holding the reconciliation lock; None when another runner holds it, or
    (with ``interval_minutes``) when a run finished less than that long ago, checked under the
    lock. Without ``start``: the trailing window of ``window_hours`` (``trailing_window``)."""
    with session_lock(conn, LOCK_KEY) as held:
        if not held or (interval_minutes is not None and not reconcile_runs.due_now(conn, interval_minutes)):
            return None
        if start is None:
            start, end = reconcile_runs.trailing_window(conn, window_hours, now=end)
        return run(conn, api, privacy, start=start, end=end or datetime.now(UTC), dry_run=dry_run, runner=runner)


def make_api(settings: Settings) -> VapiApi | None:
    """The API client of ``settings.vapi_api``; None when ``VAPI_API_KEY`` is not set."""
    api_settings = settings.vapi_api
    return None if api_settings is None else VapiApi(api_settings)


__all__ = [
    "COMPLETE",
    "ERASED",
    "FAILED",
    "FILLED",
    "MISSING",
    "RESULTS",
    "Reconciled",
    "Result",
    "VapiApiError",
    "carried",
    "lacked",
    "make_api",
    "reconcile",
    "reconcile_call",
    "reconcile_one",
    "run",
    "run_call",
    "run_locked",
]
