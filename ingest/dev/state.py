"""Where a running local stack is: ``<data dir>/stack.json``, so commands in other shells find it.

``ingest dev`` writes the file once its servers are up and removes it when it stops. It
holds the process id and the few variables a client of the stack needs (the database and
Redis URLs, the web address, and ``INGEST_INSECURE`` when the stack runs without
authentication); never a secret. ``ingest queue``, ``events``, ``calls``, ``replay`` and the
other operator commands, run with ``DATABASE_URL`` / ``REDIS_URL`` unset, read it through
``discovered``: the embedded servers' ports change between runs, so copying URLs from the
banner would go stale. Variables set in the shell still win.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from ingest.settings import Settings

STATE_FILE = "stack.json"
# The local stack's encryption key (``kid:base64``, mode 0600), made by ``ingest dev`` on its
# first run: never in stack.json, read from here by the commands that find the stack.
KEY_FILE = "encryption.key"
# Its INGEST_PSEUDONYM_KEY (base64, mode 0600), made and read the same way.
PSEUDONYM_KEY_FILE = "pseudonym.key"

# What a client of the stack may take from it (secrets stay in the environment they were set in).
SHARED_VARIABLES = ("DATABASE_URL", "REDIS_URL", "HOST", "PORT", "INGEST_INSECURE", "INGEST_REDIS_NAMESPACE")


@dataclass(frozen=True)
class StackState:
    pid: int
    environment: Mapping[str, str]

    def to_json(self) -> bytes:
        return orjson.dumps({"pid": self.pid, "environment": dict(self.environment)}, option=orjson.OPT_INDENT_2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def write(data_dir: Path, environment: Mapping[str, str]) -> Path:
    """Record this process as the running stack, with the shared part of ``environment``."""
    shared = {name: environment[name] for name in SHARED_VARIABLES if environment.get(name)}
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / STATE_FILE
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # URLs may carry passwords
    with os.fdopen(fd, "wb") as handle:
        handle.write(StackState(os.getpid(), shared).to_json())
    temporary.replace(path)
    return path


def remove(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()


def read(data_dir: Path) -> StackState | None:
    """The running stack recorded in ``data_dir``; None when there is none (or it died)."""
    try:
        document = orjson.loads((data_dir / STATE_FILE).read_bytes())
        state = StackState(int(document["pid"]), {str(k): str(v) for k, v in document["environment"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return state if _alive(state.pid) else None


def discovered(settings: Settings) -> Settings:
    """``settings`` completed from a running local stack when the servers' URLs are unset."""
    if settings.database_url and settings.redis_url:
        return settings
    state = read(settings.data_dir)
    if state is None:
        return settings
    given = {name: value for name, value in settings.environment.items() if value}
    found = dict(state.environment)
    if not given.get("INGEST_ENCRYPTION_KEYS") and not given.get("INGEST_PLAINTEXT"):
        with contextlib.suppress(OSError):
            found["INGEST_ENCRYPTION_KEYS"] = (settings.data_dir / KEY_FILE).read_text().strip()
    if not given.get("INGEST_PSEUDONYM_KEY"):
        with contextlib.suppress(OSError):
            found["INGEST_PSEUDONYM_KEY"] = (settings.data_dir / PSEUDONYM_KEY_FILE).read_text().strip()
    return Settings.from_env({**found, **given})
