"""Tool functions for the tool-calls tests, loaded through INGEST_TOOLS like a user's own."""

from __future__ import annotations

import asyncio
from typing import Any


def lookup_order(arguments: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    return {"order": arguments.get("orderId"), "status": "shipped\nyesterday"}


async def check_slot(arguments: dict[str, Any], message: dict[str, Any]) -> str:
    return f"{arguments.get('day')} at 3pm\nis free"


async def slow(arguments: dict[str, Any], message: dict[str, Any]) -> str:
    await asyncio.sleep(5)
    return "too late"


def broken(arguments: dict[str, Any], message: dict[str, Any]) -> str:
    raise RuntimeError("backend down")


def counted(arguments: dict[str, Any], message: dict[str, Any]) -> str:
    """Appends a line to ``$INGEST_TEST_TOOL_LOG`` per run, so a test can count runs in another process."""
    import os

    with open(os.environ["INGEST_TEST_TOOL_LOG"], "a") as runs:
        runs.write(f"{arguments.get('orderId')}\n")
    return f"order {arguments.get('orderId')} counted"
