"""JSON log lines: one object per record, with the record's ``extra`` fields as keys.

Every value is bounded here, in the one formatter both processes use: a string longer than
``FIELD_LIMIT`` characters is cut with a marker saying how much was left out (a traceback
keeps its last ``EXC_LIMIT``), so no field a sender controls (a message type, a call id)
can make a line, or the disk, grow with it.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from typing import Any

import orjson

FIELD_LIMIT = 200  # characters kept of any logged string
EXC_LIMIT = 8000  # characters kept of a traceback (its end, where the error is)
ITEMS_LIMIT = 50  # entries kept of a logged list or dict

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_SMALL = {bool, int, float}  # kept as they are, without a call


# Dramatiq gives each actor a logger named after its function (``worker.actors.apply_event``).
ACTOR_LOGGERS = ("worker.actors",)


class RedactMessages(logging.Filter):
    """Dramatiq logs whole messages (``Failed to process message apply_event({...})``) and an
    actor's arguments; ours carry webhook bodies with transcripts and phone numbers, so only
    actor and id are kept, and arguments never."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("dramatiq") and isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif record.name.startswith(ACTOR_LOGGERS) and record.args:
            # an actor's own logger: at DEBUG, Dramatiq logs ``Received args=%r kwargs=%r.``
            record.msg, record.args = "Received a message (its arguments, a webhook body, are not logged)", ()
        return True


def _redacted(value: Any) -> Any:
    actor, message_id = getattr(value, "actor_name", None), getattr(value, "message_id", None)
    if isinstance(actor, str) and isinstance(message_id, str):
        return f"{actor}(message {message_id})"
    return value


class CurrentStderr(logging.Handler):
    """Writes each record to whatever ``sys.stderr`` is when it is emitted, as the logging
    module's own last-resort handler does: Dramatiq's processes point ``sys.stderr`` at a
    pipe to their parent after the handler is configured (``worker.dramatiq_cli``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def truncate(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, with a marker of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


def bounded(value: Any) -> Any:
    """``value`` with every string in it truncated and every container cut to ``ITEMS_LIMIT`` entries."""
    if isinstance(value, str):
        return truncate(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {truncate(str(k)): bounded(v) for k, v in itertools.islice(value.items(), ITEMS_LIMIT)}
    if isinstance(value, list | tuple | set | frozenset):
        return [bounded(v) for v in itertools.islice(value, ITEMS_LIMIT)]
    return truncate(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": truncate(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if value is None or type(value) in _SMALL else bounded(value)
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            line["exc"] = (
                exc if len(exc) <= EXC_LIMIT else f"[{len(exc) - EXC_LIMIT} chars left out]…{exc[-EXC_LIMIT:]}"
            )
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines.

    The endpoint writes one line per delivery, so the record's cost matters: as the logging
    HOWTO's "Optimization" section advises, records skip the caller lookup (a stack walk)
    and the thread and process fields, which these lines do not print.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = CurrentStderr()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactMessages())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call at INFO
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request (replay, readiness polls)
