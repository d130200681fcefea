"""ingest.mapping.artifacts: stable recording and log URLs (never presigned ones), performance metrics."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from support.fixtures import all_calls, load_call, load_event, parse_body

from ingest.mapping.artifacts import performance_metrics, stable_recording_urls


def report(call: str) -> dict[str, Any]:
    """The end-of-call report's ``message`` of a recorded call."""
    messages = [parse_body(raw)["message"] for raw in load_call(call)]
    return next(message for message in messages if message["type"] == "end-of-call-report")


def test_urls_of_the_inbound_booking_report() -> None:
    """The mono, stereo, per-side and log URLs come from ``artifact.recording`` and ``artifact.logUrl``."""
    message = report("inbound_booking")
    artifact = message["artifact"]
    urls = stable_recording_urls(message)
    assert urls == {
        "recording_url": artifact["recording"]["mono"]["combinedUrl"],
        "stereo_recording_url": artifact["recording"]["stereoUrl"],
        "assistant_recording_url": artifact["recording"]["mono"]["assistantUrl"],
        "customer_recording_url": artifact["recording"]["mono"]["customerUrl"],
        "log_url": artifact["logUrl"],
    }
    assert urls["recording_url"] == artifact["recordingUrl"] == message["recordingUrl"]
    assert all(url.startswith("https://storage.vapi.ai/") for key, url in urls.items() if key != "log_url")


def test_no_presigned_url_ever_comes_out() -> None:
    """Across every recorded body, no URL returned is a presigned one or carries a signature."""
    seen = 0
    for path in all_calls():
        for raw in load_call(path.stem):
            message = parse_body(raw)["message"]
            artifact = message.get("artifact") or {}
            presigned = {value for key, value in artifact.items() if key.startswith("presigned")}
            for url in stable_recording_urls(message).values():
                seen += 1
                assert url not in presigned
                assert "Signature" not in url
                assert "Expires" not in url
    assert seen > 0


def test_legacy_top_level_urls_are_used_when_there_is_no_artifact() -> None:
    """The 2024 report with no ``artifact`` still gives its top-level recording URLs."""
    message = parse_body(load_event("eocr_legacy_only"))["message"]
    assert stable_recording_urls(message) == {
        "recording_url": message["recordingUrl"],
        "stereo_recording_url": message["stereoRecordingUrl"],
    }


def test_signed_or_non_http_urls_are_refused_wherever_they_appear() -> None:
    """A signed S3/CloudFront/Azure URL in a stable field is skipped for the next source, as is non-http text."""
    message = {
        "artifact": {
            "recording": {
                "mono": {"combinedUrl": "https://bucket.s3.amazonaws.com/a.wav?X-Amz-Signature=abc&X-Amz-Expires=3600"},
                "stereoUrl": "https://cdn.example.com/s.wav?Expires=1750000000&Signature=xyz&Key-Pair-Id=K",
                "videoUrl": "ftp://example.com/v.mp4",
            },
            "recordingUrl": "https://storage.vapi.ai/a-mono.wav",
            "stereoRecordingUrl": "https://acct.blob.core.windows.net/c/s.wav?sv=2024&se=2026&sig=abc",
            "videoRecordingUrl": "https://storage.vapi.ai/a-video.mp4",
            "logUrl": "not a url",
            "pcapUrl": " https://storage.vapi.ai/a.pcap ",
            "presignedMonoUrl": "https://bucket.s3.amazonaws.com/mono.wav",
        },
        "stereoRecordingUrl": "https://storage.vapi.ai/a-stereo.wav",
    }
    assert stable_recording_urls(message) == {
        "recording_url": "https://storage.vapi.ai/a-mono.wav",
        "stereo_recording_url": "https://storage.vapi.ai/a-stereo.wav",
        "video_recording_url": "https://storage.vapi.ai/a-video.mp4",
        "pcap_url": "https://storage.vapi.ai/a.pcap",
    }


def test_an_ordinary_query_string_is_kept() -> None:
    """A stable URL with an unsigned query string (a version, a format) is fine."""
    url = "https://storage.vapi.ai/a-mono.wav?v=2&format=wav"
    assert stable_recording_urls({"artifact": {"recordingUrl": url}}) == {"recording_url": url}


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"artifact": None},
        {"artifact": {"recording": "x"}},
        {"artifact": {"recordingUrl": 5}},
        {"call": {"recordingUrl": "https://storage.vapi.ai/x.wav"}},
    ],
)
def test_no_urls(message: dict[str, Any]) -> None:
    """Missing, malformed or call-snapshot-only values give an empty dict."""
    assert stable_recording_urls(message) == {}


def test_the_no_answer_call_has_no_recording() -> None:
    """The unanswered call's empty artifact gives no URLs and no metrics."""
    message = report("outbound_no_answer")
    assert stable_recording_urls(message) == {}
    assert performance_metrics(message) is None


def test_urls_are_the_same_on_every_delivery() -> None:
    """Two deliveries whose presigned URLs differ give identical stable URLs (so retries are not changes)."""
    message = report("web_call_support")
    redelivered = orjson.loads(orjson.dumps(message))
    for key in [key for key in redelivered["artifact"] if key.startswith("presigned")]:
        redelivered["artifact"][key] += "&retry=2"
    assert stable_recording_urls(redelivered) == stable_recording_urls(message)


def test_performance_metrics_of_a_recorded_report() -> None:
    """``artifact.performanceMetrics`` is kept as given, turn latencies included when there are few."""
    message = report("web_call_support")
    metrics = performance_metrics(message)
    assert metrics == message["artifact"]["performanceMetrics"]
    assert metrics is not None
    assert len(metrics["turnLatencies"]) == 7
    metrics["turnLatencies"].clear()
    assert message["artifact"]["performanceMetrics"]["turnLatencies"]  # a copy


def test_performance_metrics_drop_long_turn_lists() -> None:
    """More than 50 turn latencies are dropped; the averages stay."""
    turns = [{"turnLatency": 700}] * 51
    message = {"artifact": {"performanceMetrics": {"turnLatencies": turns, "turnLatencyAverage": 700}}}
    assert performance_metrics(message) == {"turnLatencyAverage": 700}
    message["artifact"]["performanceMetrics"]["turnLatencies"] = turns[:50]
    assert performance_metrics(message) == {"turnLatencies": turns[:50], "turnLatencyAverage": 700}


def test_performance_metrics_legacy_and_missing() -> None:
    """The legacy top-level copy is used when the artifact has none; nothing gives None."""
    legacy = {"performanceMetrics": {"modelLatencyAverage": 620}}
    assert performance_metrics(legacy) == {"modelLatencyAverage": 620}
    assert performance_metrics({"artifact": {"performanceMetrics": {}}, **legacy}) == {"modelLatencyAverage": 620}
    assert performance_metrics({}) is None
    assert performance_metrics({"artifact": {"performanceMetrics": [1]}}) is None
