"""Dramatiq actors: thin wrappers over ``worker.process``.

Retries are tuned for a webhook stream rather than Dramatiq's defaults (20 retries over
about five weeks): 10 retries, backoff from 1 s up to an hour, and messages older than a
day are dead-lettered. Content that can never map raises ``PermanentError``, which is
not retried. Whatever Dramatiq decides, the event is already in ``call_events``.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from ingest.errors import PermanentError
from ingest.web.enqueue import ACTOR_NAME
from worker.broker import resources, settings  # first: configures the broker
from worker.process import event_from_body

MAX_RETRIES = 10
MIN_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 3_600_000
MAX_AGE_MS = 86_400_000


@dramatiq.actor(
    actor_name=ACTOR_NAME,
    queue_name=settings.queue_name,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
    max_age=MAX_AGE_MS,
    throws=(PermanentError,),
)
def apply_queued_event(body: dict[str, Any], received_at_ms: int) -> None:
    """Apply one queued delivery (Dramatiq knows this actor as ``ACTOR_NAME``, the name on the wire).

    Returns once the event is handed to the group commit; its message is acknowledged when
    the event is committed (``worker.acks``).
    """
    resources.hand_over(event_from_body(body, received_at_ms))
