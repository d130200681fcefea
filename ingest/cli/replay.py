"""``ingest replay``: send recorded Vapi bodies to a running service, signed like Vapi.

A ``.json`` file is one body, a ``.jsonl`` file one body per line, a directory every such
file in it, in name order. Bodies are sent byte for byte; credentials come from the same
settings (and the same ``sign``) the service verifies with, so a replay is a faithful
test of a configuration before Vapi is pointed at it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from ingest.cli.output import bounded_int, positive_number
from ingest.settings import Settings
from ingest.web.auth import sign
from ingest.web.auth_settings import AuthSettings


class ReplayError(ValueError):
    """A path to replay does not exist or holds no bodies."""


def iter_bodies(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(label, body)`` pairs from a file or a directory, in order."""
    if path.is_dir():
        children = sorted(p for p in path.iterdir() if p.suffix in {".json", ".jsonl"})
        for child in children:
            yield from iter_bodies(child)
    elif path.suffix == ".jsonl":
        # split on \n only: splitlines() would also split inside a body on \x1c, \x85, \u2028 …
        for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if line.strip():
                yield f"{path}:{number}", line
    elif path.is_file():
        yield str(path), path.read_bytes()
    else:
        raise ReplayError(f"{path}: no such file or directory")


def load(paths: list[Path]) -> list[tuple[str, bytes]]:
    bodies = [item for path in paths for item in iter_bodies(path)]
    if not bodies:
        raise ReplayError("nothing to replay: no .json or .jsonl bodies found")
    return bodies


@dataclass
class Summary:
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        counts = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        lines = [f"sent {sum(self.statuses.values())} deliveries — {counts}"]
        lines += [f"  not accepted: {failure}" for failure in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  … and {len(self.failures) - 20} more")
        return "\n".join(lines)


async def send_all(
    url: str,
    bodies: list[tuple[str, bytes]],
    auth: AuthSettings,
    *,
    rate: float | None = None,
    concurrency: int = 4,
    progress: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Summary:
    """POST every body, at most ``concurrency`` at once and ``rate`` per second."""
    summary = Summary()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    interval = 1.0 / rate if rate else 0.0
    next_slot = time.monotonic()
    bar = tqdm(total=len(bodies), unit="req", disable=not progress, file=sys.stderr)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_slot
        while not queue.empty():
            label, body = queue.get_nowait()
            if interval:
                now = time.monotonic()
                slot = max(next_slot, now)
                next_slot = slot + interval
                if slot > now:
                    await asyncio.sleep(slot - now)
            request_headers = {
                "content-type": "application/json",
                **(headers or {}),
                **sign(auth, body, now=time.time()),
            }
            try:
                response = await client.post(url, content=body, headers=request_headers)
                status = str(response.status_code)
                if not 200 <= response.status_code < 300:
                    summary.failures.append(f"{label} → {status} {response.text[:200]}")
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                summary.failures.append(f"{label} → {status}")
            summary.statuses[status] += 1
            bar.update()

    async with httpx.AsyncClient(timeout=30.0) as client:
        await asyncio.gather(*(worker(client) for _ in range(max(1, concurrency))))
    bar.close()
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".json, .jsonl or a directory of them")
    parser.add_argument("--url", help="webhook URL (default: the local service, http://HOST:PORT/webhooks/vapi)")
    parser.add_argument("--rate", type=positive_number(1_000_000), help="at most this many requests per second")
    parser.add_argument(
        "--concurrency", type=bounded_int(1, 1_000), default=4, help="requests in flight at once (default 4)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (none either off a terminal)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or f"http://{settings.host}:{settings.port}/webhooks/vapi"
    auth = settings.auth
    try:
        bodies = load(args.paths)
    except ReplayError as exc:
        print(f"ingest replay: {exc}", file=sys.stderr)
        return 2
    # The bar redraws itself in place: into a file or a pipe it would be hundreds of frames,
    # so there it is left out and the summary below is all that is printed.
    progress = not args.no_progress and sys.stderr.isatty()
    summary = asyncio.run(send_all(url, bodies, auth, rate=args.rate, concurrency=args.concurrency, progress=progress))
    print(summary.render())
    return 0 if summary.ok else 1
