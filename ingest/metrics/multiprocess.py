"""Where the processes' counts live: prometheus_client's multiprocess directory.

prometheus_client keeps each process's counters and histograms in files named by pid
under ``PROMETHEUS_MULTIPROC_DIR``, and decides to do so once, when a process first
imports it: the variable must be set before that. ``ingest web`` and ``ingest worker``
set it for themselves, and so for every process they start, when it is unset:
``<INGEST_METRICS_DIR>/web`` and ``<INGEST_METRICS_DIR>/worker``, the root defaulting to
``<INGEST_DATA_DIR>/metrics``. Each command clears its own directory when it starts, of the
files of processes no longer running (an earlier run's), and never touches the other's,
so restarting the web process leaves the workers' counts alone. ``/metrics`` reads both.

A directory set by the operator is used as it is, for writing and reading, and never
emptied: clear it before starting the processes that share it, as prometheus_client says.

``INGEST_WORKER_METRICS_PORT``, when set, has the workers serve their own counts on that
port (for a worker that shares no directory with a web process). This module must not
import prometheus_client.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from ingest.errors import ConfigError

log = logging.getLogger(__name__)

MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
ROOT_VAR = "INGEST_METRICS_DIR"
WORKER_PORT_VAR = "INGEST_WORKER_METRICS_PORT"
WEB = "web"
WORKER = "worker"


def prepare(role: str, data_dir: Path, env: MutableMapping[str, str] | None = None) -> Path | None:
    """Point this process (and its children) at its multiprocess directory; return it.

    None when the default directory cannot be written: the process then counts in memory,
    which is exact for a single process only.
    """
    if env is None:
        env = os.environ
        if "prometheus_client" in sys.modules:
            log.warning("prometheus_client was imported before its directory was set: this process counts in memory")
    if env.get(MULTIPROC_VAR):
        path = Path(env[MULTIPROC_VAR])
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{MULTIPROC_VAR} {str(path)!r} cannot be created: {exc.strerror}") from None
        return path
    root = Path(env.get(ROOT_VAR) or data_dir / "metrics").resolve()
    path = root / role
    try:
        path.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
    except OSError as exc:
        log.warning(
            "metrics directory not writable; set INGEST_METRICS_DIR. Counting in memory",
            extra={"path": str(path), "error": exc.strerror},
        )
        return None
    env[ROOT_VAR] = str(root)
    env[MULTIPROC_VAR] = str(path)
    return path


def remove_stale(path: Path) -> int:
    """Delete the files of processes that are no longer running; return how many."""
    removed = 0
    for file in path.glob("*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and _running(int(pid)):
            continue  # another instance sharing the directory, still counting
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def reading_dirs(env: Mapping[str, str], *, siblings: bool = True) -> tuple[Path, ...]:
    """The directories whose files make up the exposition; empty outside multiprocess mode.

    The process's own directory and, with ``siblings``, every directory under
    ``INGEST_METRICS_DIR`` (the web process shows the workers' counts too).
    """
    own = env.get(MULTIPROC_VAR)
    if not own:
        return ()
    dirs = [Path(own)]
    root = Path(env[ROOT_VAR]) if siblings and env.get(ROOT_VAR) else None
    if root is not None and root.is_dir():
        dirs.extend(sorted(child for child in root.iterdir() if child.is_dir()))
    unique: dict[Path, Path] = {}
    for path in dirs:
        unique.setdefault(path.resolve(), path)
    return tuple(unique.values())


def worker_metrics_port(env: Mapping[str, str]) -> int | None:
    """The port the workers serve their counts on, or None when they do not."""
    raw = env.get(WORKER_PORT_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{WORKER_PORT_VAR} must be a TCP port number, got {raw!r}")
    return int(raw)
