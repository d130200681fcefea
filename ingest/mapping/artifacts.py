"""Recording and log URLs worth keeping, and the call's performance metrics.

Vapi's ``storage.vapi.ai`` URLs are stable identifiers (the files sit in a private bucket
and are fetched through ``GET /call/{id}/…-recording``). The ``presigned*Url`` fields,
added 2026-07-30, are regenerated on every delivery and expire at
``presignedUrlsExpiresAt`` (reference §3.1, §8.10): storing one would make each retry look
like a change and would leave a dead link behind, so they are never read, and any URL
that carries a signature or expiry in its query is refused wherever it appears.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

__all__ = ["performance_metrics", "stable_recording_urls"]

# Query parameters of signed, short-lived URLs: AWS SigV4 / SigV2, CloudFront, GCS, Azure SAS.
_SIGNED_QUERY: Final = frozenset(
    {"x-amz-signature", "x-amz-expires", "x-amz-credential", "signature", "expires", "x-goog-signature", "sig"}
)

# Our key -> where Vapi puts it, best first: artifact.recording (2025-05 on), then the flat
# artifact fields, then the legacy top-level copies of the 2024 report.
_SOURCES: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "recording_url": (
        ("artifact", "recording", "mono", "combinedUrl"),
        ("artifact", "recordingUrl"),
        ("recordingUrl",),
    ),
    "stereo_recording_url": (
        ("artifact", "recording", "stereoUrl"),
        ("artifact", "stereoRecordingUrl"),
        ("stereoRecordingUrl",),
    ),
    "assistant_recording_url": (("artifact", "recording", "mono", "assistantUrl"),),
    "customer_recording_url": (("artifact", "recording", "mono", "customerUrl"),),
    "video_recording_url": (("artifact", "recording", "videoUrl"), ("artifact", "videoRecordingUrl")),
    "log_url": (("artifact", "logUrl"),),
    "pcap_url": (("artifact", "pcapUrl"),),
}

MAX_TURN_LATENCIES: Final = 50


def _at(message: Mapping[str, Any], path: tuple[str, ...]) -> object:
    node: object = message
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _stable_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    query = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    return None if query & _SIGNED_QUERY else url


def stable_recording_urls(message: Mapping[str, Any]) -> dict[str, str]:
    """Stable artifact URLs by kind (``recording_url``, ``stereo_recording_url``, ``log_url``, …).

    For each kind the first stable http(s) URL among its sources wins; kinds with none are
    left out. ``message.call`` is not read (a stale snapshot taken before any recording).
    """
    urls: dict[str, str] = {}
    for kind, paths in _SOURCES.items():
        for path in paths:
            url = _stable_url(_at(message, path))
            if url:
                urls[kind] = url
                break
    return urls


def performance_metrics(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """``artifact.performanceMetrics``, else the legacy top-level copy; None when neither has any.

    The latency averages and interruption counts are kept as given. The per-turn
    ``turnLatencies`` list grows with the call, so it is dropped when it has more than 50
    entries (the averages still describe the call) to keep ``metadata`` small.
    """
    for path in (("artifact", "performanceMetrics"), ("performanceMetrics",)):
        metrics = _at(message, path)
        if isinstance(metrics, Mapping) and metrics:
            kept = {key: copy.deepcopy(value) for key, value in metrics.items()}
            turns = kept.get("turnLatencies")
            if isinstance(turns, list) and len(turns) > MAX_TURN_LATENCIES:
                del kept["turnLatencies"]
            return kept
    return None
