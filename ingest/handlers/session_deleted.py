"""session.deleted: the session was deleted at Vapi; the row (and its billing) is kept.

The message carries the session as it was, mapped exactly as session.created.
"""

from __future__ import annotations

from ingest.handlers.session_created import handle

__all__ = ["handle"]
