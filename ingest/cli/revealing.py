"""``--reveal --reason TEXT``: the options of ``ingest calls show`` and ``ingest events show`` that
show personal data whole, recorded in the access log with the reason (``ingest.ops.reveal``)."""

from __future__ import annotations

import argparse

from ingest.ops.reveal import MAX_REASON, ReasonRefused, reveal_reason


class Refused(Exception):
    """``--reveal`` and ``--reason`` used wrongly: a usage error (exit status 2)."""


def add_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--reveal",
        action="store_true",
        help=f"show {what} whole; needs --reason, and is recorded in the access log",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        help=f"why it is needed (a ticket, a request; at most {MAX_REASON} characters, no phone number or"
        " e-mail address): recorded with the reveal",
    )


def reason(args: argparse.Namespace, region: str) -> str | None:
    """The reason of a reveal; None without ``--reveal``; ``Refused`` when the options do not go together."""
    if not args.reveal:
        if args.reason is not None:
            raise Refused("--reason goes with --reveal")
        return None
    if args.reason is None:
        raise Refused("--reveal needs --reason TEXT: why the originals are needed (it is recorded in the access log)")
    try:
        return reveal_reason(args.reason, region)
    except ReasonRefused as exc:
        raise Refused(f"--reason: {exc}") from None
