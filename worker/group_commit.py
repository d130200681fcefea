"""Group commit: the events that worker threads bring at the same moment share one commit.

Dramatiq's worker threads hand their events over with ``GroupCommit.submit``, which does
not wait: ``then(state, error)`` runs on the committer thread once the event is committed or
has failed (``worker.process.hand_over`` acknowledges its message there, see
``worker.acks``). ``GroupCommit.apply`` hands one over and waits for it. One committer
thread per process takes everything waiting, applies the batch in one transaction,
commits once, and reports each event's result. Under load a commit — the WAL flush — is
paid per batch instead of per event; when idle a batch is a single event and nothing
waits.

Each thread maps and seals its own event (``ingest.apply.prepare``) before handing it over,
so that work runs while the committer waits on the database for the batch before. A batch
is then applied as it is: one statement records and merges all its events
(``ingest_record_and_apply_batch``), then each event's follow-ups run, in order. Should any
event fail, that attempt is rolled back and the batch applied again with each event in its
own savepoint (``apply_event``), so a failing event rolls back alone and gets its own error
while the others commit. Savepoints cost two round trips per event, and failures are rare:
they are paid only then.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from ingest import queries
from ingest.apply import Connection, Prepared, apply_event, prepare, settle
from ingest.errors import Transient
from ingest.event import Event
from ingest.privacy import Privacy
from ingest.vocabulary import EventState

log = logging.getLogger(__name__)


class GroupCommitClosed(Transient):
    """An event arrived after ``close``: it was not applied (Dramatiq retries its message)."""


@dataclass
class _Slot:
    event: Event
    prepared: Prepared | None = None  # None: prepared by the committer (whose error fails the first pass)
    done: threading.Event = field(default_factory=threading.Event)
    state: EventState | None = None
    error: BaseException | None = None
    then: Callable[[EventState | None, BaseException | None], None] | None = None  # on the committer thread, once done


_UNWATCHED = threading.Event()  # the done of every slot reported through its ``then``: never set, never waited on


class GroupCommit:
    def __init__(self, pool: ConnectionPool, privacy: Privacy, *, max_batch: int = 64) -> None:
        self.pool = pool
        self.privacy = privacy
        self.max_batch = max_batch
        self._waiting: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ingest-group-commit", daemon=True)
        self._thread.start()

    def apply(self, event: Event) -> EventState | None:
        """Apply ``event``; return once it is committed, or raise what applying it raised."""
        try:
            prepared = prepare(event, self.privacy)
        except Exception:  # raised again, and recorded, where the batch is applied event by event
            prepared = None
        slot = self.submit(event, prepared)
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.state

    def submit(
        self,
        event: Event,
        prepared: Prepared | None,
        then: Callable[[EventState | None, BaseException | None], None] | None = None,
    ) -> _Slot:
        """Hand ``event`` over without waiting; ``then(state, error)`` runs on the committer thread once it is done."""
        if self._closed:
            raise GroupCommitClosed("the group commit is closed: the worker is shutting down")
        # A slot whose result goes to ``then`` has nobody waiting on it: no Event of its own
        # (a Condition and a lock to build, about 1.5 % of a worker's time per event).
        slot = _Slot(event, prepared, then=then) if then is None else _Slot(event, prepared, _UNWATCHED, then=then)
        self._waiting.put(slot)
        return slot

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is waiting, stop; an event handed over too late gets an error, never a hang."""
        self._closed = True
        self._waiting.put(None)
        self._thread.join(timeout)
        while True:
            try:
                slot = self._waiting.get_nowait()
            except queue.Empty:
                return
            if slot is not None:
                slot.error = GroupCommitClosed("the group commit closed before this event was applied")
                _finish(slot)

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    slot = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if slot is None:
                    self._waiting.put(None)  # stop after this batch
                    break
                batch.append(slot)
            self._commit(batch)

    def _commit(self, batch: list[_Slot]) -> None:
        # One call's events stay in arrival order; different calls are taken in key order
        # so that two processes' batches lock rows in the same order.
        batch.sort(key=lambda slot: slot.event.key)
        try:
            with self.pool.connection() as conn:
                if not self._apply_all(conn, batch):
                    self._apply_each(conn, batch)
        except Exception as exc:  # the commit (or the connection) failed: nobody's event is durable
            for slot in batch:
                slot.state, slot.error = None, slot.error or exc
            log.warning("group commit failed", extra={"events": len(batch), "error": type(exc).__name__})
        finally:
            for slot in batch:
                _finish(slot)

    def _apply_all(self, conn: Connection, batch: list[_Slot]) -> bool:
        """The whole batch in one transaction without savepoints; False (rolled back) if any event failed."""
        try:
            with conn.transaction():
                prepared = [slot.prepared or prepare(slot.event, self.privacy) for slot in batch]
                columns = prepared[0].params.keys()
                arrays = {column: [item.params[column] for item in prepared] for column in columns}
                recorded = {row[0]: row[1:] for row in conn.execute(queries.RECORD_AND_APPLY_BATCH, arrays)}
                states = [
                    settle(conn, item, recorded[n], self.privacy) if n in recorded else None  # None: a duplicate
                    for n, item in enumerate(prepared, start=1)
                ]
        except Exception:
            if conn.closed:
                raise
            return False
        for slot, state in zip(batch, states, strict=True):
            slot.state = state
        return True

    def _apply_each(self, conn: Connection, batch: list[_Slot]) -> None:
        """The batch again, each event in its own savepoint: a failure stays with its event."""
        with conn.transaction():
            for slot in batch:
                try:
                    slot.state = apply_event(conn, slot.event, self.privacy)
                except Exception as exc:
                    slot.error = exc


def _finish(slot: _Slot) -> None:
    """Wake whoever waits on ``slot`` and run its ``then``; an error there stays with it."""
    if slot.done is not _UNWATCHED:
        slot.done.set()
    if slot.then is not None:
        try:
            slot.then(slot.state, slot.error)
        except Exception as exc:  # the committer goes on; the message stays unacknowledged, so it comes back
            log.error("an event's follow-up failed", extra={"type": slot.event.kind, "error": type(exc).__name__})
