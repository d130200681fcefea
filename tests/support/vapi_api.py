"""A stand-in for Vapi's REST API: ``GET /call`` and ``GET /call/{id}``, served for real on a local port.

``GET /call`` filters as Vapi's OpenAPI document describes (``updatedAtGt/Lt/Ge/Le``,
``createdAtGt/Lt/Ge/Le``, ``id``, ``assistantId``, ``phoneNumberId``; ``limit`` 0–1000, default
100, more is a 400) and answers a bare array with no cursor. Vapi documents no order: the stand-in
answers newest ``createdAt`` first, and the client must not depend on it. Faults are queued and
consumed one per request: ``throttle`` (429 with ``Retry-After``), ``fail`` (500), ``hang`` (no
answer until the server stops). ``on_list`` runs before each ``GET /call`` is answered, so a test
can change calls in the middle of a run. Served by uvicorn in a thread (``serve_vapi``), so
timeouts, hangs and the client's retries are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest.dev.embedded import _free_port

API_KEY = "test-private-key-7f3a"
ORG_ID = "a1984baa-e6d2-4596-9058-a4648bb74a95"
_FILTERS = {"Gt": lambda a, b: a > b, "Lt": lambda a, b: a < b, "Ge": lambda a, b: a >= b, "Le": lambda a, b: a <= b}


def iso(moment: datetime) -> str:
    """A timestamp as Vapi writes it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Seen:
    """One request the stand-in received."""

    path: str
    params: dict[str, str]
    authorization: str | None
    at: float


class FakeVapi:
    """The calls Vapi holds, the faults to answer with, and the requests received."""

    def __init__(self, calls: Iterable[dict[str, Any]] = (), *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.calls: dict[str, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self.on_list: Callable[[FakeVapi], None] | None = None
        self._faults: deque[tuple[str, str]] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.add(*calls)
        self.app = Starlette(routes=[Route("/call", self._list), Route("/call/{id}", self._get)])

    def add(self, *calls: dict[str, Any]) -> None:
        with self._lock:
            for call in calls:
                self.calls[call["id"]] = copy.deepcopy(call)

    def update(self, call_id: str, updated_at: datetime, **fields: Any) -> None:
        """Change a call as Vapi would: new fields and a later ``updatedAt``."""
        with self._lock:
            self.calls[call_id].update(fields, updatedAt=iso(updated_at))

    def throttle(self, times: int = 1, retry_after: str = "1") -> None:
        self._faults.extend([("429", retry_after)] * times)

    def fail(self, times: int = 1, status: int = 500) -> None:
        self._faults.extend([(str(status), "")] * times)

    def hang(self, times: int = 1) -> None:
        self._faults.extend([("hang", "")] * times)

    def release(self) -> None:
        """Let hanging requests go (the server is stopping)."""
        self._released.set()

    @property
    def list_requests(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.path == "/call"]

    async def _admit(self, request: Request) -> Response | None:
        """Record the request; answer a fault or a refused key, or None to go on."""
        authorization = request.headers.get("authorization")
        self.requests.append(Seen(request.url.path, dict(request.query_params), authorization, time.monotonic()))
        if authorization != f"Bearer {self.api_key}":
            return JSONResponse({"message": "Invalid Key. Hot tip, you may be using the private key."}, 401)
        if not self._faults:
            return None
        fault, detail = self._faults.popleft()
        if fault == "hang":
            while not self._released.is_set():
                await asyncio.sleep(0.02)
            return Response(status_code=503)
        if fault == "429":
            return JSONResponse({"message": "Too Many Requests"}, 429, headers={"Retry-After": detail})
        return JSONResponse({"message": "Internal server error"}, int(fault))

    async def _list(self, request: Request) -> Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        if self.on_list is not None:
            self.on_list(self)
        query = request.query_params
        try:
            limit = int(query.get("limit", "100"))
            bounds = [
                (field, _FILTERS[op], _parse(query[f"{field}{op}"]))
                for field in ("updatedAt", "createdAt")
                for op in _FILTERS
                if f"{field}{op}" in query
            ]
        except ValueError:
            return JSONResponse({"message": ["invalid query"], "error": "Bad Request"}, 400)
        if not 0 <= limit <= 1000:
            return JSONResponse({"message": ["limit must not be greater than 1000"], "error": "Bad Request"}, 400)
        with self._lock:
            calls = [copy.deepcopy(call) for call in self.calls.values()]
        equal = {"id": "id", "assistantId": "assistantId", "phoneNumberId": "phoneNumberId"}
        chosen = [
            call
            for call in calls
            if all(compare(_parse(call[field]), bound) for field, compare, bound in bounds)
            and all(call.get(key) == query[param] for param, key in equal.items() if param in query)
        ]
        chosen.sort(key=lambda call: call["createdAt"], reverse=True)
        return JSONResponse(chosen[:limit])

    async def _get(self, request: Request) -> Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        with self._lock:
            call = copy.deepcopy(self.calls.get(request.path_params["id"]))
        if call is None:
            return JSONResponse({"message": "Not Found", "statusCode": 404}, 404)
        return JSONResponse(call)


@contextlib.contextmanager
def serve_vapi(fake: FakeVapi) -> Iterator[str]:
    """The stand-in on a free local port, in a thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-vapi", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Vapi stand-in did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        fake.release()
        server.should_exit = True
        thread.join(10)


def make_call(
    *,
    call_id: str | None = None,
    created_at: datetime,
    updated_at: datetime | None = None,
    status: str = "ended",
    duration: timedelta = timedelta(seconds=95),
    call_type: str = "inboundPhoneCall",
    ended_reason: str = "customer-ended-call",
    cost: float = 0.0823,
    assistant_id: str = "5b0a4a08-133c-4146-9315-0984f8c6be80",
    phone_number_id: str = "0d6f4a4e-8d0c-4a3b-9e3e-7f1f3c1b2a10",
    customer_number: str = "+6421555012",
    summary: str | None = "The caller asked about opening hours and was told 8am to 5pm.",
    structured_data: dict[str, Any] | None = None,
    success_evaluation: str | None = "true",
    transcript: str | None = "AI: Kia ora, how can I help?\nUser: What are your opening hours?\nAI: 8am to 5pm.",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Call object shaped by Vapi's OpenAPI ``Call`` schema; only an ended call has an end,
    a cost, an analysis and a transcript."""
    started_at = created_at + timedelta(seconds=2)
    ended_at = started_at + duration
    call: dict[str, Any] = {
        "id": call_id or str(uuid.uuid4()),
        "orgId": ORG_ID,
        "type": call_type,
        "status": status,
        "createdAt": iso(created_at),
        "updatedAt": iso(updated_at or (ended_at + timedelta(seconds=3) if status == "ended" else started_at)),
        "assistantId": assistant_id,
        "phoneNumberId": phone_number_id,
        "customer": {"number": customer_number},
        "metadata": metadata or {},
    }
    if status in ("in-progress", "forwarding", "ended"):
        call["startedAt"] = iso(started_at)
    if status != "ended":
        return call
    minutes = round(duration.total_seconds() / 60, 4)
    parts = {"transport": 0.1, "stt": 0.1, "llm": 0.2, "tts": 0.2, "vapi": 0.4}
    breakdown = {name: round(cost * share, 6) for name, share in parts.items()}
    call.update(
        endedAt=iso(ended_at),
        endedReason=ended_reason,
        cost=cost,
        costs=[{"type": name, "minutes": minutes, "cost": value} for name, value in breakdown.items()],
        costBreakdown={**breakdown, "total": cost, "llmPromptTokens": 412, "llmCompletionTokens": 88},
        analysis={
            key: value
            for key, value in {
                "summary": summary,
                "structuredData": structured_data,
                "successEvaluation": success_evaluation,
            }.items()
            if value is not None
        },
        artifact={"recordingUrl": f"https://storage.vapi.ai/{call['id']}-mono.wav"},
    )
    if transcript is not None:
        messages = [
            {"role": "bot" if line.startswith("AI:") else "user", "message": line.split(": ", 1)[1]}
            for line in transcript.splitlines()
        ]
        call["artifact"].update(transcript=transcript, messages=messages)
    return call


def call_from_report(message: dict[str, Any], updated_at: datetime | None = None) -> dict[str, Any]:
    """The Call object ``GET /call/{id}`` returns after a recorded end-of-call report: the report's
    ``call`` snapshot with the final status, times, cost, analysis and artifact the report carries."""
    call = copy.deepcopy(message["call"])
    ended = _parse(message["endedAt"])
    call.update(
        status="ended",
        updatedAt=iso(updated_at or ended + timedelta(seconds=3)),
        **{key: copy.deepcopy(message[key]) for key in _REPORT_FIELDS if key in message},
    )
    return call


_REPORT_FIELDS = ("startedAt", "endedAt", "endedReason", "cost", "costs", "costBreakdown", "analysis", "artifact")
