"""session.updated: the session changed (status, cost, messages); mapped exactly as session.created.

A completed session's ``updatedAt`` is its end; its ``cost`` only grows, and the merge keeps
the highest seen, so an older update arriving late changes nothing.
"""

from __future__ import annotations

from ingest.handlers.session_created import handle

__all__ = ["handle"]
