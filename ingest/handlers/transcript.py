"""transcript (and the final-only form ``transcript[transcriptType="final"]``): one utterance.

Partial transcripts are high-volume and say nothing lasting. A final one matters only if
no end-of-call report brings the full transcript: the worker then builds ``call_transcript``
from the call's final transcripts in ``call_events`` once the call has ended. Here the event
only proves the call and who is on it."""

from __future__ import annotations

from ingest.handlers.common import call_event

handle = call_event
