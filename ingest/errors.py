"""Errors by meaning: what a retry can fix, and what it never will."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg


class ConfigError(ValueError):
    """A setting is missing or malformed: the process refuses to start, and the message names it."""


class PermanentError(Exception):
    """An event that can never be applied as it is; it is recorded as failed, not retried."""


class Transient(Exception):
    """A failure of this service's own making that a retry fixes (a worker shutting down, …)."""


class Unmappable(PermanentError):
    """The event's content cannot be mapped onto a row (a call id that is not a UUID, …)."""


# SQLSTATE classes a retry can fix: connection trouble, resources, operator intervention,
# and the two concurrency classes (40001 serialization_failure, 40P01 deadlock_detected).
_RETRYABLE_CLASSES = ("08", "53", "57", "58", "40")
# Classes that mean the statement can never succeed with these values: data exceptions,
# integrity violations, and program limits (54000: an index row or a tsvector too large).
_PERMANENT_CLASSES = ("22", "23", "54")


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed attempt should be retried (with backoff) rather than recorded as failed."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, Transient):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if state.startswith(_PERMANENT_CLASSES):
            return False
        if not state or state.startswith(_RETRYABLE_CLASSES):
            return True  # no SQLSTATE: the connection broke before the server answered
        return isinstance(exc, pg.OperationalError)
    return isinstance(exc, (OSError, TimeoutError))


def describe(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message`` for logs and ``call_events.last_error``, without the row's values.

    A database error's text can carry a DETAIL line quoting the failing row (``Failing row
    contains (…, +6421…)``): phone numbers and transcripts have no place in an error record
    or a log line, so only the primary message of a database error is kept.
    """
    text = str(exc)
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
    return f"{type(exc).__name__}: {text}"[:limit]
