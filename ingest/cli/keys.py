"""``ingest keys``: make a sealing key, see what each key seals, re-seal under the current one.

- ``generate``: prints a new ``kid:base64key`` for ``INGEST_ENCRYPTION_KEYS`` (nothing is stored).
- ``status``: the configured key ids (the first seals) and how many values each key id
  seals in ``call_events``, ``call_envelopes``, ``user_sessions`` (the originals) and
  ``user_sessions.raw_numbers`` (``plain`` for values kept unencrypted).
- ``rotate``: seals everything not yet under the first key (``ingest.ops.keys``), with a
  progress bar over the raw events and session rows it goes through; safe while web and
  workers run, and resumable. Exits 1 when some value could not be opened (sealed under a
  key not configured). Audited: one ``keys_rotate`` row, written before the work starts,
  with what is pending.

Rotating to a new key: put it first in ``INGEST_ENCRYPTION_KEYS`` (``new,old``), restart the
web and worker processes, run ``ingest keys rotate``, then drop the old key once ``status``
shows nothing under it. The same command seals a database written before encryption.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ingest import audit
from ingest.cli.output import table, to_json
from ingest.db import connect
from ingest.ops import keys
from ingest.sealing import generate_key
from ingest.settings import Settings
from ingest.vocabulary import AuditAction, AuditTargetKind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("generate", help="print a new key (kid:base64) for INGEST_ENCRYPTION_KEYS")
    status = actions.add_parser("status", help="configured key ids and how many values each seals")
    status.add_argument("--json", action="store_true", help="one JSON document")
    rotate = actions.add_parser("rotate", help="seal everything under the first key (safe while the service runs)")
    rotate.add_argument("--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)")
    rotate.add_argument("--json", action="store_true", help="print the counts as JSON (no progress bar)")


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    print(generate_key())
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    with connect(settings) as conn:
        usage = keys.key_usage(conn)
    configured = list(settings.keyring.key_ids)
    if args.json:
        uses = [{"table": u.table, "key_id": u.key_id, "count": u.count} for u in usage]
        print(to_json({"configured": configured, "sealing": settings.keyring.current, "values": uses}))
        return 0
    print(f"configured: {', '.join(configured) or 'none'}" + (f" (seals: {configured[0]})" if configured else ""))
    rows = [
        (u.table, u.key_id or "plain", u.count, "" if u.key_id is None or u.key_id in configured else "NOT CONFIGURED")
        for u in usage
    ]
    print(table(["TABLE", "KEY", "VALUES", ""], rows) if rows else "nothing sealed yet")
    return 0


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_keys()
    if not settings.keyring.sealing:
        print("ingest keys rotate: INGEST_PLAINTEXT is set: there is no key to seal under", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("ingest keys rotate: --batch must be at least 1", file=sys.stderr)
        return 2
    privacy = settings.privacy
    with connect(settings) as conn:
        todo = keys.pending(conn, privacy)
        # Recorded before the work, as every action is: what is asked and what is to do (the
        # output says what came of it). No row, no rotation.
        audit.cli().record(
            conn,
            AuditAction.KEYS_ROTATE,
            AuditTargetKind.BULK,
            target_count=todo.total,
            details={"key_id": privacy.keyring.current, "batch": args.batch, "pending": todo.as_dict()},
        )
        show = not args.json and sys.stderr.isatty()
        with tqdm(total=todo.total, unit="row", desc="sealing", disable=not show, file=sys.stderr) as bar:
            counts = keys.rotate(conn, privacy, batch=args.batch, progress=bar.update)
    if args.json:
        print(to_json({"key_id": privacy.keyring.current, **counts.as_dict()}))
    else:
        print(
            f"sealed under {privacy.keyring.current}: {counts.events} event(s), {counts.sessions} session row(s)"
            + (f"; {counts.unopened} value(s) under a key not configured, left as they were" if counts.unopened else "")
        )
    return 1 if counts.unopened else 0


ACTIONS = {"generate": _generate, "status": _status, "rotate": _rotate}


def run(args: argparse.Namespace, settings: Settings) -> int:
    return ACTIONS[args.action](args, settings)
